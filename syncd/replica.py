"""The client's side of the wire protocol, without I/O (contract §2, §4–§6).

A :class:`Replica` is what a client knows: a local copy of one document (a
:class:`~syncd.crdt.Document`), its own Hybrid Logical Clock, the writes the
server has not acknowledged yet, the resume point ``(epoch, seq)`` and the
peers online. It never touches a socket or a clock it was not given: the
I/O layer (:mod:`syncd.client`) feeds it the text frames it receives
(:meth:`Replica.receive`, which returns :data:`Event` objects) and sends the
frames it asks for (:meth:`Replica.hello_frame`, :meth:`Replica.outgoing`,
:meth:`Replica.ping_frame`).

What it implements, in the contract's words:

- **Handshake (§4).** ``hello`` carries ``since`` once a resume point is known.
  A delta (``full: false``) is merged as it arrives. A snapshot
  (``full: true``) is collected into a fresh document and, at ``synced``, either
  replaces the replica or is merged into it (docs/protocol.md, "Snapshots:
  replace or merge"). From the server node of the last welcome (or the first
  server, a server of no or another cluster, or on a read-only connection) it
  *replaces*, with the client's own
  unacknowledged writes merged back: every local key the snapshot does not
  contain is thereby dropped, except those — which is how a write broadcast
  before a crash lost it disappears. From another node of the cluster (a move)
  it is *merged*, since that node may not have every write seen on the old one
  yet, and every local entry the snapshot lacks or holds older is *relayed*:
  queued like a pending write, with its original ``ts``, so the new node gets
  it too (if it is refused for good, it rolls back to the snapshot's entry).
- **Clock (§2).** ``welcome.time``, every ``pong.time`` and every received
  entry's ``ts`` are observed by the clock. The client also estimates how far
  its wall clock is from the server's (``welcome``; ``ping``/``pong`` halves the
  round trip) and stamps local writes with the corrected time, so a client
  whose clock runs minutes ahead still passes the server's skew check.
- **Writes (§5).** A local write is merged into the local document at once and
  becomes *pending*: one per key (a newer write of the same key replaces the
  older one, which could never win anyway). Pending writes go out in ``ops``
  messages of at most ``max_ops`` entries and ``max_frame_bytes`` bytes, and
  stay pending until acknowledged; after a reconnect they are sent again with
  their original timestamps. A pending write is also settled when the
  handshake or a broadcast shows the server already has it (its ack was lost
  with the connection), or holds a newer entry for its key
  (:class:`Overridden`: the write lost). A write that lost so is still sent
  (and sent again after a reconnect until the server answers it): it loses
  on the server too, which records the conflict (issue #13), whichever client
  reconnected first; the local state does not change.
- **Errors (§6).** An ``error`` answering one of the client's messages puts
  its writes back in the queue when a retry can help: ``rate_limited``,
  ``clock_skew`` and ``internal`` (:data:`RETRYABLE`) after a pause of
  :data:`RETRY_PAUSE` seconds, during which :meth:`Replica.outgoing` sends no
  writes; ``too_large`` for a message of several entries halves the batch size
  and sends again at once. Every other code (``too_large`` for one entry,
  ``bad_message``, ``forbidden``, codes this client does not know) is final:
  resending the same entry cannot succeed, so the write is **rolled back** —
  the key shows again what the server last confirmed for it (remembered while
  the write was pending), a :class:`Change` says so, and :class:`Rejected`
  (``retry_after`` ``None``) tells the user. When the error names the
  offending entry, only that entry is rolled back and the others are sent
  again. ``forbidden`` also makes the replica read-only.

The client state machine is pinned, with the TypeScript replica's, by the
session vectors in ``tests/vectors/sessions.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from syncd.crdt import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_VALUE_BYTES,
    MAX_ID,
    Clock,
    CrdtError,
    Document,
    Entry,
    JSONValue,
    check_key,
    check_value,
    format_timestamp,
    parse_timestamp,
    validate_node,
    wall_clock_ms,
)
from syncd.errors import ReadOnlyError, UnexpectedFrame
from syncd.events import (
    Acked,
    Answered,
    Change,
    ErrorReceived,
    Event,
    Overridden,
    Presence,
    Rejected,
    Synced,
    Write,
)
from syncd.history_wire import ANSWER_TYPES, request_frame
from syncd.protocol import DEFAULT_DOC, PROTOCOL_VERSION, check_doc_name

__all__ = [
    "RETRYABLE",
    "Pending",
    "Replica",
]

RETRYABLE: Final = frozenset({"rate_limited", "clock_skew", "internal"})
"""Error codes after which a rejected message is sent again, after a pause; any other
code refuses its writes for good (they are rolled back)."""
RETRY_PAUSE: Final = 1.0
"""Seconds to wait before sending again a message rejected with a retryable code."""
_RETRY_PAUSE_MS: Final = int(RETRY_PAUSE * 1000)

_OPS_OVERHEAD: Final = len('{"type":"ops","id":9007199254740991,"ops":[]}')


# -- pending writes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """A local write not yet acknowledged, with its entry's wire form (JSON text)."""

    key: str
    ts: str
    value_json: str | None
    """The value's canonical JSON text; ``None`` for a delete."""
    text: str
    size: int
    """``text``'s length in UTF-8 bytes."""

    @classmethod
    def make(cls, key: str, ts: str, value_json: str | None) -> Pending:
        """The pending write of ``key`` at ``ts`` (``value_json`` None: a delete)."""
        body = '"deleted":true' if value_json is None else f'"value":{value_json}'
        text = f'{{"key":{json.dumps(key, ensure_ascii=False)},"ts":"{ts}",{body}}}'
        return cls(key, ts, value_json, text, len(text.encode("utf-8")))

    @property
    def write(self) -> Write:
        """Its name."""
        return Write(self.key, self.ts)

    @property
    def deleted(self) -> bool:
        """Whether it is a delete."""
        return self.value_json is None

    def value(self) -> JSONValue:
        """The written value (``None`` for a delete)."""
        if self.value_json is None:
            return None
        value: JSONValue = json.loads(self.value_json)
        return value

    def wire(self) -> dict[str, Any]:
        """The entry in its wire form."""
        entry: dict[str, Any] = json.loads(self.text)
        return entry


# -- the state machine ---------------------------------------------------------------

_Phase = Literal["offline", "hello", "syncing", "synced"]


@dataclass(slots=True)
class _Welcome:
    epoch: str
    seq: int
    full: bool
    server: str
    moved: bool
    """A snapshot from another node than the last welcome's, to merge (not replace)."""


def _node_of(ts: str) -> str:
    # The node is everything after the second dash (node ids may hold dashes too).
    return ts.split("-", 2)[2]


class Replica:
    """A client's replica of one document and its sync state (no I/O).

    The limits default to the server's defaults (the welcome does not say them);
    the client lowers ``max_frame_bytes`` when a server refuses a frame as too big.
    ``wall`` reads the local wall clock in milliseconds (replaceable for tests).
    """

    def __init__(
        self,
        node: str,
        doc: str = DEFAULT_DOC,
        *,
        token: str | None = None,
        max_ops: int = DEFAULT_MAX_OPS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> None:
        validate_node(node)
        check_doc_name(doc)
        if max_ops < 1 or max_frame_bytes < 1:
            raise ValueError("max_ops and max_frame_bytes must be positive")
        self.node = node
        self.doc = doc
        self.token = token
        self.max_ops = max_ops
        self.max_frame_bytes = max_frame_bytes
        self.max_value_bytes = max_value_bytes
        self.wall = wall
        self.clock = Clock(node)
        self.document = Document(max_value_bytes=max_value_bytes)
        self.epoch: str | None = None
        """The resume point's lineage (``None`` until the first handshake)."""
        self.seq = 0
        """The resume point: the greatest seq seen (meaningful with ``epoch``)."""
        self.peers: frozenset[str] = frozenset()
        self.readonly = False
        self.server: str | None = None
        """The server's node id, from the last ``welcome``."""
        self.cluster: str | None = None
        """The server's cluster id, from the last ``welcome`` (``None``: a server alone)."""
        self.offset_ms = 0
        """The server's wall clock minus ours, as last estimated."""
        self.phase: _Phase = "offline"
        self._unacked: dict[str, Pending] = {}
        self._confirmed: dict[str, dict[str, Any] | None] = {}
        """For each key with a pending write: the server's entry for it as last seen
        (wire form; ``None`` when it had none), to roll back to if the write is refused."""
        self._resume_at = 0
        """``wall()`` time before which no writes are sent (a retryable refusal's pause)."""
        self._lost: dict[str, Pending] = {}
        """Writes an entry from the server beat before the server answered them, by ts:
        no longer pending, but sent until answered, so the server records the conflict."""
        self._unsent: dict[str, Pending] = {}
        """The writes to send on this connection, by ts, in write order (lost ones first)."""
        self._inflight: dict[int, list[Pending]] = {}
        self._next_id = 1
        self._welcome: _Welcome | None = None
        self._incoming: Document | None = None
        self._pings: dict[int, int] = {}

    # -- reading ----------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether the current connection finished its handshake."""
        return self.phase == "synced"

    @property
    def pending(self) -> list[Pending]:
        """The unacknowledged writes, oldest first."""
        return list(self._unacked.values())

    @property
    def pending_count(self) -> int:
        """How many writes are unacknowledged."""
        return len(self._unacked)

    @property
    def inflight_count(self) -> int:
        """How many messages are sent and not answered."""
        return len(self._inflight)

    def is_pending(self, key: str) -> bool:
        """Whether ``key`` has an unacknowledged local write."""
        return key in self._unacked

    @property
    def clock_mark(self) -> str | None:
        """The greatest timestamp issued or observed, as a timestamp of this node
        (``None`` before any): save it, and :meth:`restore` it to keep the clock
        monotonic across runs."""
        wall, counter = self.clock.last
        if (wall, counter) == (0, 0):
            return None
        return format_timestamp(wall, counter, self.node)

    # -- local writes -----------------------------------------------------------------

    def stamp(self) -> str:
        """A new timestamp for a local write, by the wall clock corrected to the server's."""
        return self.clock.tick(max(self.wall() + self.offset_ms, 0))

    def set(self, key: str, value: JSONValue) -> Change:
        """Write ``value`` under ``key``: merged at once, pending until acknowledged.

        Raises :class:`~syncd.errors.CrdtError` for an invalid key or value and
        :class:`~syncd.errors.ReadOnlyError` on a read-only connection.
        """
        return self._write(key, value, deleted=False)

    def update(self, pairs: Iterable[tuple[str, JSONValue]]) -> list[Change]:
        """Write many keys; every key and value is checked before any is written.

        Raises as :meth:`set` does, naming the first bad key, with nothing written.
        """
        pairs = list(pairs)
        if self.readonly:
            raise ReadOnlyError()
        # The core's own checks: exactly what set() would refuse.
        for key, value in pairs:
            check_key(key)
            check_value(value, max_value_bytes=self.max_value_bytes)
        return [self.set(key, value) for key, value in pairs]

    def delete(self, key: str) -> Change:
        """Delete ``key`` (a tombstone, written even if the key is absent)."""
        return self._write(key, None, deleted=True)

    def _write(self, key: str, value: JSONValue, *, deleted: bool) -> Change:
        if self.readonly:
            raise ReadOnlyError()
        self._remember(key)
        ts = self.stamp()
        if deleted:
            self.document.remove(key, ts)
            pending = Pending.make(key, ts, None)
        else:
            self.document.set(key, value, ts)
            entry = self.document.entry(key)
            assert entry is not None and entry.ts == ts, "a fresh timestamp always wins"
            pending = Pending.make(key, ts, entry.value_json)
            value = entry.value  # canonical: 1.0 reads back as 1, as every replica sees it
        self._queue(pending)
        return Change(key, value, deleted, ts, self.node, None, True)

    def _remember(self, key: str) -> None:
        """Keep the key's server-confirmed entry before its first pending write."""
        if key not in self._unacked:
            entry = self.document.entry(key)
            self._confirmed[key] = entry.to_wire() if entry is not None else None

    def _queue(self, pending: Pending) -> None:
        # One pending write per key, in write order: a newer write replaces the older.
        older = self._unacked.pop(pending.key, None)
        if older is not None:
            self._unsent.pop(older.ts, None)
        self._unacked[pending.key] = pending
        self._unsent[pending.ts] = pending

    def restore(
        self, document: Document | None, epoch: str | None, seq: int, clock: str | None = None
    ) -> None:
        """Start from a saved replica and resume point (before connecting), and a saved
        :attr:`clock_mark`: later writes get greater timestamps than any before it."""
        assert self.phase == "offline", "restore before connecting"
        if clock is not None:
            self.clock.observe(clock)
        if document is not None:
            latest = max((e.ts for e in document.changes_since(0)), default=None)
            if latest is not None:
                self.clock.observe(latest)
            self.document = document
        self.epoch, self.seq = epoch, seq

    def restore_pending(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Put back saved pending writes (wire-form entries): merged and queued again."""
        for raw in sorted(entries, key=lambda e: str(e.get("ts"))):
            key, ts = raw["key"], raw["ts"]
            self._remember(key)
            if raw.get("deleted") is True:
                self.document.remove(key, ts)
                pending = Pending.make(key, ts, None)
            else:
                self.document.set(key, raw["value"], ts)
                entry = self.document.entry(key)
                # A saved snapshot may already hold something newer for the key.
                if entry is None or entry.ts != ts:
                    if key not in self._unacked:
                        del self._confirmed[key]
                    continue
                pending = Pending.make(key, ts, entry.value_json)
            self.clock.observe(ts)
            self._queue(pending)

    # -- frames to send ---------------------------------------------------------------

    def hello_frame(self) -> str:
        """The ``hello`` that opens a connection (with ``since`` once a resume point exists)."""
        frame: dict[str, Any] = {
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "doc": self.doc,
            "node": self.node,
        }
        if self.token is not None:
            frame["token"] = self.token
        if self.epoch is not None:
            frame["since"] = {"epoch": self.epoch, "seq": self.seq}
        self.disconnected()
        self.phase = "hello"
        return json.dumps(frame, ensure_ascii=False)

    def outgoing(self, window: int | None = None) -> list[str]:
        """``ops`` frames for the pending writes not sent on this connection yet.

        At most ``window`` messages are left unanswered at once. Nothing is sent
        before the handshake ends, nor on a read-only connection.
        """
        frames: list[str] = []
        if self.phase != "synced" or self.readonly or self.resume_in() > 0:
            return frames
        while self._unsent and (window is None or len(self._inflight) < window):
            batch: list[Pending] = []
            size = _OPS_OVERHEAD
            for pending in self._unsent.values():
                grows = pending.size + 1
                if batch and (len(batch) >= self.max_ops or size + grows > self.max_frame_bytes):
                    break
                batch.append(pending)
                size += grows
            for pending in batch:
                del self._unsent[pending.ts]
            id = self._take_id()
            self._inflight[id] = batch
            ops = ",".join(p.text for p in batch)
            frames.append(f'{{"type":"ops","id":{id},"ops":[{ops}]}}')
        return frames

    def resume_in(self) -> float:
        """Seconds until writes may be sent again after a retryable refusal (0: now)."""
        return max(self._resume_at - self.wall(), 0) / 1000

    def ping_frame(self) -> str:
        """A ``ping``; its ``pong`` refines the clock offset."""
        id = self._take_id()
        self._pings[id] = self.wall()
        return f'{{"type":"ping","id":{id}}}'

    def request_frame(self, kind: str, **fields: Any) -> tuple[int, str]:
        """A read request (``history``, ``conflicts``, ``state_at``) and the id its
        answer will carry."""
        id = self._take_id()
        return id, request_frame(kind, id, **fields)

    def _take_id(self) -> int:
        id = self._next_id
        self._next_id = id + 1 if id < MAX_ID else 1
        return id

    def disconnected(self) -> None:
        """The connection ended: every pending write is to be sent again on the next one."""
        self.phase = "offline"
        self._welcome = None
        self._incoming = None
        self._inflight.clear()
        self._pings.clear()
        self._send_all()
        self._resume_at = 0  # a new connection has a fresh rate budget: send at once
        self.peers = frozenset()

    # -- frames received --------------------------------------------------------------

    def receive(self, text: str) -> list[Event]:
        """Take in one frame from the server; what it changed, as events.

        Raises :class:`~syncd.errors.UnexpectedFrame` for a frame the protocol
        does not allow (the connection should then be dropped).
        """
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise UnexpectedFrame(f"the server sent a non-JSON frame: {text[:80]!r}") from None
        if not isinstance(frame, dict):
            raise UnexpectedFrame(f"the server sent a frame that is not an object: {text[:80]!r}")
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise UnexpectedFrame(f"the server sent a frame without a type: {text[:80]!r}")
        try:
            if kind == "error":
                return self._on_error(frame)
            if self.phase == "hello":
                if kind != "welcome":
                    raise UnexpectedFrame(f"expected welcome, got {kind!r}")
                return self._on_welcome(frame)
            if self.phase == "offline":
                raise UnexpectedFrame(f"{kind!r} frame before hello")
            if kind == "presence":
                return self._on_presence(frame)
            if kind == "pong":
                return self._on_pong(frame)
            if kind in ANSWER_TYPES:
                return [Answered(_count(frame, "id"), frame)]
            if self.phase == "syncing":
                if kind == "entries":
                    return self._on_entries(frame)
                if kind == "synced":
                    return self._on_synced(frame)
                raise UnexpectedFrame(f"{kind!r} frame during the handshake")
            if kind == "ops":
                return self._on_ops(frame)
            if kind == "ack":
                return self._on_ack(frame)
            if kind in ("welcome", "entries", "synced"):
                raise UnexpectedFrame(f"{kind!r} frame after the handshake")
        except CrdtError as error:
            raise UnexpectedFrame(f"the server sent an invalid {kind} frame: {error}") from None
        return []  # a frame type this client does not know: ignored, for forward compatibility

    def _on_welcome(self, frame: dict[str, Any]) -> list[Event]:
        epoch = _field(frame, "epoch", str)
        seq = _count(frame, "seq")
        time = _field(frame, "time", str)
        full = _field(frame, "full", bool)
        readonly = _field(frame, "readonly", bool)
        peers = _field(frame, "peers", list)
        server = frame.get("node")
        if not all(isinstance(p, str) for p in peers):
            raise UnexpectedFrame('"peers" must be a list of node ids')
        if not full and epoch != self.epoch:
            raise UnexpectedFrame("the server sent a delta for another epoch")
        self.clock.observe(time)
        self.offset_ms = parse_timestamp(time)[0] - self.wall()
        server = server if isinstance(server, str) else ""
        cluster = frame.get("cluster")
        cluster = cluster if isinstance(cluster, str) and cluster else None
        # Within one cluster only: another server alone has a history of its own.
        moved = (
            self.server is not None
            and server != self.server
            and cluster is not None
            and cluster == self.cluster
            and not readonly
        )
        self._welcome = _Welcome(epoch, seq, full, server, moved)
        self.server = server or None
        self.cluster = cluster
        self._incoming = Document(max_value_bytes=self.max_value_bytes) if full else None
        self.readonly = readonly
        self.peers = frozenset(peers)
        self.phase = "syncing"
        return [Presence(self.peers)]

    def _on_entries(self, frame: dict[str, Any]) -> list[Event]:
        entries = _entries(frame, "entries")
        assert self._welcome is not None
        if self._incoming is not None:
            self._incoming.merge_entries(entries)
            self._observe(entries)  # only once the core found every entry valid
            return []
        return self._merge_remote(entries, None, self._welcome.seq)

    def _on_synced(self, frame: dict[str, Any]) -> list[Event]:
        seq = _count(frame, "seq")
        welcome = self._welcome
        assert welcome is not None
        events: list[Event] = []
        if self._incoming is not None:
            if welcome.moved:
                events = self._merge_snapshot(self._incoming, seq)
            else:
                events = self._swap(self._incoming, seq)
            self._incoming = None
        self.epoch, self.seq = welcome.epoch, seq
        self.phase = "synced"
        self._send_all()
        events.append(Synced(welcome.epoch, seq, welcome.full, self.readonly))
        return events

    def _swap(self, fresh: Document, seq: int) -> list[Event]:
        """Replace the local document by a snapshot, keeping the unacknowledged writes."""
        events: list[Event] = []
        settled: list[Write] = []
        for key, pending in list(self._unacked.items()):
            theirs = fresh.entry(key)
            # The snapshot is the server's whole state: what a refusal would roll back to.
            self._confirmed[key] = theirs.to_wire() if theirs is not None else None
            if theirs is not None and theirs.ts == pending.ts:
                settled.append(self._settle(pending))
            elif theirs is not None and theirs.ts > pending.ts:
                events.append(self._lose(pending, theirs, seq))
            elif pending.value_json is None:
                fresh.remove(key, pending.ts)
            else:
                fresh.set(key, json.loads(pending.value_json), pending.ts)
        if settled:
            events.append(Acked(None, seq, 0, len(settled), tuple(settled)))
        old, self.document = self.document, fresh
        changes: list[Event] = []
        if len(old) == 0 and old.seq == 0:
            changes.extend(self._change(e, None, seq) for e in fresh.changes_since(0))
        else:
            for entry in fresh.changes_since(0):
                before = old.entry(entry.key)
                if before is None or before.ts != entry.ts:
                    changes.append(self._change(entry, None, seq))
            for entry in old.changes_since(0):
                if not entry.deleted and fresh.entry(entry.key) is None:
                    # Dropped: the server forgot the key (a new epoch, or a purged delete).
                    changes.append(
                        Change(entry.key, None, True, entry.ts, self.server or "", seq, False)
                    )
        return changes + events

    def _merge_snapshot(self, fresh: Document, seq: int) -> list[Event]:
        """Merge another node's snapshot, and relay to it what it lacks or holds older."""
        relay = []
        for entry in self.document.changes_since(0):
            theirs = fresh.entry(entry.key)
            if entry.key not in self._unacked and (theirs is None or theirs.ts < entry.ts):
                relay.append((entry, theirs))
        events = self._merge_remote([e.to_wire() for e in fresh.changes_since(0)], None, seq)
        for entry, theirs in relay:
            # Refused for good, it rolls back to what the new node holds.
            self._confirmed[entry.key] = theirs.to_wire() if theirs is not None else None
            self._queue(Pending.make(entry.key, entry.ts, entry.value_json))
        return events

    def _on_ops(self, frame: dict[str, Any]) -> list[Event]:
        seq = _count(frame, "seq")
        origin = _field(frame, "origin", str)
        entries = _entries(frame, "ops")
        events = self._merge_remote(entries, origin, seq)
        self.seq = max(self.seq, seq)
        return events

    def _on_ack(self, frame: dict[str, Any]) -> list[Event]:
        id = _count(frame, "id")
        seq = _count(frame, "seq")
        applied = _count(frame, "applied")
        ignored = _count(frame, "ignored")
        self.seq = max(self.seq, seq)
        batch = self._inflight.pop(id, None)
        if batch is None:
            return []  # not ours on this connection: nothing to settle
        for pending in batch:
            self._settle(pending)
            self._lost.pop(pending.ts, None)
        return [Acked(id, seq, applied, ignored, tuple(p.write for p in batch))]

    def _on_error(self, frame: dict[str, Any]) -> list[Event]:
        code = frame.get("code")
        message = frame.get("message")
        code = code if isinstance(code, str) else "unknown"
        message = message if isinstance(message, str) else ""
        raw_id = frame.get("id")
        id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        if self.phase == "hello":
            return [ErrorReceived(code, message, id, fatal=True)]
        batch = self._inflight.pop(id, None) if id is not None else None
        if batch is None:
            return [ErrorReceived(code, message, id, fatal=False)]
        index = frame.get("entry")
        if code == "forbidden":
            self.readonly = True  # no more local writes on this connection
        if (
            code not in RETRYABLE
            and isinstance(index, int)
            and not isinstance(index, bool)
            and 0 <= index < len(batch)
            and len(batch) > 1
        ):
            # One entry is at fault: roll it back, send the others again.
            bad = batch.pop(index)
            self._requeue(batch)
            return [Rejected(code, message, id, (bad.write,), None), *self._refuse([bad])]
        writes = tuple(p.write for p in batch)
        if code == "too_large" and len(batch) > 1:
            # Too many ops for this server: it has a lower max_ops than assumed.
            self.max_ops = max(1, len(batch) // 2)
            self._requeue(batch)
            return [Rejected(code, message, id, writes, 0.0)]
        if code in RETRYABLE:
            self._requeue(batch)
            self._resume_at = self.wall() + _RETRY_PAUSE_MS
            return [Rejected(code, message, id, writes, RETRY_PAUSE)]
        return [Rejected(code, message, id, writes, None), *self._refuse(batch)]

    def _on_presence(self, frame: dict[str, Any]) -> list[Event]:
        joined = _nodes(frame, "joined")
        left = _nodes(frame, "left")
        self.peers = (self.peers | set(joined)) - set(left)
        return [Presence(self.peers, joined, left)]

    def _on_pong(self, frame: dict[str, Any]) -> list[Event]:
        time = _field(frame, "time", str)
        self.clock.observe(time)
        id = frame.get("id")
        sent = self._pings.pop(id, None) if isinstance(id, int) else None
        if sent is not None:
            # The server read its clock about halfway through the round trip.
            self.offset_ms = parse_timestamp(time)[0] - (sent + self.wall()) // 2
        return []

    # -- merging ----------------------------------------------------------------------

    def _observe(self, entries: list[dict[str, Any]]) -> None:
        stamps = [e.get("ts") for e in entries]
        latest = max((ts for ts in stamps if isinstance(ts, str)), default=None)
        if latest is not None:
            self.clock.observe(latest)

    def _merge_remote(
        self, entries: list[dict[str, Any]], origin: str | None, seq: int
    ) -> list[Event]:
        before = self.document.seq
        self.document.merge_entries(entries)
        self._observe(entries)  # only once the core found every entry valid
        events: list[Event] = [
            self._change(e, origin, seq) for e in self.document.changes_since(before)
        ]
        if self._unacked:
            settled: list[Write] = []
            for raw in entries:
                pending = self._unacked.get(raw["key"])
                if pending is None:
                    continue
                if raw["ts"] == pending.ts:
                    settled.append(self._settle(pending))
                elif raw["ts"] > pending.ts:
                    current = self.document.entry(pending.key)
                    assert current is not None
                    events.append(self._lose(pending, current, seq))
                else:
                    self._confirm(raw)
            if settled:
                events.append(Acked(None, seq, 0, len(settled), tuple(settled)))
        return events

    def _change(self, entry: Entry, origin: str | None, seq: int) -> Change:
        return Change(
            entry.key,
            entry.value,
            entry.deleted,
            entry.ts,
            origin or _node_of(entry.ts),
            seq,
            False,
        )

    def _lose(self, pending: Pending, winner: Entry, seq: int) -> Overridden:
        """``pending`` lost to ``winner``, a newer entry from the server: no longer pending,
        but still sent (unless it is in flight) so that the server records the conflict."""
        unsent = pending.ts in self._unsent
        self._settle(pending)
        self._lost[pending.ts] = pending
        if unsent:
            self._unsent[pending.ts] = pending
        return Overridden(
            pending.write, pending.value(), pending.deleted, self._change(winner, None, seq)
        )

    def _settle(self, pending: Pending) -> Write:
        """The write is no longer pending (unless a newer one of its key replaced it)."""
        if self._unacked.get(pending.key) is pending:
            del self._unacked[pending.key]
            self._unsent.pop(pending.ts, None)
            self._confirmed.pop(pending.key, None)
        return pending.write

    def _send_all(self) -> None:
        """Every write the server has not answered is to be sent on this connection."""
        self._unsent = {p.ts: p for p in (*self._lost.values(), *self._unacked.values())}

    def _confirm(self, raw: dict[str, Any]) -> None:
        """The server holds ``raw``, older than the key's pending write: the new rollback point."""
        confirmed = self._confirmed.get(raw["key"])
        # Two entries of one key with equal timestamps are one write (the ts names its node).
        if confirmed is None or raw["ts"] > confirmed["ts"]:
            self._confirmed[raw["key"]] = raw

    def _refuse(self, batch: list[Pending]) -> list[Event]:
        """Writes refused for good: no longer pending, and rolled back to the server's entries.

        A write that a newer one of its key replaced changes nothing locally: the
        newer write is what the key shows, and it is still pending.
        """
        restore: dict[str, dict[str, Any] | None] = {}
        refused: dict[str, str] = {}
        for pending in batch:
            self._lost.pop(pending.ts, None)  # it lost here already: nothing to roll back
            if self._unacked.get(pending.key) is pending:
                restore[pending.key] = self._confirmed.get(pending.key)
                refused[pending.key] = pending.ts
                self._settle(pending)
        if not restore:
            return []
        # The core never lets an older entry replace a newer one: rebuild without the
        # refused entries (a refusal is rare; this is one pass over the replica).
        kept = [e.to_wire() for e in self.document.changes_since(0) if e.key not in restore]
        fresh = Document(max_value_bytes=self.max_value_bytes)
        fresh.merge_entries(kept + [raw for raw in restore.values() if raw is not None])
        self.document = fresh
        events: list[Event] = []
        for key in restore:
            entry = fresh.entry(key)
            if entry is not None:
                events.append(self._change(entry, None, self.seq))
            else:
                # The server never had the key: it is gone, as a snapshot drops a key.
                events.append(
                    Change(key, None, True, refused[key], self.server or "", self.seq, False)
                )
        return events

    def _requeue(self, batch: list[Pending]) -> None:
        for pending in batch:
            if self._unacked.get(pending.key) is pending or pending.ts in self._lost:
                self._unsent[pending.ts] = pending


# -- frame fields --------------------------------------------------------------------


def _field(frame: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = frame.get(name)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise UnexpectedFrame(f'{frame.get("type")} frame: "{name}" must be a {kind.__name__}')
    return value


def _count(frame: dict[str, Any], name: str) -> int:
    value: int = _field(frame, name, int)
    if not 0 <= value <= MAX_ID:
        raise UnexpectedFrame(f'{frame.get("type")} frame: "{name}" out of range')
    return value


def _entries(frame: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries: list[Any] = _field(frame, name, list)
    if not all(isinstance(e, dict) and isinstance(e.get("key"), str) for e in entries):
        raise UnexpectedFrame(f'{frame.get("type")} frame: "{name}" must hold entries')
    return entries


def _nodes(frame: dict[str, Any], name: str) -> tuple[str, ...]:
    nodes = frame.get(name, [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise UnexpectedFrame(f'presence frame: "{name}" must be a list of node ids')
    return tuple(nodes)
