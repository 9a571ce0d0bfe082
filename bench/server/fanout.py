"""One writer, N readers, one server: acknowledged writes per second and broadcast latency.

A case starts a fresh server, connects the writer alone first (pycrdt-websocket can
hang when the first connections to a new room arrive together), then the reader
processes, and waits until every reader is synced. The writer then sets ``writes``
distinct keys, one per message, keeping at most ``window`` unacknowledged: as fast
as acknowledgements allow, or paced at a fixed rate. Afterwards a fresh client syncs
the whole document and checks that it holds every write, and the server's peak RSS
is read before it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pycrdt import Map

from bench.server.clients import (
    MARKER,
    SYNCD_DIALECT,
    SyncdHandshake,
    SyncdWriter,
    Writer,
    YjsHandshake,
    YjsWriter,
    open_client,
)
from bench.server.config import ServerConfig
from bench.server.readers import ReaderResult, ReaderSpec, latencies, reader_process
from bench.server.servers import (
    HOST,
    RunningServer,
    ServerKind,
    start_server,
    syncd_metrics,
    wait_listening,
)
from bench.server.wire import Connection

__all__ = [
    "DOC",
    "FanoutCase",
    "FanoutResult",
    "WriteRun",
    "WriterState",
    "percentiles",
    "run_case",
    "run_writer",
    "slow_disk_prefix",
    "verify",
    "wait_pipes",
]

log = logging.getLogger(__name__)

DOC = "bench"
_MAX_UNSENT = 1 << 20
"""Bytes the writer lets its socket buffer hold before it waits."""


@dataclass(frozen=True)
class FanoutCase:
    """One server, one reader count, one pace."""

    server: ServerKind
    readers: int
    writes: int
    rate: float | None
    """Sets per second, or ``None`` for as fast as acknowledgements allow."""
    options: tuple[str, ...] = ()
    """More ``syncd serve`` options (syncd only), e.g. ``--history-retention 0``."""
    slow_disk: tuple[int, int] | None = None
    """syncd only: (ms, n): run it under strace holding one fsync in ``n`` up ``ms`` ms."""

    @property
    def mode(self) -> str:
        """``max`` or the pace, for the report (and the slow disk, if any)."""
        pace = "max" if self.rate is None else f"{self.rate:g}/s"
        if self.slow_disk is None:
            return pace
        delay_ms, every = self.slow_disk
        return f"{pace}, slow disk (1 fsync in {every} +{delay_ms} ms)"

    def command_prefix(self) -> tuple[str, ...]:
        """What the server's command runs under: strace injecting the slow disk, or nothing."""
        return () if self.slow_disk is None else slow_disk_prefix(*self.slow_disk)


def slow_disk_prefix(delay_ms: int, every: int) -> tuple[str, ...]:
    """strace holding one fsync in ``every`` up ``delay_ms`` ms (a slow disk).

    ``--seccomp-bpf`` stops the process only at the traced calls, so the tracing
    itself costs the other calls (the broadcasts' ``sendto``) nothing.
    """
    fsyncs = "fsync,fdatasync"
    return (
        *("strace", "-f", "--seccomp-bpf", "-qq", "-o", os.devnull),
        *("-e", f"trace={fsyncs}"),
        *("-e", f"inject={fsyncs}:delay_enter={delay_ms * 1000}:when=2+{every}"),
        "--",
    )


@dataclass(frozen=True)
class WriteRun:
    """What the writer saw."""

    writes: int
    first_send_ns: int
    last_send_ns: int
    last_ack_ns: int
    ack_ms: dict[str, float]
    """p50 and p99 from a write's send to its acknowledgement, in ms."""

    @property
    def acked_per_second(self) -> float:
        """Writes divided by the time from the first send to the last acknowledgement."""
        return self.writes / max(self.last_ack_ns - self.first_send_ns, 1) * 1e9

    @property
    def send_rate(self) -> float:
        """Writes per second as sent."""
        return self.writes / max(self.last_send_ns - self.first_send_ns, 1) * 1e9


@dataclass(frozen=True)
class FanoutResult:
    """What one case measured."""

    case: FanoutCase
    write: WriteRun
    latency_ms: dict[str, float]
    """p50, p90, p99 and max over every (reader, write) pair, in ms."""
    all_delivered_s: float | None
    """From the first send until the last reader had every write; ``None`` if one never did."""
    missing: int
    """(reader, write) pairs that never arrived."""
    peak_rss: int
    verified: str
    wall_s: float
    """From the first send until the last acknowledgement or arrival, whichever is later."""
    server_cpu_s: float
    """CPU the server's process tree used over ``wall_s`` (more than ``wall_s``: several
    threads)."""
    clients_cpu_s: float
    """CPU the writer's process and the reader processes used meanwhile."""
    commits: int = 0
    """syncd only: group commits (one fsync each) over the run, from its ``/metrics``."""
    commit_seconds: float = 0.0
    """syncd only: the time its commits spent writing and fsyncing, summed."""
    slow_commits: dict[str, int] = field(default_factory=dict)
    """syncd only: commits that took longer than 2, 5 and 10 ms (its histogram's buckets)."""
    load: float = 0.0
    """The 1-minute load average when the case ended: other work on the machine."""

    @property
    def server_cpu_per_1000_ms(self) -> float:
        """The server's CPU time per 1,000 acknowledged writes, in ms."""
        return self.server_cpu_s / self.write.writes * 1e6 if self.write.writes else 0.0

    @property
    def server_cpu_share(self) -> float:
        """The server's CPU over the run, in cores (1.0: one core busy all the time)."""
        return self.server_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def clients_cpu_share(self) -> float:
        """The load generator's CPU over the run, in cores."""
        return self.clients_cpu_s / self.wall_s if self.wall_s else 0.0


class WriterState:
    """Counts acknowledgements as they arrive and wakes the sending loop."""

    def __init__(self, writer: Writer, writes: int) -> None:
        self.writer = writer
        self.writes = writes
        self.acked = 0
        self.last_ack_ns = 0
        self.acked_ns = array("q", [0]) * writes
        self.wake = asyncio.Event()
        self.all_acked = asyncio.Event()

    def __call__(self, opcode: int, payload: bytes, now: int) -> None:
        indexes = self.writer.acknowledged(payload)
        if indexes:
            for index in indexes:
                if index < self.writes:
                    self.acked_ns[index] = now
            self.acked += len(indexes)
            self.last_ack_ns = now
            self.wake.set()
            if self.acked >= self.writes:
                self.all_acked.set()


async def run_writer(
    connection: Connection,
    state: WriterState,
    *,
    window: int,
    burst: int,
    rate: float | None,
    timeout: float,
    keys: Callable[[int], str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> WriteRun:
    """Send ``state.writes`` sets, at most ``window`` unacknowledged; wait for every ack."""
    writer, writes = state.writer, state.writes
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    interval = 1.0 / rate if rate else 0.0
    sent = 0
    first = last = 0
    start = loop.time()
    while sent < writes:
        if loop.time() > deadline:
            raise TimeoutError(f"{state.acked} of {writes} writes acknowledged in {timeout:.0f} s")
        room = window - (sent - state.acked)
        if room <= 0 or connection.write_buffer_size > _MAX_UNSENT:
            state.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), 0.05)
            continue
        if rate:
            due = start + sent * interval
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
                continue
            count = min(room, writes - sent, int((now - start) / interval) + 1 - sent)
        else:
            count = min(room, writes - sent, burst)
        batch = [writer.encode(i, keys(i) if keys else None) for i in range(sent, sent + count)]
        connection.send_many(batch)
        last = time.monotonic_ns()
        first = first or last
        sent += count
        if progress is not None:
            progress(state.acked)
        await asyncio.sleep(0)
    remaining = max(deadline - loop.time(), 1.0)
    await asyncio.wait_for(state.all_acked.wait(), remaining)
    if progress is not None:
        progress(state.acked)
    waits = sorted(a - s for a, s in zip(state.acked_ns, writer.sent_ns, strict=True))
    ack_ms = {
        "p50": waits[len(waits) // 2] / 1e6,
        "p99": waits[min(len(waits) - 1, len(waits) * 99 // 100)] / 1e6,
    }
    return WriteRun(writes, first, last, state.last_ack_ns, ack_ms)


def percentiles(results: list[ReaderResult], sent_ns: array[int]) -> tuple[dict[str, float], int]:
    """p50, p90, p99 and max of every (reader, write) latency in ms, and the pairs missing."""
    values: list[int] = []
    missing = 0
    for result in results:
        found, lost = latencies(result, sent_ns)
        values.extend(found)
        missing += lost
    if not values:
        return {}, missing
    values.sort()

    def at(share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] / 1e6

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": values[-1] / 1e6}, missing


def wait_pipes(pipes: list[Pipe], kind: str, timeout: float) -> list[Any]:
    """Block until every pipe has sent a message of ``kind``; their payloads."""
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    for pipe in pipes:
        if not pipe.poll(max(deadline - time.monotonic(), 0.0)):
            raise TimeoutError(f"a reader process sent no {kind!r} within {timeout:.0f} s")
        message_kind, payload = pipe.recv()
        if message_kind == "error":
            raise RuntimeError(f"a reader process failed: {payload}")
        if message_kind != kind:
            raise RuntimeError(f"a reader process sent {message_kind!r}, expected {kind!r}")
        found.append(payload)
    return found


async def verify(server: RunningServer, writes: int) -> str:
    """A fresh client syncs the whole document; check that every write is in it."""
    if server.kind.dialect == SYNCD_DIALECT:
        handshake = SyncdHandshake(DOC, "verifier", keep_entries=True)
        connection = await open_client(HOST, server.port, server.path(DOC), handshake, _ignore)
        found = {
            int(m[1])
            for entry in handshake.entries
            if (m := MARKER.fullmatch(str(entry.get("value", "")).encode()))
        }
        count = handshake.entry_count
    else:
        yjs = YjsHandshake(YjsWriter().doc)
        connection = await open_client(HOST, server.port, server.path(DOC), yjs, _ignore)
        assert yjs.doc is not None
        values = yjs.doc.get("bench", type=Map).to_py() or {}
        found = {int(m[1]) for v in values.values() if (m := MARKER.fullmatch(str(v).encode()))}
        count = len(values)
    await connection.close()
    if found != set(range(writes)):
        raise AssertionError(f"{server.kind.name}: a fresh client finds {len(found)} of {writes}")
    return f"a fresh client's full sync holds all {writes:,} writes ({count:,} keys)"


def _ignore(opcode: int, payload: bytes, now: int) -> None:
    pass


async def run_case(
    case: FanoutCase,
    config: ServerConfig,
    progress: Callable[[int], None] | None = None,
    profile: Path | None = None,
) -> FanoutResult:
    """Run one case on a fresh server and document."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{case.server.name}-") as tmp:
        server = start_server(
            case.server,
            Path(tmp) / "data",
            profile=profile,
            extra=case.options,
            prefix=case.command_prefix(),
        )
        processes: list[BaseProcess] = []
        try:
            await wait_listening(server)
            return await _run(case, config, server, processes, progress)
        except BaseException:
            log.error("%s failed; its output ends:\n%s", case.server.name, server.log_tail())
            raise
        finally:
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
            server.stop()


async def _run(
    case: FanoutCase,
    config: ServerConfig,
    server: RunningServer,
    processes: list[BaseProcess],
    progress: Callable[[int], None] | None,
) -> FanoutResult:
    writer: Writer = (
        SyncdWriter(DOC, "writer") if case.server.dialect == SYNCD_DIALECT else YjsWriter()
    )
    writer.expect(case.writes)
    state = WriterState(writer, case.writes)
    path = server.path(DOC)
    connection = await open_client(HOST, server.port, path, writer.handshake(), state)

    context = multiprocessing.get_context("spawn")
    count = config.processes(case.readers)
    nodes = [f"reader-{i}" for i in range(case.readers)]
    pipes: list[Pipe] = []
    timeout = config.case_timeout + 30
    for p in range(count):
        ours, theirs = context.Pipe()
        spec = ReaderSpec(
            case.server.dialect,
            HOST,
            server.port,
            path,
            DOC,
            tuple(nodes[p::count]),
            case.writes,
            timeout,
        )
        process = context.Process(target=reader_process, args=(theirs, spec), daemon=True)
        process.start()
        theirs.close()
        processes.append(process)
        pipes.append(ours)
    await asyncio.to_thread(wait_pipes, pipes, "ready", 60.0)
    await asyncio.sleep(0.2)  # let the handshakes' last frames settle

    server_cpu, writer_cpu = server.cpu_seconds(), time.process_time()
    write = await run_writer(
        connection,
        state,
        window=config.window,
        burst=config.burst,
        rate=case.rate,
        timeout=config.case_timeout,
        progress=progress,
    )
    writer_cpu = time.process_time() - writer_cpu
    reports = await asyncio.to_thread(wait_pipes, pipes, "done", timeout)
    server_cpu = server.cpu_seconds() - server_cpu
    results: list[ReaderResult] = []
    readers_cpu = 0.0
    for report in reports:
        found, cpu = report
        results.extend(found)
        readers_cpu += cpu
    latency, missing = percentiles(results, writer.sent_ns)
    done = [r.done_ns for r in results]
    end = max([write.last_ack_ns, *done])
    delivered = (max(done) - write.first_send_ns) / 1e9 if all(done) else None
    commits, commit_seconds, slow = 0, 0.0, {}
    if case.server.dialect == SYNCD_DIALECT:
        metrics = await syncd_metrics(server)
        commits = int(metrics.get("syncd_commits_total", 0))
        commit_seconds = metrics.get("syncd_commit_seconds_sum", 0.0)
        slow = {
            f"{limit * 1000:g} ms": commits
            - int(metrics.get(f'syncd_commit_seconds_bucket{{le="{limit}"}}', commits))
            for limit in (0.002, 0.005, 0.01)
        }
    verified = await verify(server, case.writes)
    rss = server.peak_rss()
    await connection.close()
    log.info(
        "%s, %d readers, %s: %s acked/s, p50 %.2f ms, p99 %.2f ms, RSS %.0f MiB, "
        "CPU: server %.2f, clients %.2f cores; %d commits",
        case.server.name,
        case.readers,
        case.mode,
        f"{write.acked_per_second:,.0f}",
        latency.get("p50", float("nan")),
        latency.get("p99", float("nan")),
        rss / 2**20,
        server_cpu / max(end - write.first_send_ns, 1) * 1e9,
        (writer_cpu + readers_cpu) / max(end - write.first_send_ns, 1) * 1e9,
        commits,
    )
    return FanoutResult(
        case,
        write,
        latency,
        delivered,
        missing,
        rss,
        verified,
        wall_s=(end - write.first_send_ns) / 1e9,
        server_cpu_s=server_cpu,
        clients_cpu_s=writer_cpu + readers_cpu,
        commits=commits,
        commit_seconds=commit_seconds,
        slow_commits=slow if case.server.dialect == SYNCD_DIALECT else {},
        load=os.getloadavg()[0],
    )
