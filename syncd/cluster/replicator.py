"""Applying the other nodes' entries from the cluster's stream.

The replicator reads the stream from its cursor (one blocking read that
returns as soon as there is anything after it), skips this node's own
entries, and hands the others to their rooms' commit pipelines (fsync'd here,
broadcast to local clients with their original origin, acknowledged to no
one). The cursor moves past a batch only once all of it is committed; if a
commit fails (a full disk), the batch is read again later. Each read also
tells whether entries after the cursor were trimmed away unread: a gap, which
the node repairs by pulling snapshots before reading on.

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

    def replay_own(self) -> None:
        """After an unclean stop: read the stream from its start, and apply this node's
        own entries up to its end as of the first read (a crash may have lost them here
        after they were published)."""
        self.state.cursor = "0-0"
        self._replaying = True

    async def step(self) -> None:
        """Read once (waiting a little for something to come): repair a gap, or apply what came.

        A lost connection raises ``RedisError`` (the caller waits for it to be back).
        """
        started = wall_clock_ms()
        cursor = self.state.cursor
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
            self.state.cursor = format_id(read.max_deleted)
            return
        if not read.entries:
            self.caught_up_ms = started
            return
        if await self._apply(read.entries):
            self.state.cursor = read.entries[-1].id
            if parse_id(self.state.cursor) >= read.last:
                # Everything in the stream when the read started is committed here now.
                self.caught_up_ms = started
        else:
            await asyncio.sleep(RETRY_SECONDS)

    async def _apply(self, entries: list[StreamEntry]) -> bool:
        """Commit the entries of other nodes; whether all were committed (or refused for
        good, which is logged: they could never be)."""
        waiting: list[tuple[StreamEntry, asyncio.Future[str | None]]] = []
        for entry in entries:
            if entry.node == self.node and parse_id(entry.id) > self._own_until:
                continue
            if not valid_doc_name(entry.doc):
                logger.error("cluster: entry %s names an invalid document; skipped", entry.id)
                continue
            room = await self.open_room(entry.doc)
            waiting.append((entry, await room.replicate(entry.origin, entry.ops)))
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
