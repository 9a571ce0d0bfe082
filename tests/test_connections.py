"""Thousands of connections on one document (issue #14, part 2), against a real
``syncd serve`` process over real sockets on 127.0.0.1.

2,000 clients join one document while two writers write to it. Every one of
them gets its handshake to ``synced``, ends up with the writers' state exactly
(the handshake's entries, then the broadcasts, which a crowd gets in paced
passes together with the presence ticks, paced harder while clients join:
:mod:`syncd.room`), and knows every
other client as a peer (``welcome.peers``, then the coalesced ``presence``
frames); when a quarter of them leave, the others learn who left. Each writer
gets its acks in seq order with the other's broadcasts, and never its own.
Correctness only: the timings are ``bench/server/connections.py``'s.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from attacks import PING, TEXT, WsSocket, bounded_gather, encode_frame, raise_open_files
from conftest import ProcessFactory
from servers import FACTOR, Frame, Stamps

CONNECTIONS: Final = 2000
WRITES: Final = 300
BURST: Final = 10
KEYS: Final = 40
LEAVING: Final = CONNECTIONS // 4
SETTLE: Final = 60.0 * FACTOR
"""Seconds every client has to reach the expected state once the writes are done."""
PONG: Final = 0xA


@dataclass
class Reader:
    """One connection and what it was told: the document, its head, its peers."""

    node: str
    socket: WsSocket
    peers: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)
    """Each key's newest entry."""
    seq: int = 0
    wanted: tuple[set[str], int] | None = None
    """The peers and head it is waiting for."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reading: asyncio.Task[None] | None = None
    """Its :meth:`pump`, once the handshake is read."""

    def take(self, frame: Frame) -> None:
        """Apply one frame of the server's."""
        kind = frame["type"]
        if kind == "welcome":
            self.peers = set(frame["peers"])
            assert self.node not in self.peers
        elif kind == "entries":
            for entry in frame["entries"]:
                self._merge(entry)
        elif kind == "synced":
            self.seq = frame["seq"]
        elif kind == "ops":
            assert frame["seq"] > self.seq, "broadcasts in seq order, after the snapshot"
            assert frame["origin"] != self.node, "a writer does not get its own broadcast"
            self.seq = frame["seq"]
            for entry in frame["ops"]:
                self._merge(entry)
        elif kind == "ack":
            assert frame["seq"] >= self.seq, "acks in seq order with the broadcasts"
            self.seq = frame["seq"]
        elif kind == "presence":
            joined, left = frame.get("joined", []), frame.get("left", [])
            assert joined or left, frame
            assert self.node not in joined, "a client is not told about itself"
            self.peers = (self.peers | set(joined)) - set(left)

    def _merge(self, entry: Frame) -> None:
        held = self.state.get(entry["key"])
        if held is None or entry["ts"] > held["ts"]:
            self.state[entry["key"]] = entry

    async def recv(self) -> Frame:
        """The next text frame, answering the server's keepalive pings on the way (the
        test outlasts their timeout)."""
        for _ in range(1000):
            opcode, payload = await self.socket.recv_raw()
            if opcode == TEXT:
                frame: Frame = json.loads(payload)
                return frame
            assert opcode == PING, f"{self.node}: opcode {opcode:#x}, {payload!r}"
            self.socket.write(encode_frame(PONG, payload))
        raise AssertionError(f"{self.node}: no text frame among 1000")

    async def pump(self) -> None:
        """Read and apply every frame from the handshake on, until the connection ends."""
        for _ in range(1_000_000):
            try:
                frame = await self.recv()
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.take(frame)
            self._check()
        raise AssertionError(f"{self.node}: too many frames")

    async def wait_for(self, peers: set[str], seq: int, state: dict[str, Any]) -> None:
        """Wait until this client knows ``peers`` and holds ``state`` at head ``seq``."""
        self.wanted = (peers, seq)
        self.arrived.clear()
        self._check()
        assert self.reading is not None
        arrival = asyncio.ensure_future(self.arrived.wait())
        try:
            async with asyncio.timeout(SETTLE):
                await asyncio.wait({arrival, self.reading}, return_when=asyncio.FIRST_COMPLETED)
            if not self.arrived.is_set():
                await self.reading  # it failed: raise why
                raise AssertionError(f"{self.node}: the server hung up")
        except TimeoutError:
            arrival.cancel()
            missing, extra = sorted(peers - self.peers)[:5], sorted(self.peers - peers)[:5]
            raise AssertionError(
                f"{self.node}: at seq {self.seq} of {seq}, peers missing {missing}, extra {extra}"
            ) from None
        assert self.state == state, self.node

    def _check(self) -> None:
        if self.wanted is not None and (self.peers, self.seq) == self.wanted:
            self.arrived.set()


async def join(port: int, node: str) -> Reader:
    """Connect, say hello, read the handshake."""
    reader = Reader(node, await WsSocket.open(port))
    frames = await reader.socket.hello(node=node)
    for frame in frames:
        reader.take(frame)
    assert frames[-1]["type"] == "synced"
    return reader


async def close_all(readers: list[Reader]) -> None:
    """Hang up and stop reading."""
    pumps = [reader.reading for reader in readers if reader.reading is not None]
    for reader in readers:
        await reader.socket.close()
    for pump in pumps:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


async def write_all(writer: Reader) -> tuple[int, dict[str, Any]]:
    """Write :data:`WRITES` sets of keys of its own, one a message, in bursts spread
    over the joins, reading (and checking) what the server sends meanwhile: the seq of
    its last ack and the state it wrote."""
    stamps = Stamps(writer.node)
    state: dict[str, Any] = {}
    acks: list[Frame] = []

    async def read_acks() -> None:
        for _ in range(100 * WRITES):
            frame = await writer.recv()
            writer.take(frame)
            if frame["type"] in ("ack", "error"):
                acks.append(frame)
                if len(acks) == WRITES:
                    return

    reading = asyncio.create_task(read_acks())
    for i in range(WRITES):
        entry = stamps.set(f"{writer.node}-k{i % KEYS}", i)
        await writer.socket.send({"type": "ops", "id": i, "ops": [entry]})
        state[entry["key"]] = entry
        if i % BURST == BURST - 1:
            await asyncio.sleep(0.15)
    async with asyncio.timeout(SETTLE):
        await reading
    assert [(a["type"], a["id"], a["applied"]) for a in acks] == [
        ("ack", i, 1) for i in range(WRITES)
    ]
    return acks[-1]["seq"], state


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_thousand_connections_on_one_document(server_process: ProcessFactory) -> None:
    raise_open_files(2 * CONNECTIONS + 256)
    server = server_process(None)
    await server.start()
    writers = [await join(server.port, "writer-a"), await join(server.port, "writer-b")]
    writing = asyncio.gather(*(write_all(writer) for writer in writers))
    nodes = [f"conn-{i}" for i in range(CONNECTIONS)]

    async def join_and_read(node: str) -> Reader:
        reader = await join(server.port, node)
        reader.reading = asyncio.create_task(reader.pump())
        return reader

    readers = await bounded_gather((join_and_read(node) for node in nodes), 200)
    written = await writing
    seq = max(last for last, _ in written)
    state = {key: entry for _, own in written for key, entry in own.items()}
    for writer in writers:
        writer.reading = asyncio.create_task(writer.pump())  # its keepalive pings answered
    everyone = {*nodes, *(w.node for w in writers)}

    await asyncio.gather(*(r.wait_for(everyone - {r.node}, seq, state) for r in readers))

    leaving, staying = readers[:LEAVING], readers[LEAVING:]
    await close_all(leaving)
    remaining = everyone - {r.node for r in leaving}
    await asyncio.gather(*(r.wait_for(remaining - {r.node}, seq, state) for r in staying))
    await close_all(staying)
    await close_all(writers)
