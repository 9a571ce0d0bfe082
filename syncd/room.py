"""A document being served: its replica, its clients, and its commit pipeline.

Writes wait in a queue as they arrive. The room's merge task takes everything
queued, applies it to the in-memory replica (the core validates and merges
each ``ops`` frame whole) and at once broadcasts what won to the other members:
the applied entries of consecutive messages of one origin go out as one frame.
Its flush task appends what every merge since its last append won to the log
with a single fsync (group commit), and only then acknowledges the writers. So
readers never wait for the disk, and an ack still means the write is durable.
While one fsync is under way the next merges go on, and their lines wait for the
next append; merges pause only when more than ``intake_limit`` bytes wait.

A client joins only between merges (both hold the room's lock): its snapshot and
the broadcasts that follow it leave no gap. A snapshot, like a broadcast, may
hold writes not yet on disk. A crash can lose them; the server then starts with
a new epoch (:mod:`syncd.store`), so no client resumes across them and every
client gets a snapshot. If the disk refuses an append (full, failing), its
writers are answered ``internal`` (their clients send again later: a duplicate,
acknowledged once its original is stored), and its merges, which readers saw,
stay in memory for the next append, tried at the next write or after
``APPEND_RETRY_SECONDS``; nobody is disconnected, and merging waits while more
than ``intake_limit`` bytes wait for the disk. Stopping meanwhile loses them, as
a crash would: the next start gives the document a new epoch.

Each connection receives acks and broadcasts in seq order, so a client's resume
point is the greatest seq it has seen: the broadcasts merged while one of its own
writes waits for its fsync are held for it and sent right after that write's
answer; a connection with nothing in flight gets each broadcast at its merge.

The files are written in threads: a document's loads and appends always in its
log lane, its folds in its fold lane (:mod:`syncd.lanes`), so a fold overlaps the
appends that follow it. A new document's file is written there too, ahead of its
first append, from the blank document it was: its first write is broadcast (and
published) at its merge like any other, and a file that cannot be created is a
refused append.

Frames are written to a client's socket without waiting for it: each encoded once
for all its members, and written with whatever else the client got in the same
loop turn, once, at the end of the turn (:mod:`syncd.outlet`). A client whose
unsent bytes pass the queue limit is closed with 1013 and dropped, so a slow
reader never delays the writer or the other readers.

Presence is announced in ticks (:mod:`syncd.presence`): a join or a leave
schedules one ``presence`` frame for everyone, :data:`PRESENCE_TICK` later, that
carries every change of the tick, so a join costs the same in a document of ten
clients as in one of ten thousand.

The merge task writes to the clients in passes: a pass broadcasts the merge of
every write queued and announces the presence tick if one is due, and each client
gets what the pass gave it in one write. With thousands of clients a pass takes a
while; once one takes more than :data:`BROADCAST_PACED_ABOVE`, the next comes no
sooner than it takes the pass to be :data:`BROADCAST_SHARE` of the time, so joins
and pings keep the rest, and the writes and the joins and leaves that arrive
meanwhile go out together in the next pass. While clients are joining (a join
waits for the room's lock, or one joined since the last pass) the share is
:data:`JOINING_SHARE` instead: a crowd arriving gets most of the time, and a
joining client finds the writes not yet broadcast in its snapshot anyway. Either
way no pass waits more than :data:`BROADCAST_MAX_PAUSE` after the one before.

With ``--history-retention`` above zero a room keeps its document's history
(:mod:`syncd.history`), opened in its lane at the first commit or read and caught
up with the log there, without making anyone wait: each append's rows (its
applied entries and the entries that lost their merge) are queued for the
document's history lane right after its fsync'd append, before its writers
are acknowledged, and written in batches while the acks go out and the next commits
append (:mod:`syncd.history_queue`); a history read first waits until what was
merged before it is appended and its rows written, so a client finds in the
history every write it was sent (broadcasts go out at the merge, before the
append), and a fold waits for the rows before it deletes log segments.

In a cluster (``--cluster``) a room also has a :class:`Replication`. Each merge
hands it its local writes right after their broadcast, so that they are published
to the other nodes while their fsync runs here: the other nodes' readers, like
this node's, see a write at its merge. An ack still means what it means alone,
durable on this node's disk: the flush acknowledges after its fsync, and in
``--cluster-ack redis`` mode also only once Redis took the writes (the two waits
overlap); if Redis refused them the writers are answered ``internal``. Each
fsync'd append is reported to it (:attr:`Room.durable_seq`): the mark of what is
published never passes what is durable. A crash can lose writes that were
published but not fsync'd, as it loses those readers saw: the other nodes have
them, and the node takes them back from the cluster at its next start
(:mod:`syncd.cluster.replicator`). A write published whose append the disk
refuses is answered ``internal`` like any such write; the other nodes keep it, its
merge stays for the next append here, and a resent copy merges as a duplicate.
Entries from other nodes come in through :meth:`Room.replicate`, down the same
pipeline, without an ack (they are durable on their node already), and are
broadcast at their merge too. As nobody waits for their append, an append that
holds nothing else waits up to :data:`UNAWAITED_APPEND_DELAY` to take more with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode

from syncd.crdt import (
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_VALUE_BYTES,
    Clock,
    CrdtError,
    Document,
    FrameResult,
    broadcast_frame,
    wall_clock_ms,
)
from syncd.errors import ProtocolError, StoreError
from syncd.heap import trim_soon
from syncd.history import History
from syncd.history_queue import HistoryQueue
from syncd.lanes import fold_lane, history_lane, log_lane
from syncd.metrics import Metrics
from syncd.outlet import Flusher, Outlet, encode
from syncd.presence import Roster
from syncd.protocol import DocumentHead, Encoded, Hello, handshake, message_id
from syncd.sqlite import sqlite3
from syncd.store import DocumentStore, Fold

__all__ = [
    "BROADCAST_MAX_PAUSE",
    "BROADCAST_PACED_ABOVE",
    "BROADCAST_SHARE",
    "JOINING_SHARE",
    "PRESENCE_TICK",
    "Member",
    "Replication",
    "Room",
    "RoomSettings",
    "close_or_abort",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPEND_RETRY_SECONDS = 1.0
"""After an append the disk refused, how long the flush waits for a new write before it
tries the disk again with what it holds: writes readers saw belong on disk."""
UNAWAITED_APPEND_DELAY = 0.01
"""How long an append that no client waits for (entries from other nodes only) waits
for more to take with it: on a node sent a stream of single writes, one append for
several, each append a hand-off to the log lane and back (docs/benchmarks.md, session 8)."""
FOLD_RETRY_SECONDS = 30.0
"""After a failed fold (a full disk), how long the log grows before folding is tried again."""
PRESENCE_TICK = 0.05
"""Seconds from a join or a leave to the ``presence`` frame that announces it (at least)."""
BROADCAST_SHARE = 0.5
"""The most of its time a room spends writing to its clients (a pass of the merge task:
a merge's broadcast and a presence tick) once one pass takes more than
:data:`BROADCAST_PACED_ABOVE`: with thousands of clients the next pass comes no sooner
than ``1 / BROADCAST_SHARE`` times as long after it, and gathers every write that came
meanwhile into one frame."""
BROADCAST_PACED_ABOVE = 0.002
"""Seconds of one pass below which merges are never held back (tens of clients)."""
JOINING_SHARE = 0.1
"""What :data:`BROADCAST_SHARE` is while clients are joining (handshakes wait for the
room, or one joined since the last pass): the passes take a tenth of the time, so that
thousands arriving at once are not kept waiting by the writes to those already there."""
BROADCAST_MAX_PAUSE = 1.0
"""The longest pause in seconds between two passes, whatever their share: how late a
paced broadcast may be beyond its pass's own time."""


@dataclass(frozen=True)
class RoomSettings:
    """What every room of a server shares."""

    max_frame_bytes: int
    max_skew_ms: int
    queue_limit: int
    """The most bytes a client may have unsent before it is dropped."""
    tombstone_retention_ms: int
    close_timeout: float = 3.0
    """Seconds a dropped client has to complete the close before its TCP is cut."""
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_ops: int = DEFAULT_MAX_OPS
    intake_limit: int = 16 << 20
    """Bytes of writes waiting for the commit task before their senders are made to wait."""
    history_retention_ms: int = 0
    """How long the history keeps versions and conflicts (0: no history)."""

    def new_document(self) -> Document:
        """An empty replica held to these limits."""
        return Document(max_value_bytes=self.max_value_bytes, max_ops=self.max_ops)


class Replication(Protocol):
    """What a cluster node does for its rooms (absent when the server runs alone)."""

    @property
    def cluster_id(self) -> str:
        """The cluster's id, named in every ``welcome``."""
        ...

    def merged(
        self, room: Room, local: list[tuple[str, FrameResult]]
    ) -> asyncio.Future[bool] | None:
        """A merge's ``local`` writes (origin, result; applied or not), in seq order:
        publish what they applied now, while their fsync runs. The future, if any, tells
        whether they (and anything of the document published before them) were
        published: the writers wait for it as well as for the fsync; ``None``: nothing
        to wait for."""
        ...

    def committed(self, room: Room) -> None:
        """An append is fsync'd: every merge up to :attr:`Room.durable_seq` is on disk."""
        ...

    def purge_floor_ms(self) -> int:
        """Tombstones at or after this wall time (ms) must be kept: a node may lack them."""
        ...

    def remote_peers(self, doc: str) -> set[str]:
        """The client nodes connected to ``doc`` through the other nodes."""
        ...


@dataclass(frozen=True)
class _Merged:
    """A merge already broadcast, waiting for its lines to be appended and fsync'd."""

    results: list[tuple[Member, FrameResult]]
    lines: str
    seq: int
    """The document's head after this merge."""
    published: asyncio.Future[bool] | None = None
    """In a cluster, whether its local writes were published, if the writers wait for it."""
    answered: bool = False
    """Its writers were answered ``internal`` (an append of it failed): the next append
    that succeeds stores it without answering them again."""

    @property
    def awaited(self) -> bool:
        """Whether a client waits for its append (else its writes came from other nodes)."""
        return not self.answered and any(member.outcome is None for member, _ in self.results)


@dataclass(eq=False)
class Member:
    """A member of a room: one connection to the document, or (``socket`` None) a write
    from another node."""

    socket: ServerConnection | None
    node: str
    readonly: bool
    floor: int = 0
    """The seq of the snapshot it was sent: it already has every change up to here."""
    backlog: list[bytes] | None = field(default_factory=list)
    """Frames held while its handshake is being sent; ``None`` once it is synced."""
    backlog_bytes: int = 0
    dropped: bool = False
    outcome: asyncio.Future[str | None] | None = None
    """For a write from another node: resolved once committed (``None``) or refused
    (the error code)."""
    presence_version: int = 0
    """The presence its welcome saw (:attr:`syncd.presence.Roster.version`)."""
    unanswered: deque[int] = field(default_factory=deque)
    """The seq of each of its writes merged but not yet answered (ack or error), in order."""
    held: deque[tuple[int, bytes]] = field(default_factory=deque)
    """Broadcasts (seq, frame) above the seq of its oldest unanswered write, sent right
    after that answer: a connection receives acks and broadcasts in seq order."""
    held_bytes: int = 0
    outlet: Outlet | None = None
    """Where its frames wait for the end of the loop turn, from its join on."""

    @property
    def connection(self) -> ServerConnection:
        """The member's connection (a write from another node has none)."""
        assert self.socket is not None, "a write from another node has no connection"
        return self.socket


class Room:
    """One document and the clients connected to it."""

    def __init__(
        self,
        name: str,
        document: Document,
        store: DocumentStore,
        clock: Clock,
        settings: RoomSettings,
        metrics: Metrics,
        replication: Replication | None = None,
    ) -> None:
        self.name = name
        self.history: HistoryQueue | None = None
        """The document's history, once opened (:meth:`_open_history`)."""
        self.replication = replication
        self.document = document
        self.durable_seq = document.seq
        """The seq up to which every merge is appended and fsync'd (what a crash keeps)."""
        self.store = store
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self._members: dict[Member, None] = {}
        """In the order they joined (a dict: leaving is O(1))."""
        self._roster = Roster(replication.remote_peers(name) if replication is not None else ())
        self._presence_due: asyncio.TimerHandle | None = None
        self._presence_ready = False
        """A presence tick is due: the merge task's next pass announces it."""
        self._outlets = Flusher()
        self._creating: asyncio.Future[None] | None = None
        """The document's file being written, from its first merge to its first append."""
        self._queue: list[tuple[Member, str]] = []
        self._queued_bytes = 0
        self._intake_open = asyncio.Event()
        self._intake_open.set()
        self._lock = asyncio.Lock()
        """Held by a merge, by a join and by a fold's start: the replica is theirs alone."""
        self._unflushed: list[_Merged] = []
        """Merged and broadcast, in seq order, waiting for their append."""
        self._unflushed_bytes = 0
        self._flushing = False
        self._flush_done = asyncio.Event()
        """Set and replaced at the end of each flush, to wake who waits for one."""
        self._flush_wake = asyncio.Event()
        self._awaited_wake = asyncio.Event()
        """Set when a merge that a client waits for is queued for the append."""
        self._flush_room = asyncio.Event()
        """Set while the unflushed lines are within the intake limit."""
        self._flush_room.set()
        self._refusing = asyncio.Event()
        """Set while the disk refuses this document's appends."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._joining = 0
        """Joins waiting for the lock (:meth:`join`)."""
        self._joined_since_pass = False
        """A client joined since the merge task's last pass: a crowd may be arriving."""
        self._unused_since = time.monotonic()
        self._failed: StoreError | None = None
        self._folding: asyncio.Task[None] | None = None
        self._fold_failed_at = -FOLD_RETRY_SECONDS
        self._closing: set[asyncio.Task[None]] = set()
        self._log_lane = log_lane(name)
        self._fold_lane = fold_lane(name)
        self._history_lane = history_lane(name)
        self._committer = asyncio.create_task(self._merge_loop(), name=f"merge {name}")
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush {name}")

    @classmethod
    async def open(
        cls,
        name: str,
        store: DocumentStore,
        clock: Clock,
        settings: RoomSettings,
        metrics: Metrics,
        replication: Replication | None = None,
    ) -> Room:
        """The room of a document, read from its files (if any) in a thread."""
        document = settings.new_document()
        await log_lane(name).run(store.load, document)
        # The history opens at the first commit or read, not here: starting up checks
        # every stored document, and most are evicted before anyone uses them.
        return cls(name, document, store, clock, settings, metrics, replication)

    def _open_history(self) -> None:
        """Open the document's history (once it has files) in its lane, where it catches
        up with the log. Nothing waits for it: the rows of later commits and the reads
        queue behind it in the same lane."""
        if self.settings.history_retention_ms <= 0 or self.history is not None:
            return
        history = History(self.store.history_path, self.settings.history_retention_ms)
        self.history = HistoryQueue(history, self._history_lane)
        self.metrics.history_open.inc()
        self.history.start(
            _open_history,
            self.name,
            history,
            self.document,
            self.store.epoch,
            self.store.segment_paths(),
        )

    @property
    def history_path(self) -> Path | None:
        """The history file to read, ``None`` when the document keeps no history (none is
        kept, or it has no files yet)."""
        if self.settings.history_retention_ms <= 0:
            return None
        if not self.store.created and self._creating is None:
            return None
        return self.store.history_path

    async def read_history(self, read: Callable[..., T], *args: Any) -> T:
        """``read(history_path, *args)`` in a thread, once the history is open and the
        rows of every commit acknowledged so far are written."""
        await self._merged_appended()  # the first one also writes the file
        self._open_history()
        assert self.history is not None, "no history: check history_path first"
        await self.history.written()
        return await asyncio.to_thread(read, self.history.history.path, *args)

    async def _merged_appended(self) -> None:
        """Wait until what was merged so far is appended (its rows are then queued for
        the history), unless the disk refuses appends: a client that was sent a write
        then finds it in the history."""
        head = self.document.seq
        while (
            self.durable_seq < head
            and (self._unflushed or self._flushing)
            and not self._refusing.is_set()
        ):
            await self._flush_done.wait()

    @property
    def members(self) -> list[Member]:
        """The connections to this document, in the order they joined (a copy)."""
        return list(self._members)

    @property
    def unused_since(self) -> float | None:
        """Since when (``time.monotonic()``) no client and no write has used the room;
        ``None`` while one does."""
        if self._members or self._joining or not self._idle.is_set():
            return None
        return self._unused_since

    @property
    def client_nodes(self) -> list[str]:
        """The nodes of the clients connected to this document here."""
        return self._roster.local_nodes

    # -- joining and leaving ------------------------------------------------

    async def join(self, member: Member, hello: Hello) -> Iterator[str | Encoded]:
        """Register ``member`` and return its handshake: welcome (encoded), entries…, synced.

        Runs between commits and without awaiting once begun, so the snapshot is
        of committed writes and no change slips between it and the broadcasts
        that follow; those wait in the client's backlog until :meth:`synced`.
        The entries frames are made one at a time as they are sent (a million keys
        are about 90 MB of frames): see :meth:`_snapshot`.
        """
        self._joining += 1
        try:
            async with self._lock:
                return self._join(member, hello)
        finally:
            self._joining -= 1

    def _join(self, member: Member, hello: Hello) -> Iterator[str | Encoded]:
        head = DocumentHead(
            doc=self.name,
            server_node=self.store.server_node,
            epoch=self.store.served_epoch,
            seq=self.document.seq,
            horizon=self.document.horizon,
            cluster=self.replication.cluster_id if self.replication is not None else None,
        )
        peers = self._roster.peers(member.node)
        answer = handshake(
            hello, head, readonly=member.readonly, peers=peers, time=self.clock.now()
        )
        member.floor = head.seq
        member.outlet = Outlet(member.connection, self._outlets)
        self._members[member] = None
        self._joined_since_pass = True
        self._roster.connect(member.node)
        member.presence_version = self._roster.version  # its own arrival included
        self._presence_changed()
        return itertools.chain(
            (answer.welcome,), self._snapshot(answer.resume or 0, head.seq), (answer.synced,)
        )

    def _snapshot(self, after: int, until: int) -> Iterator[str]:
        """The entries frames of a handshake: the entries with a seq in (``after``,
        ``until``], made one frame at a time while commits go on.

        An entry replaced meanwhile took a seq above ``until`` and is left out; the
        change that replaced it reaches the member after ``synced`` (its floor is
        ``until``). A fold purges no tombstone while a member is being sent its snapshot
        (:meth:`_begin_fold`), so none of these goes missing either.
        """
        limit = self.settings.max_frame_bytes
        # self.document, not a copy of the reference: a failed commit reloads it.
        while (found := self.document.entries_frame(after, until, limit)) is not None:
            frame, after = found
            yield frame

    def synced(self, member: Member) -> None:
        """The handshake is sent: write what waited meanwhile, then write directly."""
        backlog, member.backlog = member.backlog or [], None
        for data in backlog:
            self._write(member, data)

    def remote_presence(self, joined: list[str], left: list[str]) -> None:
        """Clients joined or left this document on other nodes: tell the local clients
        about those not connected here too, at the next presence tick."""
        self._roster.remote_changed(joined, left)
        self._presence_changed()

    def leave(self, member: Member) -> None:
        """Forget a client whose connection ended."""
        if member not in self._members:
            return
        del self._members[member]
        self._roster.disconnect(member.node)
        self._presence_changed()
        if not self._members:
            self._unused_since = time.monotonic()

    def _presence_changed(self) -> None:
        """Schedule the presence tick that announces a change, unless one is due."""
        if self._presence_due is None and not self._presence_ready and self._roster.changed:
            self._presence_due = asyncio.get_running_loop().call_later(
                PRESENCE_TICK, self._presence_tick
            )

    def _presence_tick(self) -> None:
        """A tick is due: the merge task announces it with its next pass's writes, or at
        once while that task waits for the disk."""
        self._presence_due = None
        if self._flush_room.is_set():
            self._presence_ready = True
            self._wake.set()
        else:
            self._announce_presence()
            self._outlets.flush()

    def _announce_presence(self) -> None:
        """Queue one frame of every join and leave since the last tick for each client."""
        self._presence_ready = False
        announcement = self._roster.announce()
        if announcement is not None:
            # Most members get the same frame: encoded once, not once each.
            last: tuple[str, bytes] | None = None
            for member in self._members:
                frame = announcement.frame_for(member.node, member.presence_version)
                if frame is None:
                    continue
                if last is None or last[0] is not frame:
                    last = (frame, encode(frame))
                self._write(member, last[1])

    # -- writing --------------------------------------------------------------

    async def submit(self, member: Member, text: str) -> None:
        """Queue an ``ops`` frame: the commit task applies it, commits it and answers it.

        Waits while too much is queued already, so a flood of writes slows its
        senders down instead of filling the memory.
        """
        if self._queued_bytes > self.settings.intake_limit:
            await self._intake_open.wait()
        self._queue.append((member, text))
        self._queued_bytes += len(text)
        if self._queued_bytes > self.settings.intake_limit:
            self._intake_open.clear()
        self._idle.clear()
        self._wake.set()

    async def replicate(self, origin: str, ops_json: str) -> asyncio.Future[str | None]:
        """Queue entries from another node (a JSON array in wire form): committed and
        broadcast with ``origin`` like a local write, acknowledged to no one, and not
        held to the clock skew limit (their node checked it). The future tells the outcome."""
        outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        writer = Member(None, origin, readonly=False, backlog=None, outcome=outcome)
        await self.submit(writer, f'{{"type":"ops","id":0,"ops":{ops_json}}}')
        return outcome

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed and answered, or until
        the disk refuses this document's appends (they may never succeed)."""
        idle = asyncio.ensure_future(self._idle.wait())
        refusing = asyncio.ensure_future(self._refusing.wait())
        try:
            await asyncio.wait([idle, refusing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            refusing.cancel()

    async def close(self) -> None:
        """Commit what is pending, then stop the merge and flush tasks and close the log.

        If the disk still refuses writes that clients saw, they are lost: the store
        then records a broken lineage, so the next start gives the document a new epoch.
        """
        await self.drain()
        if self._unflushed or self._flushing:
            logger.error("document %s: closed with merged writes the disk refused", self.name)
            self.store.break_lineage()
        if self._presence_due is not None:
            self._presence_due.cancel()
        self._committer.cancel()
        self._flusher.cancel()
        if self._folding is not None:
            await self._folding
        # In the log lane: after an append still running there, never during it.
        await self._log_lane.run(self.store.close)
        if self.history is not None:
            await self.history.close()
            self.metrics.history_open.dec()
        # The document and its history were freed in the lane threads' heaps.
        trim_soon()

    def _settle_idle(self) -> None:
        """Idle once nothing waits to be merged, appended or answered."""
        if not self._queue and not self._unflushed and not self._flushing:
            self._unused_since = time.monotonic()
            self._idle.set()

    async def _merge_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            spent = 0.0
            if self._queue:
                # The disk is far behind: merge no more until the flush takes what waits.
                await self._flush_room.wait()
                async with self._lock:
                    batch, self._queue, self._queued_bytes = self._queue, [], 0
                    self._intake_open.set()
                    if batch:
                        try:
                            spent = await self._merge(batch)
                        except Exception:
                            # Never leave writers waiting on a commit that cannot finish.
                            logger.exception("document %s: merge failed", self.name)
                            await self._lose([(c, None) for c, _ in batch])
            started = time.perf_counter()
            if self._presence_ready:
                self._announce_presence()
            # Now, not at the end of the turn: the writes are most of what is paced.
            self._outlets.flush()
            spent += time.perf_counter() - started
            self._settle_idle()
            joining = self._joining > 0 or self._joined_since_pass
            self._joined_since_pass = False
            if spent > BROADCAST_PACED_ABOVE:
                # Thousands of clients: one frame per write each would leave no time
                # for anything else (joins, pings); the writes, joins and leaves that
                # come meanwhile go out together in the next pass.
                share = JOINING_SHARE if joining else BROADCAST_SHARE
                await asyncio.sleep(min(spent / share - spent, BROADCAST_MAX_PAUSE))

    async def _merge(self, batch: list[tuple[Member, str]]) -> float:
        """Apply a batch, queue the broadcast of what won, and queue its lines for the
        next append; returns the seconds its broadcast took to queue."""
        if self._failed is not None:
            message = f"the server cannot write this document now: {self._failed}"
            for member, text in batch:
                self._reject(member, ProtocolError("internal", message, id=message_id(text)))
            return 0.0
        if self.store.created:  # else its first append opens it (_create)
            self._open_history()
        results = self._apply(batch)
        if not results:
            return 0.0
        for member, result in results:
            if member.socket is not None:
                member.unanswered.append(result.seq)
        started = time.perf_counter()
        self._broadcast(results)  # written by the merge task's pass (_merge_loop)
        spent = time.perf_counter() - started
        published = None
        if self.replication is not None:
            # The other nodes' readers, like this node's, need not wait for the disk.
            local = [(c.node, r) for c, r in results if c.outcome is None]
            published = self.replication.merged(self, local)
        lines = "".join(line for _, r in results if (line := r.log_line()))
        if lines and not self.store.created:
            # The first write need not wait for the file: it is written in the log lane,
            # ahead of the first append.
            self._creation()
        self._hold_for_append([_Merged(results, lines, self.document.seq, published)])
        return spent

    def _hold_for_append(self, merges: list[_Merged], refused: bool = False) -> None:
        """Queue merges for the next append; ``refused``: merges the disk just refused,
        older than those waiting, which wait for a new write or the retry pause."""
        if refused:
            self._unflushed[:0] = merges
        else:
            self._unflushed += merges
            self._flush_wake.set()
            if any(merged.awaited for merged in merges):
                self._awaited_wake.set()
        self._unflushed_bytes += sum(len(merged.lines) for merged in merges)
        if self._unflushed_bytes > self.settings.intake_limit:
            self._flush_room.clear()

    async def _flush_loop(self) -> None:
        while True:
            if self._refusing.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(APPEND_RETRY_SECONDS):
                        await self._flush_wake.wait()
            else:
                await self._flush_wake.wait()
            self._flush_wake.clear()
            if not self._unflushed:
                continue
            if not any(merged.awaited for merged in self._unflushed):
                self._awaited_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(UNAWAITED_APPEND_DELAY):
                        await self._awaited_wake.wait()
            taken, self._unflushed, self._unflushed_bytes = self._unflushed, [], 0
            self._flush_room.set()
            self._flushing = True
            try:
                await self._flush(taken)
            except Exception:
                logger.exception("document %s: commit failed", self.name)
                self._refused(taken)
            finally:
                self._flushing = False
                self._flush_done.set()
                self._flush_done = asyncio.Event()
            self._settle_idle()

    async def _flush(self, taken: list[_Merged]) -> None:
        """Append the lines of merges already broadcast with one fsync, then answer them."""
        results = [pair for merged in taken for pair in merged.results]
        lines = "".join(merged.lines for merged in taken)
        if lines:
            started = time.perf_counter()
            try:
                await self._create()
                await self._log_lane.run(self.store.append, lines)
            except StoreError as error:
                logger.error("document %s: %s", self.name, error)
                self._refused(taken)
                return
            self.metrics.commits.inc()
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.durable_seq = taken[-1].seq
        if self._refusing.is_set():
            logger.warning("document %s: the disk takes appends again", self.name)
            self._refusing.clear()
        if self.history is not None:
            # The entries' wire form: one level of JSON less for SQLite than the lines.
            entries = ",".join([result.ops_json for _, result in results if result.applied])
            # Only an ignored entry can have lost: most results need no list of their own.
            lost = [pair for _, result in results if result.ignored for pair in result.lost]
            if entries or lost:
                # Its head is this append's, not the replica's: later merges are not on
                # disk yet.
                self.history.add(entries, taken[-1].seq, lost)
        self.metrics.ops_applied.inc(sum(result.applied for _, result in results))
        self.metrics.ops_ignored.inc(sum(result.ignored for _, result in results))
        published = True
        if self.replication is not None:
            self.replication.committed(self)
            for merged in taken:
                # Started at the merge: by now usually done (each is awaited once).
                if merged.published is not None and not merged.answered:
                    published = await merged.published and published
        self._acknowledge([p for m in taken if not m.answered for p in m.results], published)
        if self._folding is None and self.store.fold_due() and self._fold_may_retry():
            async with self._lock:
                await self._begin_fold()

    def _creation(self) -> asyncio.Future[None]:
        """The writing of the document's file in its log lane, started now unless it is
        under way: from the blank document it was before its first write, which the log's
        lines then bring up to date."""
        if self._creating is None:
            self._creating = self._log_lane.submit(self.store.create, self.settings.new_document())
        return self._creating

    async def _create(self) -> None:
        """Make sure the document has its file before an append: the one the first merge
        started, or (after it failed) a new one; then open the history, which catches up
        with the log from there."""
        if not self.store.created:
            try:
                await self._creation()
            finally:
                self._creating = None
        self._open_history()

    def _apply(self, batch: list[tuple[Member, str]]) -> list[tuple[Member, FrameResult]]:
        """Merge each queued frame into the replica; answer those the core rejects."""
        results = []
        for member, text in batch:
            # Another node's entries passed its skew check when they were written.
            now_ms = wall_clock_ms() if member.outcome is None else None
            try:
                result = self.document.apply_frame(
                    text, now_ms=now_ms, max_skew_ms=self.settings.max_skew_ms
                )
            except CrdtError as error:
                if error.code == "clock_skew":
                    self.metrics.clock_skew_rejections.inc()
                self._reject(member, ProtocolError.from_crdt(error))
            else:
                results.append((member, result))
        return results

    def _refused(self, taken: list[_Merged]) -> None:
        """The disk refused an append: answer its writers ``internal`` (their clients
        send again; a write sent again is a duplicate, acknowledged once its original
        is stored) and keep its merges, which readers saw, for the next append.
        Nobody is disconnected; merging waits while more than the intake limit waits."""
        self.metrics.store_failures.inc()
        self._refusing.set()
        for merged in taken:
            if merged.answered:
                continue
            for member, result in merged.results:
                self._reject(member, _not_stored(result.id))
                self._answered(member)
        self._hold_for_append([replace(m, answered=True) for m in taken], refused=True)

    async def _lose(self, writers: list[tuple[Member, int | None]]) -> None:
        """A merge failed unexpectedly (call with the lock held): refuse its writes and
        those merged after it, reload the replica from disk, which holds exactly what
        was acknowledged, and since readers may have seen the lost writes, start a new
        epoch and disconnect every member so that each resyncs by snapshot."""
        self.metrics.store_failures.inc()
        later = [(c, r.id) for merged in self._unflushed for c, r in merged.results]
        self._unflushed, self._unflushed_bytes = [], 0
        self._flush_room.set()
        for member, id in writers + later:
            self._reject(member, _not_stored(id))
        if self._folding is not None:
            await self._folding
        document = self.settings.new_document()
        try:
            await self._log_lane.run(self.store.load, document)
        except StoreError as error:
            logger.error("document %s: %s; refusing writes until restarted", self.name, error)
            self._failed = error
        else:
            self.document = document
            self.durable_seq = document.seq
            logger.warning("document %s: reloaded from disk after a failed commit", self.name)
        self.store.break_lineage()
        for member in list(self._members):
            self._disconnect(member, CloseCode.SERVICE_RESTART, "resync: writes were lost")

    def _reject(self, member: Member, error: ProtocolError) -> None:
        if member.outcome is not None:
            if not member.outcome.done():
                member.outcome.set_result(error.code)
            return
        self.metrics.errors.labels(error.code).inc()
        self.send(member, error.frame())

    def _acknowledge(self, results: list[tuple[Member, FrameResult]], published: bool) -> None:
        """Ack each writer of an fsync'd append (resolve another node's writes).

        Unless ``published`` (the cluster could not take the commit), local writers
        are answered ``internal`` instead: the writes are stored here, and the cluster
        publishes them once it can; the writers send them again meanwhile.
        """
        for writer, result in results:
            if writer.outcome is not None:
                if not writer.outcome.done():
                    writer.outcome.set_result(None)
            elif published:
                self.send(writer, result.ack())
                self._answered(writer)
            else:
                self._reject(writer, _not_published(result.id))
                self._answered(writer)

    def _answered(self, writer: Member) -> None:
        """A merged write of ``writer`` got its answer: send the broadcasts held for it."""
        if writer.unanswered:
            writer.unanswered.popleft()
        while writer.held and (not writer.unanswered or writer.held[0][0] <= writer.unanswered[0]):
            _, data = writer.held.popleft()
            writer.held_bytes -= len(data)
            self._write(writer, data)

    def _send_broadcast(self, member: Member, seq: int, data: bytes) -> None:
        """Send an encoded broadcast, or hold it while the member awaits an ack of a
        lower seq."""
        if member.held or (member.unanswered and seq > member.unanswered[0]):
            if member.dropped:
                return
            member.held.append((seq, data))
            member.held_bytes += len(data)
            if member.held_bytes > self.settings.queue_limit:
                self._drop(member)
            return
        self._write(member, data)

    def _broadcast(self, results: list[tuple[Member, FrameResult]]) -> None:
        """Send a merge's applied entries to the other members, run by run of one origin."""
        start = 0
        while start < len(results):
            writer = results[start][0]
            end = start
            while end < len(results) and results[end][0] is writer:
                end += 1
            self._broadcast_run(writer, [r for _, r in results[start:end] if r.applied])
            start = end

    def _broadcast_run(self, writer: Member, run: list[FrameResult]) -> None:
        if not run:
            return
        first_seq = run[0].seq - run[0].applied + 1
        last_seq = run[-1].seq
        limit = self.settings.max_frame_bytes
        shared: list[tuple[int, bytes]] | None = None
        for member in self._members:
            if member is writer or member.floor >= last_seq:
                continue
            if member.floor < first_seq:
                if shared is None:
                    shared = _coalesce(writer.node, run, limit)
                frames = shared
            else:  # it joined while this run was being committed
                frames = _coalesce(writer.node, [r for r in run if r.seq > member.floor], limit)
            for seq, data in frames:
                self._send_broadcast(member, seq, data)

    def _fold_may_retry(self) -> bool:
        return time.monotonic() - self._fold_failed_at >= FOLD_RETRY_SECONDS

    async def _begin_fold(self) -> None:
        """Write the committed document to the fold's new file (in a thread, while no
        commit runs: the core writes it in pieces, so a million keys are never copied
        whole in memory), then let the fold put it in place meanwhile."""
        cutoff = max(wall_clock_ms() - self.settings.tombstone_retention_ms, 0)
        if self.replication is not None:
            cutoff = min(cutoff, self.replication.purge_floor_ms())
        # A member being sent its snapshot must get every tombstone of it (see _snapshot).
        joining = any(member.backlog is not None for member in self._members)
        purge_before = None if joining else f"{cutoff:013d}-00000-0"
        if self.history is not None:
            # The fold deletes log segments: the history must hold their entries first.
            await self.history.written()
        try:
            fold = await self._log_lane.run(self.store.begin_fold, self.document, purge_before)
        except OSError:
            logger.exception("document %s: fold failed; the log keeps everything", self.name)
            # Not again at the next commit: on a full disk the fold would take the room
            # that the appends need.
            self._fold_failed_at = time.monotonic()
            return
        self._folding = asyncio.create_task(self._fold(fold), name=f"fold {self.name}")

    async def _fold(self, fold: Fold) -> None:
        try:
            await self._fold_lane.run(self.store.fold, fold)
        except OSError:
            logger.exception("document %s: fold failed; the log keeps everything", self.name)
            # Not again at the next commit: on a full disk the fold would take the room
            # that the appends need.
            self._fold_failed_at = time.monotonic()
        else:
            logger.debug(
                "document %s: folded the log, purged %d tombstones", self.name, fold.purged
            )
        finally:
            self._folding = None

    # -- sending --------------------------------------------------------------

    def send(self, member: Member, frame: str) -> None:
        """Write a frame to a client without waiting; drop the client if it lags too far."""
        if member.dropped or member.socket is None:
            return
        self._write(member, encode(frame))

    def _write(self, member: Member, data: bytes) -> None:
        """Queue an encoded frame for a client (:mod:`syncd.outlet`), or hold it in its
        backlog while its handshake is sent; drop the client if it lags too far."""
        if member.dropped or member.socket is None:
            return
        if member.backlog is not None:
            member.backlog.append(data)
            member.backlog_bytes += len(data)
            if member.backlog_bytes > self.settings.queue_limit:
                self._drop(member)
            return
        assert member.outlet is not None, "a member past its backlog has joined"
        if member.outlet.unsent() > self.settings.queue_limit:
            self._drop(member)
            return
        member.outlet.put(data)

    def flush(self, member: Member) -> None:
        """Write now what waits for the end of the loop turn: call before closing the
        connection, since frames still queued once it is closing are discarded."""
        if member.outlet is not None:
            member.outlet.flush()

    def _drop(self, member: Member) -> None:
        self.metrics.queue_drops.inc()
        logger.info("document %s: dropping %s, too far behind", self.name, member.node)
        self._disconnect(member, CloseCode.TRY_AGAIN_LATER, "too far behind")

    def _disconnect(self, member: Member, code: CloseCode, reason: str) -> None:
        """Close a member's connection without waiting; it is sent nothing more."""
        if member.dropped or member.socket is None:
            return
        member.dropped = True
        member.held.clear()
        member.held_bytes = 0
        self.flush(member)  # what it was sent before: a close discards what is queued
        task = asyncio.create_task(
            close_or_abort(member.connection, code, reason, self.settings.close_timeout)
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _open_history(
    name: str, history: History, document: Document, epoch: str, segments: list[Path]
) -> None:
    """Open ``history`` (in its lane); if it cannot be, the document keeps none: its
    commits' rows are then dropped (:meth:`History.record`) and reads fail."""
    try:
        history.open(document, epoch, segments)
    except (OSError, sqlite3.Error):
        logger.exception("document %s: cannot open its history; keeping none", name)
        history.close()


async def close_or_abort(
    connection: ServerConnection, code: int, reason: str, timeout: float
) -> None:
    """Close with ``code``, cutting the TCP connection if that takes over ``timeout`` seconds.

    ``close()`` first waits for the client to read what is queued, which a stuck
    client never does: websockets' own close timeout only starts after that.
    """
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except TimeoutError:
        connection.transport.abort()


def _not_stored(id: int | None) -> ProtocolError:
    return ProtocolError("internal", "the write could not be stored; send it again later", id=id)


def _not_published(id: int) -> ProtocolError:
    return ProtocolError(
        "internal", "the cluster cannot take the write now; send it again later", id=id
    )


def _coalesce(origin: str, run: list[FrameResult], max_frame_bytes: int) -> list[tuple[int, bytes]]:
    """The encoded broadcasts of a run, each with its seq: as few frames as fit within
    the limit.

    A message's own entries are never split, so a frame holding a single
    message may exceed the limit by the little its ``seq`` and ``origin`` add.
    """
    overhead = len(broadcast_frame(run[-1].seq, origin, "").encode())
    frames: list[tuple[int, bytes]] = []
    chunk: list[FrameResult] = []
    size = overhead
    for result in run:
        grows = len(result.ops_json.encode()) + 1  # its entries and a comma
        if chunk and size + grows > max_frame_bytes:
            frames.append(_frame_of(origin, chunk))
            chunk, size = [], overhead
        chunk.append(result)
        size += grows
    frames.append(_frame_of(origin, chunk))
    return frames


def _frame_of(origin: str, chunk: list[FrameResult]) -> tuple[int, bytes]:
    seq = chunk[-1].seq
    return seq, encode(broadcast_frame(seq, origin, ",".join(r.ops_json for r in chunk)))
