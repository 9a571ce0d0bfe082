"""Publishing a node's local commits to the cluster's stream.

The local writes of a commit that won their merge become stream entries {doc,
node, origin, ops} once fsync'd: one per run of consecutive messages of one
client, within the document's limits (``max_ops`` entries, a broadcast frame of
``max_frame_bytes``), so that a burst of small messages crosses the cluster,
and is committed and broadcast on the other nodes, as a few entries. In
``local`` ack mode the entries are queued and published in order in the
background; in ``redis`` mode the commit waits for Redis to take them and its
writers are answered ``internal`` if it cannot.

Per document the node remembers (in its state file) the seq up to which its
changes are published. When publishing fails, or after a restart, the
documents whose head is past that mark are *dirty*: their changes since the
mark are published again from the replica (origin: this node), which may
repeat entries other nodes already have; merging makes that harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from syncd.cluster.backplane import Backplane
from syncd.cluster.config import AckMode
from syncd.cluster.state import NodeState
from syncd.crdt import FrameResult, broadcast_frame
from syncd.metrics import ClusterMetrics
from syncd.room import Room

__all__ = ["Publisher"]

logger = logging.getLogger(__name__)

BATCH = 256
"""Entries published in one round trip."""
SEQ_MARGIN = 24
"""Bytes kept free in a merged entry's broadcast frame: another node's seq may be longer."""


@dataclass(frozen=True)
class _Message:
    doc: str
    epoch: str
    origin: str
    ops: str
    seq: int


class Publisher:
    """Publishes local commits, in order, and republishes what a failure left out."""

    def __init__(
        self,
        backplane: Backplane,
        node: str,
        mode: AckMode,
        state: NodeState,
        open_room: Callable[[str], Awaitable[Room]],
        metrics: ClusterMetrics,
        on_failure: Callable[[RedisError], None],
    ) -> None:
        self.backplane = backplane
        self.node = node
        self.mode = mode
        self.state = state
        self.open_room = open_room
        self.metrics = metrics
        self.on_failure = on_failure
        self._queue: deque[_Message] = deque()
        self._pending: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    @property
    def idle(self) -> bool:
        """Whether everything accepted so far is published."""
        return not self._queue and not self._dirty

    def mark_dirty(self, docs: list[str]) -> None:
        """Publish these documents' changes since their marks (at start, after a failure)."""
        self._dirty.update(docs)
        self._wake.set()

    async def committed(self, room: Room, local: list[tuple[str, FrameResult]]) -> bool:
        """A commit of ``room`` is fsync'd; whether its writers may be acknowledged."""
        doc = room.name
        messages = _runs(room, local)
        if self.mode is AckMode.LOCAL:
            if messages:
                self._queue.extend(messages)
                self._pending[doc] += len(messages)
                self._wake.set()
            elif not self._pending[doc] and doc not in self._dirty:
                self._mark(room, room.document.seq)  # only other nodes' entries: nothing to publish
            return True
        try:
            if doc in self._dirty:
                await self._catch_up(room)
            await self._send(messages)
        except RedisError as error:
            self._dirty.add(doc)
            self.on_failure(error)
            return False
        self._mark(room, room.document.seq)
        return True

    async def run(self) -> None:
        """Publish the queue and the dirty documents; after a failure, wait to be woken."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                for doc in sorted(self._dirty):
                    await self._catch_up(await self.open_room(doc))
                while self._queue:
                    batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
                    await self._send(batch)
                    for message in batch:
                        self._queue.popleft()
                        self._pending[message.doc] -= 1
                        mark = self.state.published.get(message.doc)
                        if mark is None or mark[1] < message.seq or mark[0] != message.epoch:
                            self.state.published[message.doc] = (message.epoch, message.seq)
            except RedisError as error:
                # Left for the next wake-up (a reconnection): the queue's documents are
                # published again from their marks.
                self._dirty.update(m.doc for m in self._queue)
                self._queue.clear()
                self._pending.clear()
                self.on_failure(error)

    def wake(self) -> None:
        """Try again (the connection is back)."""
        self._wake.set()

    async def _catch_up(self, room: Room) -> None:
        """Publish ``room``'s changes since its mark, from the replica."""
        document = room.document
        epoch, since = self.state.published.get(room.name, ("", 0))
        if epoch != room.store.epoch or since > document.seq:
            since = 0  # another lineage of the document: publish all of it
        head = document.seq
        entries = [e.to_wire() for e in document.changes_since(since)]
        limit = max(document.max_ops, 1)
        messages = [
            _Message(
                room.name, room.store.epoch, self.node, json.dumps(entries[i : i + limit]), head
            )
            for i in range(0, len(entries), limit)
        ]
        for i in range(0, len(messages), BATCH):
            await self._send(messages[i : i + BATCH])
        self._dirty.discard(room.name)
        self._mark(room, head)
        if messages:
            logger.info("document %s: published %d entries again", room.name, len(entries))

    async def _send(self, messages: list[_Message]) -> None:
        if messages:
            await self.backplane.publish([(m.doc, self.node, m.origin, m.ops) for m in messages])
            self.metrics.published.inc(len(messages))

    def _mark(self, room: Room, seq: int) -> None:
        self.state.published[room.name] = (room.store.epoch, seq)


def _runs(room: Room, local: list[tuple[str, FrameResult]]) -> list[_Message]:
    """The stream entries of a commit's local writes: consecutive messages of one origin
    merged while the entries fit in one message and one broadcast frame."""
    limit_ops = room.settings.max_ops
    limit_bytes = room.settings.max_frame_bytes - SEQ_MARGIN
    messages: list[_Message] = []
    run: list[FrameResult] = []
    origin = ""
    count = size = 0

    def close() -> None:
        ops = ",".join(r.ops_json for r in run)
        messages.append(_Message(room.name, room.store.epoch, origin, f"[{ops}]", run[-1].seq))

    for writer, result in local:
        grows = len(result.ops_json.encode()) + 1  # its entries and a comma
        if run and (
            writer != origin or count + result.applied > limit_ops or size + grows > limit_bytes
        ):
            close()
            run = []
        if not run:
            origin = writer
            count = 0
            size = len(broadcast_frame(result.seq, writer, "").encode())
        run.append(result)
        count += result.applied
        size += grows
    if run:
        close()
    return messages
