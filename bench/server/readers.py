"""Reader processes: each holds several reader connections and records when writes arrive.

The parent starts ``processes`` of them (``multiprocessing``, spawn), so that the
readers' own work is spread over processes rather than queued behind one event loop.
A process connects its readers one after another, completes each handshake, reports
``ready`` through its pipe, then records every message that carries writes: its arrival
time (``time.monotonic_ns``, one clock for the whole machine) and the first and last
write in it (:data:`bench.server.clients.MARKER`). Writes reach a reader in the order
they were sent (syncd broadcasts in seq order; the Yjs servers send one update per
message), so a message holds a run of consecutive writes; the parent checks that the
runs cover every write exactly once, and takes each write's latency as its message's
arrival minus the write's send time, which the writer recorded. A reader is done when
it has every write; the process reports once all its readers are done, or when its
time runs out (then with what arrived), with the CPU time it used.

Readers do not apply what they receive to a replica of their own: that is client
work, which here would only take CPU from the server being measured. Per message they
parse the frame and find its first and last write, so their cost does not grow with
the writes a message carries (syncd coalesces a commit's writes into one broadcast).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from bench.server.clients import (
    MARKER,
    SYNCD_DIALECT,
    Handshake,
    SyncdHandshake,
    YjsHandshake,
    open_client,
)
from bench.server.wire import Connection

__all__ = [
    "Reader",
    "ReaderResult",
    "ReaderSpec",
    "handshake_for",
    "latencies",
    "reader_process",
    "run_reporting",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderSpec:
    """What one reader process does."""

    dialect: str
    host: str
    port: int
    path: str
    doc: str
    nodes: tuple[str, ...]
    """One reader connection per node id."""
    writes: int
    """Writes numbered ``0 .. writes - 1`` each reader waits for."""
    timeout: float
    """Seconds after ``ready`` at which the process reports whatever it has."""


_TAIL = 96
"""Bytes at the end of a message that hold its last write's marker (and what follows it)."""


@dataclass(frozen=True)
class ReaderResult:
    """What one reader received: per message, its arrival and its first and last write."""

    node: str
    arrivals: bytes
    """``array('q')``: each message's arrival time (``monotonic_ns``)."""
    firsts: bytes
    """``array('q')``: the first write in each message."""
    lasts: bytes
    """``array('q')``: the last write in each message."""
    received: int
    done_ns: int
    """When it had every write (``monotonic_ns``), 0 if it never did."""


def handshake_for(dialect: str, doc: str, node: str) -> Handshake:
    """A reader's handshake in ``dialect``."""
    if dialect == SYNCD_DIALECT:
        return SyncdHandshake(doc, node)
    return YjsHandshake()


class Reader:
    """Records when each message carrying writes arrives, and which writes it carries."""

    def __init__(self, node: str, writes: int) -> None:
        self.node = node
        self.writes = writes
        self.arrivals = array("q")
        self.firsts = array("q")
        self.lasts = array("q")
        self.received = 0
        self.done_ns = 0
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self, opcode: int, payload: bytes, now: int) -> None:
        head = MARKER.search(payload)
        if head is None:
            return
        first = last = int(head[1])
        for tail in MARKER.finditer(payload, max(head.end(), len(payload) - _TAIL)):
            last = int(tail[1])
        self.arrivals.append(now)
        self.firsts.append(first)
        self.lasts.append(last)
        self.received += last - first + 1
        if self.received >= self.writes and not self.complete.done():
            self.done_ns = now
            self.complete.set_result(None)

    def result(self) -> ReaderResult:
        """What it received, to send back to the parent."""
        return ReaderResult(
            self.node,
            self.arrivals.tobytes(),
            self.firsts.tobytes(),
            self.lasts.tobytes(),
            self.received,
            self.done_ns,
        )


def latencies(result: ReaderResult, sent_ns: array[int]) -> tuple[list[int], int]:
    """Each write's latency at this reader (ns), and how many writes it never received.

    Raises ``AssertionError`` if a write arrived twice or a message's run had a gap.
    """
    arrivals, firsts, lasts = array("q"), array("q"), array("q")
    arrivals.frombytes(result.arrivals)
    firsts.frombytes(result.firsts)
    lasts.frombytes(result.lasts)
    seen = bytearray(len(sent_ns))
    found: list[int] = []
    for arrival, first, last in zip(arrivals, firsts, lasts, strict=True):
        for index in range(first, last + 1):
            if seen[index]:
                raise AssertionError(f"{result.node} received write {index} twice")
            seen[index] = 1
            if sent_ns[index]:  # 0: no start time (a stream entry the tap never saw)
                found.append(arrival - sent_ns[index])
    return found, len(sent_ns) - len(found)


async def _run(pipe: Pipe, spec: ReaderSpec) -> None:
    readers: list[Reader] = []
    connections: list[Connection] = []
    for node in spec.nodes:
        reader = Reader(node, spec.writes)
        handshake = handshake_for(spec.dialect, spec.doc, node)
        connections.append(await open_client(spec.host, spec.port, spec.path, handshake, reader))
        readers.append(reader)
    pipe.send(("ready", time.monotonic_ns()))
    cpu = time.process_time()
    try:
        await asyncio.wait_for(asyncio.gather(*(r.complete for r in readers)), timeout=spec.timeout)
    except TimeoutError:
        log.warning("readers %s: time is up with writes missing", ",".join(spec.nodes))
    pipe.send(("done", ([r.result() for r in readers], time.process_time() - cpu)))
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


def reader_process(pipe: Pipe, spec: ReaderSpec) -> None:
    """A reader process's entry point: run ``spec``, report through ``pipe``."""
    run_reporting(pipe, _run(pipe, spec))


def run_reporting(
    pipe: Pipe,
    work: Coroutine[Any, Any, None],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Run a load process's ``work`` (on a loop from ``loop_factory``, else asyncio's
    own); an exception goes to the parent through ``pipe`` as ``("error", text)`` (the
    parent fails the run); ``pipe`` is closed at the end."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(work)
    except Exception as error:
        pipe.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        pipe.close()
