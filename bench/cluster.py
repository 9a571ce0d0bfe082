"""``make bench-cluster``: broadcast latency across nodes, one node against three.

One writer on node 1 and 50 readers: on node 1 itself when there is one node
(no ``--cluster``), spread over nodes 2 and 3 when there are three (``--cluster``
on one ``redis-server``). For each, 5,000 sets paced at 500/s and 20,000 as fast
as acknowledgements allow: broadcast latency p50/p99 (send to arrival at each
reader), acknowledged writes per second, and Redis's peak memory. The writer,
the reader processes and the latency arithmetic are those of ``bench/server``
(:mod:`bench.server.fanout`, :mod:`bench.server.readers`).

Results are printed with rich and written to ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench.server.clients import SYNCD_DIALECT, SyncdWriter, open_client
from bench.server.fanout import DOC, WriterState, percentiles, run_writer, wait_pipes
from bench.server.readers import ReaderResult, ReaderSpec, reader_process
from bench.server.servers import HOST, SYNCD, RunningServer, start_server, wait_listening

__all__ = ["CaseResult", "main"]

READERS: Final = 50
PACED_WRITES: Final = 5_000
MAX_WRITES: Final = 20_000
RATE: Final = 500.0
READER_PROCESSES: Final = 4
RESULTS: Final = Path(__file__).resolve().parent / "results" / "cluster.json"
REDIS_SERVER: Final = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass(frozen=True)
class CaseResult:
    """One measured case."""

    nodes: int
    mode: str
    writes: int
    acked_per_second: float
    latency_ms: dict[str, float]
    missing: int
    redis_peak_bytes: int


class _Redis:
    """A throw-away ``redis-server`` on a free port (AOF on, as docs/cluster.md advises)."""

    def __init__(self, folder: Path, port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        async with asyncio.timeout(15):
            while True:
                client = Redis(host=HOST, port=self.port)
                try:
                    await client.ping()
                    return
                except OSError:
                    await asyncio.sleep(0.05)
                finally:
                    await client.aclose()

    async def peak_memory(self) -> int:
        client = Redis(host=HOST, port=self.port, decode_responses=True)
        try:
            return int((await client.info("memory"))["used_memory_peak"])
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _case(nodes: int, writes: int, rate: float | None, root: Path) -> CaseResult:
    redis: _Redis | None = None
    servers: list[RunningServer] = []
    processes: list[BaseProcess] = []
    try:
        args: tuple[str, ...] = ()
        if nodes > 1:
            redis = _Redis(root / "redis", _free_port())
            await redis.ready()
            args = ("--cluster", f"redis://{HOST}:{redis.port}/0")
        for number in range(nodes):
            server = start_server(SYNCD, root / f"n{number + 1}", extra=args)
            servers.append(server)
        for server in servers:
            await wait_listening(server)
        writer = SyncdWriter(DOC, "writer")
        writer.expect(writes)
        state = WriterState(writer, writes)
        first = servers[0]
        connection = await open_client(HOST, first.port, "/ws", writer.handshake(), state)
        reader_nodes = servers[1:] if nodes > 1 else servers
        context = multiprocessing.get_context("spawn")
        pipes: list[Pipe] = []
        names = [f"reader-{i}" for i in range(READERS)]
        for p in range(READER_PROCESSES):
            target = reader_nodes[p % len(reader_nodes)]
            ours, theirs = context.Pipe()
            spec = ReaderSpec(
                SYNCD_DIALECT, HOST, target.port, "/ws", DOC,
                tuple(names[p::READER_PROCESSES]), writes, 180.0,
            )  # fmt: skip
            process: BaseProcess = context.Process(
                target=reader_process, args=(theirs, spec), daemon=True
            )
            process.start()
            theirs.close()
            processes.append(process)
            pipes.append(ours)
        await asyncio.to_thread(wait_pipes, pipes, "ready", 60.0)
        run = await run_writer(connection, state, window=256, burst=64, rate=rate, timeout=180.0)
        reports = await asyncio.to_thread(wait_pipes, pipes, "done", 200.0)
        results: list[ReaderResult] = [r for found, _cpu in reports for r in found]
        latency, missing = percentiles(results, writer.sent_ns)
        await connection.close()
        peak = await redis.peak_memory() if redis is not None else 0
        return CaseResult(
            nodes,
            "max" if rate is None else f"{rate:g}/s",
            writes,
            run.acked_per_second,
            latency,
            missing,
            peak,
        )
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for server in servers:
            server.stop()
        if redis is not None:
            redis.stop()


async def _all(quick: bool) -> list[CaseResult]:
    scale = 10 if quick else 1
    found = []
    for nodes in (1, 3):
        for writes, rate in ((PACED_WRITES // scale, RATE), (MAX_WRITES // scale, None)):
            with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
                found.append(await _case(nodes, writes, rate, Path(tmp)))
    return found


def main(argv: list[str] | None = None) -> int:
    """Run every case, print a table, write ``bench/results/cluster.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the writes")
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    results = asyncio.run(_all(args.quick))
    table = Table(title=f"syncd: one node against three ({READERS} readers)")
    for column in (
        "nodes",
        "pace",
        "writes",
        "acked/s",
        "p50 ms",
        "p99 ms",
        "missing",
        "Redis peak",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.nodes), r.mode, f"{r.writes:,}", f"{r.acked_per_second:,.0f}",
            f"{r.latency_ms.get('p50', float('nan')):.2f}",
            f"{r.latency_ms.get('p99', float('nan')):.2f}",
            str(r.missing), f"{r.redis_peak_bytes / 2**20:.1f} MiB" if r.redis_peak_bytes else "-",
        )  # fmt: skip
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.2f}; {time.monotonic() - started:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
