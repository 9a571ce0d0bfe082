"""A crowd process: a few thousand syncd clients on one document, for ``bench.server.connections``.

The parent starts several of these (``multiprocessing``, spawn) so that 10,000 sockets
are served by several event loops: uvloop's, whose transports connect and read for
well under half the CPU of asyncio's selector loop, left to the server measured on
the same cores (docs/benchmarks.md, session 7). A process raises its own open-files
limit, says ``ready``, and on ``go`` connects its clients, at most ``concurrency``
handshakes at a time, each on :class:`bench.server.wire.Connection` (which answers
the server's keepalive pings). It reports how many are synced as they get there,
then each one's start and ``synced`` times.

Every client receives a ``welcome`` naming up to 10,000 peers and a ``presence`` frame
per tick, megabytes in all: a client looks at nothing but the start of each frame
(its ``type``), so the load generator does not become the bottleneck.

From ``go`` (which names the writer's first write of the join phase) one client in
:data:`JOIN_SAMPLE` records the ``ops`` broadcasts it gets once synced (the others
once the window is named): arrival time (``monotonic_ns``, one clock for every
process) and the first and last write in the frame, found as
:mod:`bench.server.readers` does. Once the parent names a window of writes
(``measure``, answered by ``measuring``), a client's record ends with the window's
last write. When the parent sends the send times (``sent``) and the first write after
all were synced, the process turns every (client, write) pair into a latency, counted
in buckets of :data:`BUCKET_NS`: the window's pairs, with those that never arrived,
and apart, the pairs of the join phase that arrived by broadcast (a client got the
writes before its join in its snapshot); it sends back the counts and the CPU it used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final

import uvloop

from bench.server.clients import MARKER, Handshake, open_client
from bench.server.readers import run_reporting
from bench.server.wire import Connection

__all__ = [
    "BUCKET_NS",
    "JOIN_SAMPLE",
    "CrowdSpec",
    "CrowdTally",
    "Joined",
    "LazyHandshake",
    "Recorder",
    "Window",
    "crowd_process",
    "raise_open_files",
]

log = logging.getLogger(__name__)

BUCKET_NS: Final = 10_000
"""Latencies are counted in buckets of 10 µs."""
_SYNCED: Final = b'{"type":"synced"'
_ERROR: Final = b'{"type":"error"'
_OPS: Final = b'{"type":"ops"'
_TAIL: Final = 96
"""Bytes at the end of a frame that hold its last write's marker (and what follows it)."""
_PROGRESS_EVERY: Final = 0.25
"""Seconds between two progress reports to the parent."""
_MESSAGES: Final = 4
"""The parent's messages to a process: ``go``, ``measure``, ``sent``, ``close``."""
JOIN_SAMPLE: Final = 10
"""One client in this many records the join phase's broadcasts: millions of pairs still,
for a tenth of the load generator's work while it joins the crowd."""


def raise_open_files() -> int:
    """Raise this process's soft open-files limit to the hard limit (as ``syncd serve``
    does); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass(frozen=True)
class CrowdSpec:
    """What one crowd process does."""

    host: str
    port: int
    path: str
    doc: str
    nodes: tuple[str, ...]
    """One client per node id."""
    concurrency: int
    """Handshakes in flight at once."""
    timeout: float
    """Seconds one handshake, and the wait for the window's writes, may take."""


@dataclass(frozen=True)
class Joined:
    """The ``synced`` report: when each client started connecting and was synced (0: never)."""

    started_ns: bytes
    """``array('q')`` by client."""
    synced_ns: bytes
    """``array('q')`` by client."""
    failures: int
    first_failures: list[str]
    cpu_s: float
    """CPU the process used from ``go`` until then."""


@dataclass(frozen=True)
class CrowdTally:
    """The ``done`` report: the window's latencies at this process's clients."""

    counts: dict[int, int]
    """The window's pairs by latency bucket (latency // :data:`BUCKET_NS`)."""
    join_counts: dict[int, int]
    """The join phase's pairs (writes sent from ``go`` until all were synced, to the
    clients synced before them), by latency bucket."""
    missing: int
    """(client, write) pairs of the window that never arrived."""
    lost: int
    """Clients whose connection ended before the window did."""
    cpu_s: float
    """CPU the process used from ``go`` until the window's last write had arrived."""
    tally_cpu_s: float
    """CPU the tally itself took afterwards."""


class LazyHandshake(Handshake):
    """``hello``, then everything up to ``synced``, judged by the first bytes of each frame."""

    def __init__(self, doc: str, node: str) -> None:
        self.doc, self.node = doc, node

    def opening(self) -> list[str | bytes]:
        return [json.dumps({"type": "hello", "v": 1, "doc": self.doc, "node": self.node})]

    def feed(self, opcode: int, payload: bytes, now: int) -> list[str | bytes]:
        if payload.startswith(_SYNCED):
            self.done, self.done_ns = True, now
        elif payload.startswith(_ERROR):
            raise RuntimeError(f"syncd refused the handshake: {payload[:200]!r}")
        return []


@dataclass
class Window:
    """The writes whose arrivals are recorded: from ``start`` (none while it is below 0)
    to ``hi - 1`` (no end while ``hi`` is below 0); the window measured is ``lo .. hi - 1``."""

    start: int = -1
    lo: int = -1
    hi: int = -1


class Recorder:
    """One client after its handshake: ignores all but the ``ops`` frames recorded
    (``sampled``: from the join phase on, else from the window on)."""

    def __init__(self, window: Window, sampled: bool) -> None:
        self.window = window
        self.sampled = sampled
        self.arrivals = array("q")
        self.firsts = array("q")
        self.lasts = array("q")
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self, opcode: int, payload: bytes, now: int) -> None:
        start = self.window.start if self.sampled else self.window.lo
        hi = self.window.hi
        if start < 0 or not payload.startswith(_OPS):
            return
        head = MARKER.search(payload)
        if head is None:
            return
        first = last = int(head[1])
        for tail in MARKER.finditer(payload, max(head.end(), len(payload) - _TAIL)):
            last = int(tail[1])
        if last < start or 0 <= hi <= first:
            return
        self.arrivals.append(now)
        self.firsts.append(max(first, start))
        self.lasts.append(last if hi < 0 else min(last, hi - 1))
        if 0 <= hi - 1 <= last and not self.complete.done():
            self.complete.set_result(None)

    def tally(
        self, sent_ns: array[int], joined: int, counts: Counter[int], join_counts: Counter[int]
    ) -> int:
        """Add this client's latencies to ``counts`` (the window's writes) and to
        ``join_counts`` (the writes before ``joined``, the first sent once all were
        synced); ``sent_ns`` holds the send times from the window's ``start``. Returns
        how many of the window's writes it never got."""
        start, lo = self.window.start, self.window.lo
        received = 0
        for arrival, first, last in zip(self.arrivals, self.firsts, self.lasts, strict=True):
            if first < joined:
                join_counts.update(
                    (arrival - sent) // BUCKET_NS
                    for sent in sent_ns[first - start : min(last + 1, joined) - start]
                )
            if last >= lo:
                first = max(first, lo)
                counts.update(
                    (arrival - sent) // BUCKET_NS
                    for sent in sent_ns[first - start : last - start + 1]
                )
                received += last - first + 1
        return self.window.hi - lo - received


class _Inbox:
    """The parent's messages, read by a thread and queued for the event loop.

    Not by the loop itself: uvloop (libuv) makes a descriptor it watches non-blocking,
    and the pipe's larger messages (the send times; this process's own reports) must
    be received and sent whole."""

    def __init__(self, pipe: Pipe) -> None:
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:
            with contextlib.suppress(EOFError, OSError):
                for _ in range(_MESSAGES):
                    message = pipe.recv()
                    loop.call_soon_threadsafe(self._queue.put_nowait, message)
                    if message[0] == "close":
                        return

        threading.Thread(target=read, name="inbox", daemon=True).start()

    async def expect(self, kind: str) -> tuple[Any, ...]:
        """The next message, which must be of ``kind``: its arguments."""
        message = await self._queue.get()
        if message[0] != kind:
            raise RuntimeError(f"expected {kind!r} from the parent, got {message[0]!r}")
        return message[1:]


async def _run(pipe: Pipe, spec: CrowdSpec) -> None:
    raise_open_files()
    inbox = _Inbox(pipe)
    window = Window()
    count = len(spec.nodes)
    recorders = [Recorder(window, i % JOIN_SAMPLE == 0) for i in range(len(spec.nodes))]
    connections: list[Connection | None] = [None] * count
    started, synced = array("q", [0]) * count, array("q", [0]) * count
    gate = asyncio.Semaphore(spec.concurrency)

    async def join(index: int) -> None:
        async with gate:
            started[index] = time.monotonic_ns()
            handshake = LazyHandshake(spec.doc, spec.nodes[index])
            connections[index] = await open_client(
                spec.host, spec.port, spec.path, handshake, recorders[index], spec.timeout
            )
            synced[index] = handshake.done_ns

    async def report_progress() -> None:
        while True:
            pipe.send(("progress", sum(1 for s in synced if s)))
            await asyncio.sleep(_PROGRESS_EVERY)

    pipe.send(("ready",))
    (window.start,) = await inbox.expect("go")
    cpu = time.process_time()
    reporting = asyncio.create_task(report_progress())
    outcomes = await asyncio.gather(*(join(i) for i in range(count)), return_exceptions=True)
    reporting.cancel()
    failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    joined_cpu = time.process_time() - cpu
    joined = Joined(started.tobytes(), synced.tobytes(), len(failures), failures[:3], joined_cpu)
    pipe.send(("synced", joined))

    window.lo, window.hi = await inbox.expect("measure")
    pipe.send(("measuring",))
    sent_bytes, joined_at = await inbox.expect("sent")
    live = [r.complete for r, c in zip(recorders, connections, strict=True) if c is not None]
    try:
        await asyncio.wait_for(asyncio.gather(*live), spec.timeout)
    except TimeoutError:
        log.warning("%s clients: time is up with writes missing", spec.nodes[0])
    window_cpu = time.process_time() - cpu
    sent_ns = array("q")
    sent_ns.frombytes(sent_bytes)
    counts: Counter[int] = Counter()
    join_counts: Counter[int] = Counter()
    missing = sum(r.tally(sent_ns, joined_at, counts, join_counts) for r in recorders)
    lost = sum(1 for c in connections if c is None or c.closed.done())
    tally_cpu = time.process_time() - cpu - window_cpu
    tally = CrowdTally(dict(counts), dict(join_counts), missing, lost, window_cpu, tally_cpu)
    pipe.send(("done", tally))
    await inbox.expect("close")
    for connection in connections:
        if connection is not None:
            connection.abort()


def crowd_process(pipe: Pipe, spec: CrowdSpec) -> None:
    """A crowd process's entry point: run ``spec``, report through ``pipe``."""
    run_reporting(pipe, _run(pipe, spec), uvloop.new_event_loop)
