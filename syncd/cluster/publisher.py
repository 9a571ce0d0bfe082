"""Publishing a node's local writes to the cluster's stream, at their merge.

The local writes of a merge that won become stream entries {doc, node, origin,
ops} at once, while their fsync runs (:mod:`syncd.room`): one per run of
consecutive messages of one client, within the document's limits (``max_ops``
entries, a broadcast frame of ``max_frame_bytes``), so that a burst of small
messages crosses the cluster, and is committed and broadcast on the other
nodes, as a few entries. They are queued and published in order (per document,
the seq order) by one task, which joins the consecutive messages of one client
queued while its last send was under way the same way (so under load the other
nodes get few, large entries, as when a node published a group commit at once).
In ``local`` ack mode nobody waits for that; in ``redis`` mode each merge's
writers wait for it as well as for their fsync, and are answered ``internal``
if Redis refused them. Either way an ack means the write is fsync'd on this
node's disk; publishing first only lets the other nodes' readers see it as soon
as this node's readers do.

Per document the node remembers (in its state file) the seq up to which its
changes are published *and* durable here: the mark never passes the room's
:attr:`~syncd.room.Room.durable_seq`, so after a crash it never claims a seq that
the disk lost (and that a new write may take). When publishing fails, or after a
restart, the documents whose head is past that mark are *dirty*: their changes
since the mark are published again from the replica (origin: this node), which
may repeat entries other nodes already have; merging makes that harmless.
Entries published and then lost here by a crash are taken back from the cluster
at the next start (:meth:`syncd.cluster.replicator.Replicator.replay_own`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

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
    room: Room
    epoch: str
    origin: str
    ops: str
    seq: int
    count: int
    """The entries in ``ops``."""
    published: asyncio.Future[bool] | None = None
    """Resolved once this message (the last of its merge's) is published, or refused."""

    @property
    def doc(self) -> str:
        """The document's name."""
        return self.room.name


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
        self._closed = False

    @property
    def idle(self) -> bool:
        """Whether everything accepted so far is published."""
        return not self._queue and not self._dirty

    def mark_dirty(self, docs: list[str]) -> None:
        """Publish these documents' changes since their marks (at start, after a failure)."""
        self._dirty.update(docs)
        self._wake.set()

    def merged(
        self, room: Room, local: list[tuple[str, FrameResult]]
    ) -> asyncio.Future[bool] | None:
        """Queue a merge's local writes (those applied) for publishing, behind everything
        queued before.

        In ``redis`` mode, the future tells whether they were published, with whatever
        of the document was not published yet (the writers are acknowledged only then:
        a write sent again, ignored by the merge, is acknowledged once its original is
        in Redis); in ``local`` mode nobody waits (``None``).
        """
        messages = _runs(room, local)
        waits = self.mode is AckMode.REDIS and bool(local)
        if not messages and not (waits and (self._pending[room.name] or room.name in self._dirty)):
            return None
        if not messages:
            # Nothing new: wait behind what is queued or dirty (an empty message).
            messages = [_Message(room, room.store.epoch, self.node, "", room.document.seq, 0)]
        published = None
        if waits:
            published = asyncio.get_running_loop().create_future()
            if self._closed:
                published.set_result(False)  # nothing publishes any more
            messages[-1] = replace(messages[-1], published=published)
        self._queue.extend(messages)
        self._pending[room.name] += len(messages)
        self._wake.set()
        return published

    def committed(self, room: Room) -> None:
        """An append of ``room`` is fsync'd: with nothing of it left to publish, the
        mark follows its disk."""
        if not self._pending[room.name] and room.name not in self._dirty:
            self._mark(room, room.durable_seq)

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
                        _resolve(message, True)
                        self._advance(message)
            except RedisError as error:
                # Left for the next wake-up (a reconnection): the queue's documents are
                # published again from their marks.
                self._dirty.update(m.doc for m in self._queue)
                for message in self._queue:
                    _resolve(message, False)
                self._queue.clear()
                self._pending.clear()
                self.on_failure(error)

    def wake(self) -> None:
        """Try again (the connection is back)."""
        self._wake.set()

    def close(self) -> None:
        """The node is stopping (:meth:`run` was cancelled): whoever waits for a write to
        be published, now or later, is told it was not (its writer gets ``internal``);
        what is left unpublished is published at the next start (its mark stays behind)."""
        self._closed = True
        for message in self._queue:
            _resolve(message, False)

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
                room,
                room.store.epoch,
                self.node,
                json.dumps(entries[i : i + limit]),
                head,
                len(entries[i : i + limit]),
            )
            for i in range(0, len(entries), limit)
        ]
        for i in range(0, len(messages), BATCH):
            await self._send(messages[i : i + BATCH])
        self._dirty.discard(room.name)
        self._mark(room, min(head, room.durable_seq))
        if messages:
            logger.info("document %s: published %d entries again", room.name, len(entries))

    async def _send(self, messages: list[_Message]) -> None:
        entries = [(m.doc, self.node, m.origin, m.ops) for m in _join(messages)]
        if entries:
            await self.backplane.publish(entries)
            self.metrics.published.inc(len(entries))

    def _advance(self, message: _Message) -> None:
        """The mark once ``message`` is published: up to it, or with nothing more of its
        document queued, up to its room's disk; never past what its room has fsync'd."""
        room = message.room
        if message.epoch != room.store.epoch or room.name in self._dirty:
            return
        durable = room.durable_seq
        self._mark(room, min(message.seq, durable) if self._pending[room.name] else durable)

    def _mark(self, room: Room, seq: int) -> None:
        self.state.published[room.name] = (room.store.epoch, seq)


def _resolve(message: _Message, published: bool) -> None:
    if message.published is not None and not message.published.done():
        message.published.set_result(published)


def _runs(room: Room, local: list[tuple[str, FrameResult]]) -> list[_Message]:
    """The stream entries of what a merge's local writes applied, joined by :func:`_join`."""
    epoch = room.store.epoch
    return _join(
        [
            _Message(room, epoch, origin, f"[{result.ops_json}]", result.seq, result.applied)
            for origin, result in local
            if result.applied
        ]
    )


def _join(messages: list[_Message]) -> list[_Message]:
    """Consecutive messages of one document and origin joined into one while the
    entries fit one message (``max_ops``) and one broadcast frame (``max_frame_bytes``,
    less :data:`SEQ_MARGIN`); a message's own entries are never split. A joined
    message takes the seq of its last. The writes of one merge are joined so, and
    again the messages of several merges queued while a send was under way (as a group
    commit's were). Messages without entries (a writer's wait) are left out."""
    joined: list[_Message] = []
    head: _Message | None = None
    parts: list[str] = []
    count = size = seq = 0

    def close(head: _Message) -> None:
        joined.append(replace(head, ops=f"[{','.join(parts)}]", count=count, seq=seq))

    for message in messages:
        if not message.ops:
            continue
        settings = message.room.settings
        inner = message.ops[1:-1]
        grows = len(inner.encode()) + 1  # its entries and a comma
        if (
            head is not None
            and message.room is head.room
            and message.origin == head.origin
            and count + message.count <= settings.max_ops
            and size + grows <= settings.max_frame_bytes - SEQ_MARGIN
        ):
            parts.append(inner)
            count += message.count
            size += grows
            seq = message.seq
            continue
        if head is not None:
            close(head)
        head, parts, count, seq = message, [inner], message.count, message.seq
        size = len(broadcast_frame(message.seq, message.origin, "").encode()) + grows
    if head is not None:
        close(head)
    return joined
