"""``python -m bench.server.connections`` (``make bench-connections``): 10,000 connections on
one document (issue #14).

One ``syncd serve`` on 127.0.0.1; one writer (this process) sets keys at 500/s for the
whole run; crowd processes (:mod:`bench.server.crowd`, 4 × 2,500 by default) connect
10,000 clients to the same document, each with its handshake. Measured:

- the time from the first connection attempt until all 10,000 are ``synced`` (goal
  < 10 s), and each handshake's own duration;
- once they are all connected, the broadcast latency of a window of writes (send at the
  writer → arrival at every client): p50, p99, max over every (client, write) pair;
  and while they join, the same over the writes sent meanwhile, to the clients synced
  before each (the others get it in their snapshot);
- the server's resident memory (``VmRSS`` sampled every 250 ms, and ``VmHWM``; goal
  < 1 GB), and the CPU used by the server and by the load generator itself.

Progress bars and log lines go to stderr, a table to stdout; the report is written to
``bench/results/connections-latest.md`` and every number to ``connections-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from bench.display import Check, checks_table, progress_bar, save_report, start_run, table
from bench.machine import Machine, describe, load_average, machine_rows
from bench.server.clients import SyncdWriter, open_client
from bench.server.crowd import BUCKET_NS, CrowdSpec, CrowdTally, Joined, crowd_process
from bench.server.crowd import raise_open_files as raise_own_open_files
from bench.server.fanout import WriterState, run_writer
from bench.server.servers import HOST, SYNCD, RunningServer, start_server, syncd_metrics
from bench.server.servers import wait_listening as wait_server

__all__ = ["FULL", "QUICK", "ConnectionsConfig", "ConnectionsResult", "main", "run"]

log = logging.getLogger(__name__)

RESULTS: Final = Path(__file__).resolve().parents[1] / "results"
DOC: Final = "crowd"
GOAL_SYNCED_S: Final = 10.0
GOAL_RSS: Final = 1 << 30
_RSS_EVERY: Final = 0.25
"""Seconds between two samples of the server's ``VmRSS``."""
_STOP_TRIES: Final = 50
"""Cancellations (0.1 s apart) a task gets to end before it is left running."""


@dataclass(frozen=True)
class ConnectionsConfig:
    """What one run does."""

    connections: int = 10_000
    processes: int = 4
    rate: float = 500.0
    """The writer's sets per second, for the whole run."""
    keys: int = 100
    """The writer cycles over this many keys: the handshakes stay small, as in a live
    document that is edited rather than grown."""
    window_writes: int = 2_500
    """Writes whose broadcast latency is measured, once every client is synced (5 s)."""
    lead_s: float = 2.0
    """Seconds between naming the window to the crowd and its first write."""
    concurrency: int = 32
    """Handshakes in flight per crowd process."""
    unacked: int = 1_000
    """The most writes the writer keeps unacknowledged."""
    timeout: float = 180.0
    """Seconds the joins, and then the window, may take before the run fails."""


FULL: Final = ConnectionsConfig()
QUICK: Final = ConnectionsConfig(connections=1_000, processes=2, window_writes=500)
"""``--quick``: a small smoke run (not for the record)."""


@dataclass
class ConnectionsResult:
    """Everything one run measured."""

    config: ConnectionsConfig
    command: str
    machine: Machine
    load_after: str = ""
    synced: int = 0
    failures: int = 0
    first_failures: list[str] = field(default_factory=list)
    all_synced_s: float | None = None
    """From the first connection attempt until the last client was ``synced``."""
    handshake_ms: dict[str, float] = field(default_factory=dict)
    """p50, p99 and max of each client's own connect → ``synced`` time."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Broadcast latency over every (client, write) pair of the window: p50, p90, p99, max."""
    join_latency_ms: dict[str, float] = field(default_factory=dict)
    """The same over the join phase's (client, write) pairs delivered as broadcasts."""
    join_pairs: int = 0
    pairs: int = 0
    missing: int = 0
    lost: int = 0
    """Clients whose connection ended before the window did (dropped by the server)."""
    writes_per_s: float = 0.0
    """The writer's acknowledged sets per second during the window."""
    rss_synced: int = 0
    """The server's ``VmRSS`` when all were synced."""
    rss_max: int = 0
    """The largest ``VmRSS`` sampled."""
    peak_rss: int = 0
    """The server's ``VmHWM`` at the end."""
    join_s: float = 0.0
    window_s: float = 0.0
    """From the window's first write acknowledged to its last."""
    server_cpu_join_s: float = 0.0
    server_cpu_window_s: float = 0.0
    crowd_cpu_join_s: float = 0.0
    crowd_cpu_window_s: float = 0.0
    """From all synced until the window's last write arrived everywhere."""
    crowd_cpu_tally_s: float = 0.0
    """The crowd's arithmetic afterwards (not load on the server)."""
    writer_cpu_s: float = 0.0
    """The writer's process (which also reads the crowd's reports) over the whole run."""
    commits: int = 0
    commit_s: float = 0.0
    """The time syncd's group commits spent writing and fsyncing, summed."""
    queue_drops: int = 0


class _Crowd:
    """The crowd processes and their pipes, read by this process's event loop."""

    def __init__(self, config: ConnectionsConfig, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        nodes = [f"conn-{i:05d}" for i in range(config.connections)]
        self.processes: list[BaseProcess] = []
        self.pipes: list[Pipe] = []
        self.queues: list[asyncio.Queue[tuple[Any, ...]]] = []
        self.progress = [0] * config.processes
        loop = asyncio.get_running_loop()
        for p in range(config.processes):
            ours, theirs = context.Pipe()
            spec = CrowdSpec(
                HOST,
                port,
                "/ws",
                DOC,
                tuple(nodes[p :: config.processes]),
                config.concurrency,
                config.timeout,
            )
            process = context.Process(target=crowd_process, args=(theirs, spec), daemon=True)
            process.start()
            theirs.close()
            queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
            loop.add_reader(ours.fileno(), self._reader(p, ours, queue))
            self.processes.append(process)
            self.pipes.append(ours)
            self.queues.append(queue)

    def _reader(self, index: int, pipe: Pipe, queue: asyncio.Queue[tuple[Any, ...]]) -> Any:
        def read() -> None:
            try:
                while pipe.poll():
                    message = pipe.recv()
                    if message[0] == "progress":
                        self.progress[index] = message[1]
                    else:
                        queue.put_nowait(message)
            except (EOFError, OSError):
                # The process is gone: stop watching its pipe (at its end, always ready to
                # read), and fail whatever waits for its next message.
                asyncio.get_running_loop().remove_reader(pipe.fileno())
                queue.put_nowait(("error", "the process ended (its pipe is closed)"))

        return read

    def send(self, *message: Any) -> None:
        """Send ``message`` to every crowd process."""
        for pipe in self.pipes:
            pipe.send(message)

    async def gather(self, kind: str, timeout: float) -> list[Any]:
        """Every process's next message, which must be of ``kind``: their payloads."""

        async def one(queue: asyncio.Queue[tuple[Any, ...]]) -> Any:
            message = await queue.get()
            if message[0] == "error":
                raise RuntimeError(f"a crowd process failed: {message[1]}")
            if message[0] != kind:
                raise RuntimeError(f"a crowd process sent {message[0]!r}, expected {kind!r}")
            return message[1] if len(message) > 1 else None

        async with asyncio.timeout(timeout):
            return await asyncio.gather(*(one(q) for q in self.queues))

    def stop(self) -> None:
        """Remove the readers, then let the processes end (terminating the stragglers)."""
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(pipe.fileno())
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _quantiles(values: list[int], shares: dict[str, float], scale: float) -> dict[str, float]:
    values.sort()
    if not values:
        return {}
    return {
        name: values[min(len(values) - 1, int(share * len(values)))] / scale
        for name, share in shares.items()
    }


def _bucket_quantiles(counts: Counter[int]) -> dict[str, float]:
    """p50, p90, p99 and max in ms from latency buckets (each bucket's upper edge)."""
    total = sum(counts.values())
    if not total:
        return {}
    found: dict[str, float] = {}
    wanted = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)]
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        while wanted and seen >= wanted[0][1] * total:
            found[wanted.pop(0)[0]] = (bucket + 1) * BUCKET_NS / 1e6
    found["max"] = (max(counts) + 1) * BUCKET_NS / 1e6
    return found


async def _sample_rss(server: RunningServer, result: ConnectionsResult) -> None:
    while True:
        result.rss_max = max(result.rss_max, server.rss())
        await asyncio.sleep(_RSS_EVERY)


async def _wait_acked(state: WriterState, count: int, timeout: float) -> None:
    """Wait until the writer has ``count`` acknowledgements (polled: no event per count)."""
    async with asyncio.timeout(timeout):
        while state.acked < count:
            await asyncio.sleep(0.02)


async def _measure(
    config: ConnectionsConfig,
    server: RunningServer,
    result: ConnectionsResult,
    crowd: _Crowd,
    on_progress: Callable[[str, int], None],
) -> None:
    capacity = int(config.rate * (2 * config.timeout + 60))
    writer = SyncdWriter(DOC, "writer")
    writer.expect(capacity)
    state = WriterState(writer, capacity)
    connection = await open_client(HOST, server.port, "/ws", writer.handshake(), state)
    await crowd.gather("ready", 60.0)
    writer_cpu = time.process_time()
    writing = asyncio.create_task(
        run_writer(
            connection,
            state,
            window=config.unacked,
            burst=64,
            rate=config.rate,
            timeout=3 * config.timeout,
            keys=lambda i: f"k{i % config.keys:04d}",
        )
    )
    try:
        await _wait_acked(state, int(config.rate), 30.0)  # the writer runs before anyone joins
        server_cpu = server.cpu_seconds()
        go = time.monotonic_ns()
        join_first = _first_unsent(writer, state.acked, capacity)
        crowd.send("go", join_first)
        synced_task = asyncio.create_task(crowd.gather("synced", config.timeout + 30))
        while not synced_task.done():
            on_progress("synced", sum(crowd.progress))
            await asyncio.wait({synced_task}, timeout=0.1)
        joins: list[Joined] = synced_task.result()
        joined_at = time.monotonic_ns()
        result.join_s = (joined_at - go) / 1e9
        result.server_cpu_join_s = server.cpu_seconds() - server_cpu
        result.crowd_cpu_join_s = sum(j.cpu_s for j in joins)
        result.rss_synced = server.rss()
        _joined(result, joins, go)
        on_progress("synced", result.synced)

        # The window starts a little later, so that every process knows it before its first write.
        first_unsent = _first_unsent(writer, state.acked, capacity)
        lo = first_unsent + int(config.lead_s * config.rate)
        hi = lo + config.window_writes
        crowd.send("measure", lo, hi)
        await crowd.gather("measuring", config.timeout)
        if _first_unsent(writer, state.acked, capacity) > lo:
            raise RuntimeError("the window began before every crowd process knew it")
        await _wait_acked(state, lo, config.timeout)
        window_start, server_cpu = time.monotonic_ns(), server.cpu_seconds()
        while state.acked < hi:
            on_progress("window", state.acked - lo)
            await _wait_acked(state, min(hi, state.acked + 50), config.timeout)
        on_progress("window", hi - lo)
        result.window_s = (time.monotonic_ns() - window_start) / 1e9
        result.server_cpu_window_s = server.cpu_seconds() - server_cpu
        result.writes_per_s = (hi - lo) / max(result.window_s, 1e-9)
        # The crowd stops reading while it tallies: more broadcasts would only pile up
        # in the server's buffers (its memory is measured).
        await _stop(writing)
        crowd.send("sent", writer.sent_ns[join_first:hi].tobytes(), first_unsent)
        tallies: list[CrowdTally] = await crowd.gather("done", config.timeout + 30)
    finally:
        await _stop(writing)
    result.writer_cpu_s = time.process_time() - writer_cpu
    counts: Counter[int] = Counter()
    join_counts: Counter[int] = Counter()
    for tally in tallies:
        counts.update(tally.counts)
        join_counts.update(tally.join_counts)
    result.latency_ms = _bucket_quantiles(counts)
    result.pairs = sum(counts.values())
    result.join_latency_ms = _bucket_quantiles(join_counts)
    result.join_pairs = sum(join_counts.values())
    result.missing = sum(t.missing for t in tallies)
    result.lost = sum(t.lost for t in tallies)
    result.crowd_cpu_window_s = sum(t.cpu_s for t in tallies) - result.crowd_cpu_join_s
    result.crowd_cpu_tally_s = sum(t.tally_cpu_s for t in tallies)
    metrics = await syncd_metrics(server)
    result.commits = int(metrics.get("syncd_commits_total", 0))
    result.commit_s = metrics.get("syncd_commit_seconds_sum", 0.0)
    result.queue_drops = int(metrics.get("syncd_queue_drops_total", 0))
    crowd.send("close")
    connection.abort()


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for its end: again if it went on (Python 3.11's
    ``wait_for``, which the writer waits in, can swallow a cancellation)."""
    for _ in range(_STOP_TRIES):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the run's outcome is decided elsewhere


def _first_unsent(writer: SyncdWriter, acked: int, capacity: int) -> int:
    """The index of the writer's next write (every write before it is sent)."""
    return next(i for i in range(acked, capacity) if writer.sent_ns[i] == 0)


def _joined(result: ConnectionsResult, joins: list[Joined], go: int) -> None:
    """Take the crowd's ``synced`` reports into ``result``."""
    durations: list[int] = []
    last = 0
    for joined in joins:
        started, synced = array("q"), array("q")
        started.frombytes(joined.started_ns)
        synced.frombytes(joined.synced_ns)
        for start, done in zip(started, synced, strict=True):
            if done:
                durations.append(done - start)
                last = max(last, done)
        result.failures += joined.failures
        result.first_failures += joined.first_failures
    result.synced = len(durations)
    if result.synced == result.config.connections:
        result.all_synced_s = (last - go) / 1e9
    result.handshake_ms = _quantiles(durations, {"p50": 0.5, "p99": 0.99, "max": 1.0}, 1e6)


async def run(
    config: ConnectionsConfig,
    command: str,
    console: Console,
    profile: Path | None = None,
    venv: Path | None = None,
) -> ConnectionsResult:
    """Run the benchmark once on a fresh server and document (under cProfile, writing
    its statistics to ``profile``, if given; the ``syncd`` of ``venv`` if given, another
    build, this one's if not)."""
    raise_own_open_files()
    result = ConnectionsResult(config, command, describe())
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as tmp:
        server = start_server(SYNCD, Path(tmp) / "data", profile=profile, venv=venv)
        crowd: _Crowd | None = None
        sampling = asyncio.create_task(_sample_rss(server, result))
        try:
            await wait_server(server)
            crowd = _Crowd(config, server.port)
            with progress_bar(console) as bar:
                tasks = {
                    "synced": bar.add_task("clients synced", total=config.connections),
                    "window": bar.add_task("window writes acked", total=config.window_writes),
                }

                def on_progress(name: str, done: int) -> None:
                    bar.update(tasks[name], completed=done)

                await _measure(config, server, result, crowd, on_progress)
            result.peak_rss = server.peak_rss()
        except BaseException:
            log.error("the run failed; syncd's output ends:\n%s", server.log_tail())
            raise
        finally:
            sampling.cancel()
            if crowd is not None:
                crowd.stop()
            server.stop()
    result.load_after = load_average()
    return result


# -- the report -------------------------------------------------------------------------


def _ms(values: dict[str, float], name: str) -> str:
    return f"{values[name]:,.1f} ms" if name in values else "n/a"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _cores(cpu: float, seconds: float) -> str:
    return f"{cpu:,.1f} s ({cpu / seconds:.2f} cores)" if seconds else f"{cpu:,.1f} s"


def result_rows(result: ConnectionsResult) -> list[list[str]]:
    """What was measured, one row each."""
    config = result.config
    synced = "never" if result.all_synced_s is None else f"{result.all_synced_s:.2f} s"
    return [
        ["clients synced", f"{result.synced:,} of {config.connections:,}"],
        ["time until all were synced", synced],
        [
            "one handshake, p50 / p99 / max",
            " / ".join(_ms(result.handshake_ms, n) for n in ("p50", "p99", "max")),
        ],
        ["broadcast latency p50", _ms(result.latency_ms, "p50")],
        ["broadcast latency p90", _ms(result.latency_ms, "p90")],
        ["broadcast latency p99", _ms(result.latency_ms, "p99")],
        ["broadcast latency max", _ms(result.latency_ms, "max")],
        ["(client, write) pairs measured / missing", f"{result.pairs:,} / {result.missing:,}"],
        [
            "broadcast latency while joining, p50 / p99 / max",
            " / ".join(_ms(result.join_latency_ms, n) for n in ("p50", "p99", "max")),
        ],
        ["(client, write) pairs while joining", f"{result.join_pairs:,}"],
        ["writes acked per second in the window", f"{result.writes_per_s:,.0f}"],
        ["clients lost / dropped by the server", f"{result.lost:,} / {result.queue_drops:,}"],
        ["server VmRSS when all were synced", _mib(result.rss_synced)],
        ["server VmRSS, largest sample", _mib(result.rss_max)],
        ["server VmHWM (peak)", _mib(result.peak_rss)],
        ["server CPU while joining", _cores(result.server_cpu_join_s, result.join_s)],
        ["server CPU in the window", _cores(result.server_cpu_window_s, result.window_s)],
        ["crowd CPU while joining", _cores(result.crowd_cpu_join_s, result.join_s)],
        [
            "crowd CPU from all synced to the window's last arrival",
            f"{result.crowd_cpu_window_s:,.1f} s",
        ],
        ["crowd CPU of the latency tally afterwards", f"{result.crowd_cpu_tally_s:,.1f} s"],
        ["writer process CPU (whole run)", f"{result.writer_cpu_s:,.1f} s"],
        [
            "group commits (whole run), mean time each",
            f"{result.commits:,}, {result.commit_s / max(result.commits, 1) * 1e3:.1f} ms",
        ],
    ]


def checks(result: ConnectionsResult) -> list[Check]:
    """The issue's goals against what was measured."""
    synced = result.all_synced_s
    return [
        Check(
            f"{result.config.connections:,} clients synced",
            "never" if synced is None else f"{synced:.2f} s",
            f"< {GOAL_SYNCED_S:g} s",
            synced is not None and synced < GOAL_SYNCED_S,
        ),
        Check(
            "server memory (VmHWM)", _mib(result.peak_rss), "< 1 GB", 0 < result.peak_rss < GOAL_RSS
        ),
        Check(
            "every window write reached every client",
            f"{result.missing:,} missing, {result.lost:,} lost",
            "0",
            result.missing == 0 and result.lost == 0,
        ),
    ]


def render_markdown(result: ConnectionsResult) -> str:
    """The report."""
    config = result.config
    lines = [
        f"# {config.connections:,} connections on one document",
        "",
        f"Command: `{result.command}`. {config.processes} crowd processes × "
        f"{config.connections // config.processes:,} clients, {config.concurrency} handshakes "
        f"in flight each; one writer at {config.rate:g} sets/s over {config.keys} keys for "
        f"the whole run; latency over a window of {config.window_writes:,} writes once all "
        "were synced.",
        "",
        *table(["", ""], machine_rows(result.machine, result.load_after)),
        "",
        *table(["measured", "value"], result_rows(result)),
        "",
        *checks_table(checks(result)),
    ]
    if result.first_failures:
        lines += ["", "First failures: " + "; ".join(result.first_failures)]
    return "\n".join(lines)


def print_table(console: Console, result: ConnectionsResult) -> None:
    """The measurements as a rich table."""
    shown = Table(title=f"{result.config.connections:,} connections on one document")
    shown.add_column("measured")
    shown.add_column("value", justify="right")
    for row in result_rows(result):
        shown.add_row(*row)
    console.print(shown)


# -- the command line ---------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.server.connections", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 clients, a smoke run")
    parser.add_argument("--rate", type=float, help="the writer's sets per second (500)")
    parser.add_argument("--window", type=int, help="writes whose latency is measured (2,500)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to save the report")
    parser.add_argument(
        "--profile", type=Path, help="run the server under cProfile, its statistics to this file"
    )
    parser.add_argument(
        "--venv", type=Path, help="serve with this virtual environment's syncd (another build)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be above 0")
    if args.window is not None and args.window <= 0:
        parser.error("--window must be above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark as the command line asks; the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    args = _parse(arguments)
    console, command = start_run(
        verbose=args.verbose,
        module="bench.server.connections",
        target="bench-connections",
        arguments=arguments,
        from_shell=argv is None,
    )
    config = QUICK if args.quick else FULL
    if args.rate is not None:
        config = replace(config, rate=args.rate)
    if args.window is not None:
        config = replace(config, window_writes=args.window)
    result = asyncio.run(run(config, command, console, args.profile, args.venv))
    print_table(Console(), result)
    samples = json.dumps(asdict(result), indent=2, default=str)
    report = save_report(args.output, "connections-latest", render_markdown(result), samples)
    log.info("report saved to %s", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
