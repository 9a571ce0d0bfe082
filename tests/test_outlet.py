"""Frames encoded once for every client (:mod:`syncd.outlet`): the bytes are those
websockets writes itself, and no client gets an extension that would make its own differ."""

from __future__ import annotations

import asyncio
import json

from conftest import ClientFactory
from servers import TIMEOUT
from websockets.asyncio.client import connect as websockets_connect
from websockets.protocol import State
from websockets.server import ServerProtocol

from syncd.outlet import encode
from syncd.server import SyncServer


def test_a_frame_encoded_once_is_what_websockets_writes_to_each_client() -> None:
    protocol = ServerProtocol(state=State.OPEN)
    # A payload for each length field: 7 bits, 16 bits, 64 bits.
    for text in ('{"type":"synced","seq":1}', "x" * 200, "é" * 40_000):
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
