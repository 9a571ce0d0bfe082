"""A client that stops reading against a real server (contract §7, isolation).

It is closed with 1013 (and its TCP dropped if it does not answer the close)
while the writer's acks and a normal reader's broadcasts keep flowing; it
resumes with a delta when it comes back.
"""

from __future__ import annotations

import asyncio
import socket

from conftest import ClientFactory, ServerFactory
from servers import TIMEOUT, Frame, RawClient, metrics
from websockets.frames import CloseCode

QUEUE_LIMIT = 256 * 1024
WINDOW = 4
"""Messages the writer has in flight: a normal reader never falls a queue limit behind."""


async def write_windowed(client: RawClient, entries: list[Frame]) -> list[Frame]:
    """Write one entry per message, ``WINDOW`` unacknowledged at most; the acks."""
    acks: list[Frame] = []
    sent = 0
    async with asyncio.timeout(4 * TIMEOUT):
        for _ in range(10 * len(entries)):
            while sent < len(entries) and sent - len(acks) < WINDOW:
                await client.send({"type": "ops", "id": sent, "ops": [entries[sent]]})
                sent += 1
            frame = await client.recv()
            if frame["type"] == "ack":
                acks.append(frame)
                if len(acks) == len(entries):
                    return acks
            else:
                assert frame == {"type": "presence", "left": ["stuck"]}, frame
    raise AssertionError("too many frames")


async def test_a_never_reading_client_is_dropped_with_1013(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await make_server(queue_limit=QUEUE_LIMIT, close_timeout=1.0)
    writer = await connect(server.url, "writer")
    hello = await writer.hello()
    epoch = hello.welcome["epoch"]
    reader = await connect(server.url, "reader")
    await reader.hello()
    stuck = await stuck_client(connect, server.url, server.port)
    await writer.until_peers("reader", "stuck")
    await reader.until_peers("writer", "stuck")
    before = await metrics(server.port)

    total, value = 300, "v" * 16_000  # about 5 MB in all
    entries = [writer.stamps.set(f"k{i % 40}", f"{i}:{value}") for i in range(total)]

    async def read_everything() -> list[Frame]:
        return await reader.recv_until(lambda f: f.get("seq") == total, timeout=4 * TIMEOUT)

    reading = asyncio.create_task(read_everything())
    acks = await write_windowed(writer, entries)
    assert [(f["id"], f["seq"]) for f in acks] == [(i, i + 1) for i in range(total)]
    frames = await reading
    received = [e for f in frames if f["type"] == "ops" for e in f["ops"]]
    assert received == entries, "the normal reader got every write, in order"

    # The stuck client is gone within a few seconds (close_timeout is 1 s).
    left = {"type": "presence", "left": ["stuck"]}
    others = [f for f in frames if f["type"] != "ops"]
    if not others:
        others = [await reader.recv(timeout=TIMEOUT)]
    assert others == [left]
    after = await metrics(server.port)
    assert after["syncd_queue_drops_total"] == before["syncd_queue_drops_total"] + 1
    assert after["syncd_connections"] == 2

    # What the stuck client finally reads: part of the stream, then 1013 — or,
    # since it never answered the close, a dropped connection.
    code, frames = await stuck.closed(timeout=4 * TIMEOUT)
    assert code in (CloseCode.TRY_AGAIN_LATER, CloseCode.ABNORMAL_CLOSURE), code
    seen = [f["seq"] for f in frames if f["type"] == "ops"]
    assert len(seen) < total, "it was dropped before the end"

    # It comes back with a delta from what it saw.
    back = await connect(server.url, "stuck")
    last = seen[-1] if seen else 0
    since = {"epoch": epoch, "seq": last}
    again = await back.hello(since=since)
    assert again.welcome["full"] is False
    latest = {e["key"]: e for e in entries[last:]}
    assert again.state == latest

    # The writer was never disturbed: it still writes and is acked at once.
    assert (await writer.write([writer.stamps.set("after", 1)]))["seq"] == total + 1


async def stuck_client(connect: ClientFactory, url: str, port: int) -> RawClient:
    """A client past its hello that then never reads (tiny buffer, a one-message queue)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client = await connect(url, "stuck", sock=sock, max_queue=1)
    await client.hello()
    return client


async def test_shutdown_does_not_wait_for_a_stuck_client(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await make_server(close_timeout=1.0, queue_limit=64 << 20)
    writer = await connect(server.url, "writer")
    await writer.hello()
    stuck = await stuck_client(connect, server.url, server.port)
    assert (await writer.recv())["type"] == "presence"
    # About 10 MB: more than the socket buffers hold, far less than the queue limit.
    total = 170
    entries = [writer.stamps.set(f"k{i}", "v" * 60_000) for i in range(total)]
    acks = await write_windowed(writer, entries)
    assert acks[-1]["seq"] == total
    assert not server.rooms["default"].members[1].dropped
    import time

    t = time.monotonic()
    print(
        "BUF",
        [
            (
                c.node,
                c.connection.transport.get_write_buffer_size(),
                c.connection.transport.get_write_buffer_limits(),
            )
            for c in server.rooms["default"].members
        ],
    )
    async with asyncio.timeout(1.0 + TIMEOUT):
        await server.stop()
    print("STOP", time.monotonic() - t)
    assert (await writer.closed())[0] == CloseCode.GOING_AWAY
    code, _ = await stuck.closed()
    assert code in (CloseCode.GOING_AWAY, CloseCode.ABNORMAL_CLOSURE)
