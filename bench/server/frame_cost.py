"""``python -m bench.server.frame_cost [CLIENTS] [WRITES]``: the server's CPU per (client,
frame) of a broadcast, apart from pacing and joins.

One ``syncd serve`` (this venv's); ``CLIENTS`` readers (2,000) connect to one document
and finish their handshakes; then one writer sets ``WRITES`` keys (100), each after the
previous one's ack and a pause of 50 ms, so each is a broadcast of its own to every
reader. Printed (one line of JSON): the server's CPU over the writes (``/proc``, its
process tree) divided by the ``ops`` frames the readers got. The readers run in this
process, so the run is slow; the figure is the server's alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from bench.server.crowd import raise_open_files
from bench.server.servers import SYNCD, start_server, wait_listening

__all__ = ["main", "measure"]

PAUSE_S = 0.05
"""Seconds between an ack and the next write: every write is a broadcast of its own."""
DOC = "frame-cost"


async def _handshake(connection: ClientConnection, node: str) -> None:
    await connection.send(json.dumps({"type": "hello", "v": 1, "doc": DOC, "node": node}))
    for _ in range(1_000_000):
        if str(await connection.recv()).startswith('{"type":"synced"'):
            return
    raise RuntimeError(f"{node}: no synced")


async def _read(url: str, node: str, joined: asyncio.Semaphore, frames: list[int]) -> None:
    async with connect(url, max_size=None, ping_interval=None, compression=None) as connection:
        await _handshake(connection, node)
        joined.release()
        async for message in connection:
            if str(message).startswith('{"type":"ops"'):
                frames[0] += 1


async def measure(clients: int, writes: int) -> dict[str, float]:
    """Run once on a fresh server; the figures printed."""
    raise_open_files()
    with tempfile.TemporaryDirectory(prefix="bench-frame-cost-") as tmp:
        server = start_server(SYNCD, Path(tmp) / "data")
        readers: list[asyncio.Task[None]] = []
        try:
            await wait_listening(server)
            url = f"ws://127.0.0.1:{server.port}/ws"
            joined, frames = asyncio.Semaphore(0), [0]
            for i in range(clients):
                readers.append(asyncio.create_task(_read(url, f"r{i}", joined, frames)))
            async with asyncio.timeout(600):
                for _ in range(clients):
                    await joined.acquire()
            await asyncio.sleep(1.0)  # the last presence ticks go out
            async with connect(url, compression=None) as writer:
                await _handshake(writer, "writer")
                cpu, started = server.cpu_seconds(), time.monotonic()
                for i in range(writes):
                    ts = f"{int(time.time() * 1000):013d}-00000-writer"
                    ops = [{"key": f"k{i % 10}", "ts": ts, "value": i}]
                    await writer.send(json.dumps({"type": "ops", "id": i, "ops": ops}))
                    while not str(await writer.recv()).startswith('{"type":"ack"'):
                        pass
                    await asyncio.sleep(PAUSE_S)
                deadline = time.monotonic() + 120
                while frames[0] < clients * writes and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                cpu = server.cpu_seconds() - cpu
            return {
                "clients": clients,
                "writes": writes,
                "frames": frames[0],
                "server_cpu_s": round(cpu, 3),
                "us_per_client_frame": round(cpu / max(frames[0], 1) * 1e6, 2),
                "wall_s": round(time.monotonic() - started, 1),
            }
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            server.stop()


def main() -> int:
    """Measure as the command line asks; print one line of JSON."""
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    writes = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    print(json.dumps(asyncio.run(measure(clients, writes))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
