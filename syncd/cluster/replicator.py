"""Applying the other nodes' entries from the cluster's stream.

The replicator reads the stream (one blocking read that returns as soon as
there is anything after what it read last), skips this node's own entries, and
hands the others to their rooms' commit pipelines (broadcast to local clients
with their original origin at their merge, fsync'd here, acknowledged to no
one). It reads on while they commit: a node's fsync is not in the path of the
entries that follow, nor is a stall of its disk of up to seconds (at most
``IN_FLIGHT`` batches, of at most ``IN_FLIGHT_BYTES`` of entries, wait for their
commits; the rooms' own intake limits hold back the rest). The
cursor (saved in the node's state) moves past a batch only once it and every
batch before it are committed; if a commit fails (a full disk), reading starts
again from the cursor a little later. Each read also tells whether entries
after what was read were trimmed away unread: a gap, which the node repairs by
pulling snapshots before reading on.

A node publishes its local writes at their merge, before their fsync
(:mod:`syncd.cluster.publisher`), so a crash can lose here entries that the
other nodes have. After an unclean stop the node therefore reads the stream
from its start again, applying its own entries too, up to the stream's end as
of that first read (:meth:`Replicator.replay_own`): they come back as any other
node's would. An entry trimmed from the stream was applied by every node whose
cursor passed it, and the first read from the start sees the trim as a gap and
pulls every document from the live nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from syncd.cluster.backplane import Backplane, StreamEntry
from syncd.cluster.state import NodeState, StreamId, format_id, parse_id
from syncd.crdt import wall_clock_ms
from syncd.metrics import ClusterMetrics
from syncd.protocol import valid_doc_name
from syncd.room import Room

__all__ = ["Replicator"]

logger = logging.getLogger(__name__)

BATCH = 500
"""Entries read at once."""
BLOCK_MS = 1000
"""How long one wait for new entries lasts."""
RETRY_SECONDS = 1.0
"""How long a batch whose commit failed waits before it is read again."""
IN_FLIGHT = 1024
"""Batches read and handed to their rooms whose commits are not all done, at most: two
seconds of single entries at 500 a second (a read behind the stream takes many at once).
With 8, one fsync of 16 ms stopped the broadcasts here (docs/benchmarks.md, session 8)."""
IN_FLIGHT_BYTES = 16 << 20
"""The entries' ``ops`` text in those batches, at most (at least one batch)."""


class Replicator:
    """Reads the stream and applies the other nodes' entries."""

    def __init__(
        self,
        backplane: Backplane,
        node: str,
        state: NodeState,
        open_room: Callable[[str], Awaitable[Room]],
        metrics: ClusterMetrics,
        repair_all: Callable[[str], Awaitable[None]],
    ) -> None:
        self.backplane = backplane
        self.node = node
        self.state = state
        self.open_room = open_room
        self.metrics = metrics
        self.repair_all = repair_all
        self.caught_up_ms = 0
        """Wall time of the start of the last read after which every entry in the stream
        was applied."""
        self.stream_last = "0-0"
        """The id of the stream's last entry, as of the last read."""
        self._own_until: StreamId = (0, 0)
        """This node's own entries up to this id are applied too (see :meth:`replay_own`)."""
        self._replaying = False
        """The next read sets :attr:`_own_until` to the stream's end."""
        self._read = state.cursor
        """The id of the last entry read (handed to its room, maybe not yet committed)."""
        self._in_flight: deque[tuple[asyncio.Task[None], int]] = deque()
        """The batches read whose commits are being awaited, oldest first, each with the
        bytes of its entries."""
        self._generation = 0
        """Raised when reading starts again elsewhere: older batches move no cursor."""
        self._failed = False
        """A batch's commit failed: later batches move no cursor; read it again."""

    def rewind(self, cursor: str) -> None:
        """Read again from ``cursor`` (the batches in flight no longer move the cursor)."""
        self._generation += 1
        self._failed = False
        self.state.cursor = self._read = cursor

    def replay_own(self) -> None:
        """After an unclean stop: read the stream from its start, and apply this node's
        own entries up to its end as of the first read (a crash may have lost them here
        after they were published)."""
        self.rewind("0-0")
        self._replaying = True

    def close(self) -> None:
        """Stop waiting for the batches in flight (they are read again at the next start)."""
        for task, _ in self._in_flight:
            task.cancel()
        self._in_flight.clear()

    async def step(self) -> None:
        """Read once (waiting a little for something to come): repair a gap, or hand what
        came to the rooms, whose commits are awaited meanwhile.

        A lost connection raises ``RedisError`` (the caller waits for it to be back).
        """
        while self._in_flight and self._in_flight[0][0].done():
            self._in_flight.popleft()
        if self._failed:
            # Every later batch is settled before reading again from the cursor.
            if self._in_flight:
                await asyncio.wait([task for task, _ in self._in_flight])
            self._in_flight.clear()
            self.rewind(self.state.cursor)
            await asyncio.sleep(RETRY_SECONDS)
            return
        if self._in_flight and (
            len(self._in_flight) >= IN_FLIGHT
            or sum(size for _, size in self._in_flight) >= IN_FLIGHT_BYTES
        ):
            await asyncio.wait([self._in_flight[0][0]])
            return
        started = wall_clock_ms()
        cursor = self._read
        read = await self.backplane.read_or_wait(cursor, BATCH, BLOCK_MS)
        self.stream_last = format_id(read.last)
        if self._replaying:
            self._own_until, self._replaying = read.last, False
        if read.max_deleted > parse_id(cursor):
            logger.warning(
                "cluster: entries up to %s were trimmed before this node read them (it was at "
                "%s): pulling every document from the other nodes",
                format_id(read.max_deleted),
                cursor,
            )
            await self.repair_all("trimmed")
            # Everything still in the stream is read next; the snapshots cover the rest.
            self.rewind(format_id(read.max_deleted))
            return
        if not read.entries:
            if not self._in_flight:
                self.caught_up_ms = started
            return
        waiting = await self._hand_over(read.entries)
        self._read = last = read.entries[-1].id
        previous = self._in_flight[-1][0] if self._in_flight else None
        settle = self._settle(
            previous, waiting, last, parse_id(last) >= read.last, started, self._generation
        )
        size = sum(len(entry.ops) for entry in read.entries)
        self._in_flight.append((asyncio.create_task(settle, name=f"cluster commit {last}"), size))

    async def _hand_over(
        self, entries: list[StreamEntry]
    ) -> list[tuple[StreamEntry, asyncio.Future[str | None]]]:
        """Queue the entries of other nodes in their rooms; each with its outcome."""
        waiting: list[tuple[StreamEntry, asyncio.Future[str | None]]] = []
        for entry in entries:
            if entry.node == self.node and parse_id(entry.id) > self._own_until:
                continue
            if not valid_doc_name(entry.doc):
                logger.error("cluster: entry %s names an invalid document; skipped", entry.id)
                continue
            room = await self.open_room(entry.doc)
            waiting.append((entry, await room.replicate(entry.origin, entry.ops)))
        return waiting

    async def _settle(
        self,
        previous: asyncio.Task[None] | None,
        waiting: list[tuple[StreamEntry, asyncio.Future[str | None]]],
        last: str,
        to_the_end: bool,
        started: int,
        generation: int,
    ) -> None:
        """Once the batch before is settled and every entry of this one is committed (or
        refused for good, which is logged: it never could be), move the cursor past it."""
        if previous is not None:
            await asyncio.wait([previous])  # in order: the cursor passes it first
        complete = await self._outcomes(waiting)
        if generation != self._generation or self._failed:
            return
        if not complete:
            self._failed = True
            return
        if parse_id(last) > parse_id(self.state.cursor):
            self.state.cursor = last
        if to_the_end:
            # Everything in the stream when its read started is committed here now.
            self.caught_up_ms = max(self.caught_up_ms, started)

    async def _outcomes(
        self, waiting: list[tuple[StreamEntry, asyncio.Future[str | None]]]
    ) -> bool:
        """Whether every entry was committed (or refused for good, which is logged)."""
        complete = True
        for entry, outcome in waiting:
            code = await outcome
            if code == "internal":
                complete = False
            elif code is not None:
                logger.error(
                    "cluster: entry %s from %s for document %s refused here (%s); are the "
                    "nodes' limits the same?",
                    entry.id,
                    entry.node,
                    entry.doc,
                    code,
                )
            else:
                self.metrics.applied.labels(entry.node).inc()
        return complete
