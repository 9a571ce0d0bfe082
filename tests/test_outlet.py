"""Frames encoded once for every client (:mod:`syncd.outlet`): the bytes are those
websockets writes itself, no client gets an extension that would make its own differ,
and a handshake written in several writes arrives whole and in order."""

from __future__ import annotations

import asyncio
import json

from conftest import ClientFactory
from servers import TIMEOUT
from websockets.asyncio.client import connect as websockets_connect
from websockets.protocol import State
from websockets.server import ServerProtocol

from syncd.outlet import WRITE_BYTES, encode
from syncd.server import SyncServer


def test_a_frame_encoded_once_is_what_websockets_writes_to_each_client() -> None:
    protocol = ServerProtocol(state=State.OPEN)
    # A payload for each length field (7 bits, 16 bits, 64 bits) and at their bounds.
    small = ['{"type":"synced","seq":1}', "x" * 200, "é" * 40_000]
    for text in small + ["y" * n for n in (0, 125, 126, 65_535, 65_536)]:
        protocol.send_text(text.encode())
        assert protocol.data_to_send() == [encode(text)]


async def test_a_client_offering_compression_gets_none_and_reads_its_broadcasts(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    await writer.hello()
    # websockets' client offers permessage-deflate unless told not to.
    async with websockets_connect(server.url) as reader:
        assert reader.protocol.extensions == []
        await reader.send(json.dumps({"type": "hello", "v": 1, "doc": "default", "node": "r"}))
        async with asyncio.timeout(TIMEOUT):
            while json.loads(await reader.recv())["type"] != "synced":
                pass
            entry = writer.stamps.set("k", "v" * 300)
            ack = await writer.write([entry])
            for _ in range(10):
                frame = json.loads(await reader.recv())
                if frame["type"] == "ops":
                    break
        assert frame == {"type": "ops", "seq": ack["seq"], "origin": "w", "ops": [entry]}


async def test_a_handshake_of_several_writes_arrives_whole_then_the_broadcasts(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    await writer.hello()
    value = "v" * 1000
    keys = [f"k{i:04d}" for i in range(3 * WRITE_BYTES // len(value))]
    for start in range(0, len(keys), 50):
        ack = await writer.write(
            [writer.stamps.set(key, value) for key in keys[start : start + 50]]
        )
        assert ack["type"] == "ack", ack
    reader = await connect(server.url, "r")
    handshake = await reader.hello()
    assert [f["type"] for f in handshake.frames[1:-1]] == ["entries"] * (len(handshake.frames) - 2)
    assert sorted(handshake.state) == keys
    entry = writer.stamps.set("after", "the handshake")
    ack = await writer.write([entry])
    frames = await reader.recv_until(lambda f: f["type"] == "ops")
    assert frames[-1] == {"type": "ops", "seq": ack["seq"], "origin": "w", "ops": [entry]}
