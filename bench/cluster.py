"""``make bench-cluster``: syncd on several nodes against one node, and its failures.

Broadcast latency: one writer on node 1 and 50 readers, on node 1 itself when
there is one node (no ``--cluster``), spread over nodes 2 and 3 when there are
three (``--cluster`` on one ``redis-server``). For each, 5,000 sets paced at
500/s and 20,000 as fast as acknowledgements allow: broadcast latency p50/p99
(send to arrival at each reader), acknowledgement latency, acknowledged writes
per second, and Redis's peak memory. The writer, the reader processes and the
latency arithmetic are those of ``bench/server`` (:mod:`bench.server.fanout`,
:mod:`bench.server.readers`), with its window, so the single node's figure is
comparable with ``make bench-server``'s syncd at 50 readers.

Then the failures of :mod:`bench.cluster_faults` (failover after ``kill -9``,
convergence after a 30 s cut from Redis), each the median of a few runs, and
the disk's own fsync latency (:mod:`bench.server.disk`), the floor under each of
the two fsyncs a cross-node write goes through.

``--ab VENV`` instead runs the three-node paced case (``--max``: the full-speed
one; ``--nodes 1``: the single node's; ``--slow-disk``: every node on a slow disk,
``make bench-server``'s, one fsync in 4 held up 40 ms) with VENV's syncd (another
build, e.g. of ``main``) and this build's in turn, ``--rounds`` times each, and
prints every run and the medians.

``--profile FOLDER`` instead runs two nodes, one reader on node 2, writes paced
at 100/s and 500/s, with node 2 under cProfile: where a cross-node write's time
goes (its profile is saved in FOLDER and its top functions printed).

Results are printed with rich and written to ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from bench.cluster_faults import (
    CUT_SECONDS,
    CUT_WRITES,
    FAILOVER_KEYS,
    converge_after_cut,
    failover,
)
from bench.cluster_redis import RedisProcess
from bench.display import progress_bar
from bench.server.clients import SYNCD_DIALECT, SyncdWriter, open_client
from bench.server.config import ServerConfig
from bench.server.disk import FsyncProbe, probe_fsync
from bench.server.fanout import (
    DOC,
    WriterState,
    percentiles,
    run_writer,
    slow_disk_prefix,
    wait_pipes,
)
from bench.server.readers import ReaderResult, ReaderSpec, reader_process
from bench.server.servers import (
    HOST,
    SYNCD,
    RunningServer,
    start_server,
    syncd_metrics,
    wait_listening,
)

__all__ = ["CaseResult", "main"]

READERS: Final = 50
PACED_WRITES: Final = 5_000
MAX_WRITES: Final = 20_000
RATE: Final = 500.0
READER_PROCESSES: Final = 5
WINDOW: Final = 1_000
"""Unacknowledged writes at most: ``make bench-server``'s window."""
BURST: Final = 64
REPEATS: Final = 3
"""Runs of each failure measurement (their median is reported)."""
RESULTS: Final = Path(__file__).resolve().parent / "results" / "cluster.json"
STREAM: Final = "syncd:log"
"""The cluster's stream (:mod:`syncd.cluster.backplane`)."""
_MARKER: Final = re.compile(r"w([0-9]+)@")
"""A write's index in its value (:func:`bench.server.clients.marker`)."""


@dataclass(frozen=True)
class CaseResult:
    """One measured broadcast case."""

    nodes: int
    mode: str
    readers: int
    writes: int
    acked_per_second: float
    ack_ms: dict[str, float]
    latency_ms: dict[str, float]
    missing: int
    redis_peak_bytes: int
    commit_ms: list[float]
    """Mean commit (append + fsync) time on each node, in ms."""
    cpu_s: list[float]
    """CPU time each node used, in seconds."""
    to_stream_ms: dict[str, float] = field(default_factory=dict)
    """With several nodes: from a write's send to its entry's arrival at a client
    reading the stream (:class:`_StreamTap`): the writer's node's share."""
    from_stream_ms: dict[str, float] = field(default_factory=dict)
    """From that arrival to each reader's: the share of Redis's readers (the other
    nodes) and their clients."""


class _StreamTap:
    """A client blocked on the cluster's stream, as the nodes are, that notes when each
    write's entry arrives (``monotonic_ns``, the writer's clock): where the cross-node
    latency goes, on either side of Redis."""

    def __init__(self, redis: RedisProcess, writes: int) -> None:
        self.redis = redis
        self.arrived_ns = array("q", [0]) * writes
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading the stream from its beginning."""
        self._task = asyncio.create_task(self._read(), name="stream tap")

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        client = self.redis.client()
        last = "0-0"
        try:
            while True:
                found: Any = await client.xread({STREAM: last}, count=500, block=1000)
                now = time.monotonic_ns()
                for _, entries in found:
                    for entry_id, fields in entries:
                        last = entry_id
                        for match in _MARKER.finditer(str(fields["ops"])):
                            index = int(match[1])
                            if index < len(self.arrived_ns) and not self.arrived_ns[index]:
                                self.arrived_ns[index] = now
        finally:
            await client.aclose()

    def split(
        self, results: list[ReaderResult], sent_ns: array[int]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """p50/p99 (ms) of send → stream, and of stream → each reader (every pair), of the
        writes whose entry the tap saw (at full speed the nodes may trim some first)."""
        to_stream = sorted(
            (arrived - sent) / 1e6
            for arrived, sent in zip(self.arrived_ns, sent_ns, strict=True)
            if arrived and sent
        )
        from_stream, _ = percentiles(results, self.arrived_ns)
        if not to_stream:
            return {}, from_stream
        at = {q: to_stream[min(len(to_stream) - 1, int(share * len(to_stream)))]
              for q, share in (("p50", 0.5), ("p99", 0.99))}  # fmt: skip
        return at, from_stream


@dataclass(frozen=True)
class Failures:
    """The failure measurements: every run, in seconds."""

    failover_s: list[float]
    converge_s: list[float]

    @property
    def failover_median(self) -> float:
        """The median failover time."""
        return statistics.median(self.failover_s)

    @property
    def converge_median(self) -> float:
        """The median convergence time."""
        return statistics.median(self.converge_s)


def _start_readers(
    targets: list[RunningServer], readers: int, processes: int, writes: int
) -> tuple[list[BaseProcess], list[Pipe]]:
    context = multiprocessing.get_context("spawn")
    started: list[BaseProcess] = []
    pipes: list[Pipe] = []
    names = [f"reader-{i}" for i in range(readers)]
    for p in range(processes):
        target = targets[p % len(targets)]
        ours, theirs = context.Pipe()
        spec = ReaderSpec(
            SYNCD_DIALECT, HOST, target.port, "/ws", DOC, tuple(names[p::processes]), writes, 180.0
        )
        process: BaseProcess = context.Process(
            target=reader_process, args=(theirs, spec), daemon=True
        )
        process.start()
        theirs.close()
        started.append(process)
        pipes.append(ours)
    return started, pipes


async def _commit_ms(server: RunningServer) -> float:
    samples = await syncd_metrics(server)
    count = samples.get("syncd_commit_seconds_count", 0.0)
    return samples.get("syncd_commit_seconds_sum", 0.0) / count * 1000 if count else 0.0


async def _case(
    nodes: int,
    writes: int,
    rate: float | None,
    root: Path,
    *,
    readers: int = READERS,
    reader_processes: int = READER_PROCESSES,
    profile: Path | None = None,
    progress: Callable[[int], None] | None = None,
    venv: Path | None = None,
    slow_disk: bool = False,
) -> CaseResult:
    """One writer on node 1; readers on the other nodes (on node 1 if alone); the nodes
    are ``venv``'s syncd (another build), this one's if None; on a slow disk if
    ``slow_disk`` (``make bench-server``'s)."""
    redis: RedisProcess | None = None
    servers: list[RunningServer] = []
    processes: list[BaseProcess] = []
    tap: _StreamTap | None = None
    try:
        args: tuple[str, ...] = ()
        if nodes > 1:
            redis = RedisProcess(root / "redis")
            await redis.start()
            args = ("--cluster", redis.url)
        for number in range(nodes):
            servers.append(
                start_server(
                    SYNCD,
                    root / f"n{number + 1}",
                    extra=args,
                    profile=profile if number == 1 else None,
                    venv=venv,
                    prefix=_slow_disk() if slow_disk else (),
                )
            )
        for server in servers:
            await wait_listening(server)
        writer = SyncdWriter(DOC, "writer")
        writer.expect(writes)
        state = WriterState(writer, writes)
        connection = await open_client(HOST, servers[0].port, "/ws", writer.handshake(), state)
        targets = servers[1:] if nodes > 1 else servers
        processes, pipes = _start_readers(targets, readers, reader_processes, writes)
        await asyncio.to_thread(wait_pipes, pipes, "ready", 60.0)
        tap = _StreamTap(redis, writes) if redis is not None else None
        if tap is not None:
            tap.start()
        run = await run_writer(
            connection,
            state,
            window=WINDOW,
            burst=BURST,
            rate=rate,
            timeout=180.0,
            progress=progress,
        )
        reports = await asyncio.to_thread(wait_pipes, pipes, "done", 200.0)
        results: list[ReaderResult] = [r for found, _cpu in reports for r in found]
        latency, missing = percentiles(results, writer.sent_ns)
        to_stream: dict[str, float] = {}
        from_stream: dict[str, float] = {}
        if tap is not None:
            await tap.stop()
            to_stream, from_stream = tap.split(results, writer.sent_ns)
        await connection.close()
        return CaseResult(
            nodes,
            "max" if rate is None else f"{rate:g}/s",
            readers,
            writes,
            run.acked_per_second,
            run.ack_ms,
            latency,
            missing,
            await redis.peak_memory() if redis is not None else 0,
            [await _commit_ms(server) for server in servers],
            [server.cpu_seconds() for server in servers],
            to_stream,
            from_stream,
        )
    finally:
        if tap is not None:
            await tap.stop()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for server in servers:
            server.stop()
        if redis is not None:
            redis.cleanup()


def _slow_disk() -> tuple[str, ...]:
    config = ServerConfig()
    return slow_disk_prefix(config.slow_disk_delay_ms, config.slow_disk_every)


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda done: progress.update(task, completed=done)


async def _broadcast_cases(quick: bool, progress: Progress) -> list[CaseResult]:
    scale = 10 if quick else 1
    found = []
    for nodes in (1, 3):
        for writes, rate in ((PACED_WRITES // scale, RATE), (MAX_WRITES // scale, None)):
            pace = "max" if rate is None else f"{rate:g}/s"
            task = progress.add_task(f"{nodes} node(s), {pace}", total=writes)
            with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
                found.append(
                    await _case(nodes, writes, rate, Path(tmp), progress=_advance(progress, task))
                )
            progress.update(task, completed=writes)
    return found


def _cut(quick: bool) -> tuple[float, int]:
    """The cut's length and the writes made meanwhile."""
    return (CUT_SECONDS / 6, CUT_WRITES // 10) if quick else (CUT_SECONDS, CUT_WRITES)


async def _failures(quick: bool, progress: Progress) -> Failures:
    repeats = 1 if quick else REPEATS
    cut, writes = _cut(quick)
    task = progress.add_task("failover (kill -9)", total=repeats)
    failovers = []
    for _ in range(repeats):
        failovers.append(await failover())
        progress.advance(task)
    converges = []
    for run in range(repeats):
        task = progress.add_task(f"cut from Redis {cut:g} s, run {run + 1}", total=writes)
        converges.append(await converge_after_cut(cut, writes, _advance(progress, task)))
        progress.update(task, completed=writes)
    return Failures(failovers, converges)


def _ms(values: dict[str, float], key: str) -> str:
    return f"{values.get(key, float('nan')):,.2f}"


def _pair(values: dict[str, float]) -> str:
    """``p50 / p99`` in ms."""
    return f"{_ms(values, 'p50')} / {_ms(values, 'p99')}"


def _print(
    console: Console,
    cases: list[CaseResult],
    failures: Failures,
    goals: list[Goal],
    disk: FsyncProbe,
    load: tuple[float, float],
) -> None:
    table = Table(title=f"syncd: one node against three ({READERS} readers), ms")
    header = ("nodes", "pace", "writes", "acked/s", "ack p50", "p50", "p99", "missing")
    for column in (*header, "commit", "Redis"):
        table.add_column(column, justify="right")
    for r in cases:
        table.add_row(
            str(r.nodes), r.mode, f"{r.writes:,}", f"{r.acked_per_second:,.0f}",
            _ms(r.ack_ms, "p50"), _ms(r.latency_ms, "p50"), _ms(r.latency_ms, "p99"),
            str(r.missing), "/".join(f"{c:.1f}" for c in r.commit_ms),
            f"{r.redis_peak_bytes / 2**20:.1f}M" if r.redis_peak_bytes else "-",
        )  # fmt: skip
    console.print(table)
    console.print(f"failover runs: {_runs_text(failures.failover_s)}")
    console.print(f"convergence runs: {_runs_text(failures.converge_s)}")
    console.print(f"disk fsync: {disk.describe()}")
    console.print(f"load average: {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    verdicts = Table(title="issue #12's goals")
    for column in ("goal", "this run", "met"):
        verdicts.add_column(column)
    for goal in goals:
        verdicts.add_row(goal.goal, goal.figure, {True: "yes", False: "NO", None: "-"}[goal.met])
    console.print(verdicts)


def _runs_text(values: list[float]) -> str:
    """``median ms (runs: a, b, c)``."""
    runs = ", ".join(f"{v * 1000:.0f} ms" for v in values)
    return f"{statistics.median(values) * 1000:.0f} ms (runs: {runs})"


@dataclass(frozen=True)
class Goal:
    """One goal of issue #12 and this run's figure for it."""

    goal: str
    figure: str
    met: bool | None
    """``None`` when the goal has no threshold."""


def _goals(cases: list[CaseResult], failures: Failures, cut: str) -> list[Goal]:
    by = {(r.nodes, r.mode): r for r in cases}
    paced, one_max, three_max = by[(3, f"{RATE:g}/s")], by[(1, "max")], by[(3, "max")]
    p99 = paced.latency_ms.get("p99", float("inf"))
    share = three_max.acked_per_second / one_max.acked_per_second
    return [
        Goal("cross-node broadcast p99 < 15 ms at 500 sets/s", f"{p99:.1f} ms", p99 < 15),
        Goal(
            "3 nodes: acknowledged writes/s as fast as acks allow",
            f"{three_max.acked_per_second:,.0f}/s ({share:.2f}x one node)",
            None,
        ),
        # Against another build only side by side, on the same machine: --ab VENV --nodes 1 --max.
        Goal(
            "one node (no --cluster) >= 0.9x main's",
            f"{one_max.acked_per_second:,.0f}/s (the ratio: --ab VENV --nodes 1 --max)",
            None,
        ),
        Goal(
            f"failover after kill -9, {FAILOVER_KEYS:,} keys: < 2 s",
            f"{failures.failover_median * 1000:.0f} ms",
            failures.failover_median < 2,
        ),
        Goal(
            f"converged < 2 s after a cut ({cut})",
            f"{failures.converge_median * 1000:.0f} ms",
            failures.converge_median < 2,
        ),
    ]


async def _profile(folder: Path, console: Console) -> None:
    """Two nodes, one reader on node 2 (profiled): 2,000 writes at 100/s, then at 500/s."""
    folder.mkdir(parents=True, exist_ok=True)
    for rate in (100.0, 500.0):
        stats = folder / f"node2-{rate:g}.pstats"
        with tempfile.TemporaryDirectory(prefix="bench-cluster-profile-") as tmp:
            r = await _case(2, 2_000, rate, Path(tmp), readers=1, reader_processes=1, profile=stats)
        console.print(
            f"{rate:g}/s: ack p50 {_ms(r.ack_ms, 'p50')} p99 {_ms(r.ack_ms, 'p99')} ms; "
            f"cross-node p50 {_ms(r.latency_ms, 'p50')} p99 {_ms(r.latency_ms, 'p99')} "
            f"max {_ms(r.latency_ms, 'max')} ms; commit ms per node {r.commit_ms}"
        )
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(25)
    console.print(f"disk fsync: {probe_fsync().describe()}")


async def _ab(
    baseline: Path,
    rounds: int,
    paced: bool,
    console: Console,
    nodes: int = 3,
    slow_disk: bool = False,
) -> None:
    """The paced (or full-speed) case on ``nodes`` nodes (each on a slow disk if
    ``slow_disk``), ``baseline``'s syncd (A) and this build's (B) in turn, ``rounds``
    times each: every run and the medians. The order alternates (A B, B A, …): the
    second run of a pair starts while the machine still writes back the first one's
    files."""
    writes, rate = (PACED_WRITES, RATE) if paced else (MAX_WRITES, None)
    load_start = os.getloadavg()[0]
    runs: dict[str, list[CaseResult]] = {"A": [], "B": []}
    pace = f"{RATE:g} sets/s" if paced else "max"
    disk = ", slow disk" if slow_disk else ""
    title = f"{nodes} node(s){disk}, {READERS} readers, {pace}: A {baseline}, B this build"
    table = Table(title=title)
    columns = ("round", "build", "acked/s", "ack p50", "ack p99", "p50", "p99",
               "to stream p50/p99", "from stream p50/p99", "nodes' CPU s", "missing",
               "load")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for number in range(rounds):
        pair: list[tuple[str, Path | None]] = [("A", baseline), ("B", None)]
        for build, venv in pair if number % 2 == 0 else reversed(pair):
            with tempfile.TemporaryDirectory(prefix="bench-cluster-ab-") as tmp:
                r = await _case(nodes, writes, rate, Path(tmp), venv=venv, slow_disk=slow_disk)
            runs[build].append(r)
            table.add_row(
                str(number + 1), build, f"{r.acked_per_second:,.0f}",
                _ms(r.ack_ms, "p50"), _ms(r.ack_ms, "p99"),
                _ms(r.latency_ms, "p50"), _ms(r.latency_ms, "p99"), _pair(r.to_stream_ms),
                _pair(r.from_stream_ms), f"{sum(r.cpu_s):.2f}", str(r.missing),
                f"{os.getloadavg()[0]:.2f}",
            )  # fmt: skip
    for build, found in runs.items():
        medians = {
            kind: {q: statistics.median(getattr(r, kind).get(q, math.nan) for r in found)
                   for q in ("p50", "p99")}
            for kind in ("ack_ms", "latency_ms", "to_stream_ms", "from_stream_ms")
        }  # fmt: skip
        acked = statistics.median(r.acked_per_second for r in found)
        cpu = statistics.median(sum(r.cpu_s) for r in found)
        table.add_row(
            "median", build, f"{acked:,.0f}",
            _ms(medians["ack_ms"], "p50"), _ms(medians["ack_ms"], "p99"),
            _ms(medians["latency_ms"], "p50"), _ms(medians["latency_ms"], "p99"),
            _pair(medians["to_stream_ms"]), _pair(medians["from_stream_ms"]), f"{cpu:.2f}",
            "", "",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"load average: {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )


async def _all(quick: bool, console: Console) -> None:
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    with progress_bar(console) as progress:
        cases = await _broadcast_cases(quick, progress)
        failures = await _failures(quick, progress)
        disk = await asyncio.to_thread(probe_fsync)
    load = (load_start, os.getloadavg()[0])
    cut, writes = _cut(quick)
    goals = _goals(cases, failures, f"{cut:g} s, {writes:,} writes")
    _print(console, cases, failures, goals, disk, load)
    console.print(f"{time.monotonic() - started:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "command": "python -m bench.cluster" + (" --quick" if quick else ""),
        "load_average": {"start": load[0], "end": load[1]},
        "cases": [asdict(r) for r in cases],
        "failover_s": failures.failover_s,
        "converge_s": failures.converge_s,
        "fsync_ms": asdict(disk),
        "goals": [asdict(goal) for goal in goals],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run every case, print the results, write ``bench/results/cluster.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the writes, one run")
    parser.add_argument(
        "--profile", type=Path, metavar="FOLDER", help="profile the cross-node path instead"
    )
    parser.add_argument(
        "--ab",
        type=Path,
        metavar="VENV",
        help="instead, A/B the 3-node paced case: VENV's syncd against this build's, in turn",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --ab (default 3)")
    parser.add_argument(
        "--max", action="store_true", help="with --ab: the full-speed case, not the paced one"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        choices=(1, 3),
        default=3,
        help="with --ab: 1 for the single node (no --cluster, its readers on it; default 3)",
    )
    parser.add_argument(
        "--slow-disk",
        action="store_true",
        help="with --ab: every node on a slow disk (one fsync in 4 held up 40 ms)",
    )
    args = parser.parse_args(argv)
    console = Console()
    if args.profile is not None:
        asyncio.run(_profile(args.profile, console))
    elif args.ab is not None:
        asyncio.run(_ab(args.ab, args.rounds, not args.max, console, args.nodes, args.slow_disk))
    else:
        asyncio.run(_all(args.quick, console))
    return 0


if __name__ == "__main__":
    sys.exit(main())
