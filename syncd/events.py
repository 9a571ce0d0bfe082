"""What a client reports: the events of :class:`~syncd.replica.Replica` and its status.

The sans-I/O replica returns them from :meth:`~syncd.replica.Replica.receive`;
the asyncio :class:`~syncd.client.Client` adds :class:`Status` and hands them
all to its subscribers (the TUI, ``syncd watch``, scripts)::

    Event
    ├── Change         a key's entry changed (local or remote write, handshake, rollback)
    ├── Presence       the peers online changed
    ├── Synced         a handshake ended
    ├── Acked          pending writes reached the server
    ├── Overridden     a pending write lost to a newer entry on the server
    ├── Rejected       the server refused pending writes (for now, or for good: rolled back)
    ├── ErrorReceived  an error that answers none of the pending writes
    ├── Answered       the answer to a request (``history``, ``conflicts``, ``state_at``)
    ├── Moved          the client reached another server (given several URLs)
    └── Status         the connection's state, for a status bar
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from syncd.crdt import JSONValue

__all__ = [
    "Acked",
    "Answered",
    "Change",
    "ErrorReceived",
    "Event",
    "Moved",
    "Overridden",
    "Presence",
    "Rejected",
    "State",
    "Status",
    "Synced",
    "Write",
]


@dataclass(frozen=True, slots=True)
class Write:
    """One local write, named by its key and the timestamp it was given."""

    key: str
    ts: str


@dataclass(frozen=True, slots=True)
class Change:
    """A key's entry changed in the local replica, by a local or a remote write.

    ``seq`` is the server's seq that covers the change: the ``seq`` of the
    broadcast that carried it, or the head of the handshake that brought it;
    ``None`` for a local write (it gets its seq when acknowledged).
    ``origin`` is the node that wrote the entry.
    """

    key: str
    value: JSONValue
    deleted: bool
    ts: str
    origin: str
    seq: int | None
    local: bool

    def to_json(self) -> dict[str, Any]:
        """The change as ``syncd watch`` prints it: key, value or deleted, ts, origin, seq."""
        record: dict[str, Any] = {"key": self.key}
        if self.deleted:
            record["deleted"] = True
        else:
            record["value"] = self.value
        record.update(ts=self.ts, origin=self.origin, seq=self.seq)
        return record


@dataclass(frozen=True, slots=True)
class Presence:
    """The peers online changed (or were announced by a ``welcome``)."""

    peers: frozenset[str]
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Synced:
    """A handshake ended: the replica holds the server's state up to ``seq``."""

    epoch: str
    seq: int
    full: bool
    readonly: bool


@dataclass(frozen=True, slots=True)
class Moved:
    """The client is synced with another server than before (or with its first one).

    ``url`` is the URL it reached, ``node`` the server's node id, ``cluster``
    the cluster id from its ``welcome`` (``None`` for a server alone).
    Reported by :class:`~syncd.client.Client` just before the :class:`Synced`
    of that handshake.
    """

    url: str
    node: str | None
    cluster: str | None


@dataclass(frozen=True, slots=True)
class Acked:
    """Pending writes reached the server.

    ``id`` is the acknowledged message's; it is ``None`` when a handshake or a
    broadcast showed that the server already had the writes.
    """

    id: int | None
    seq: int
    applied: int
    ignored: int
    writes: tuple[Write, ...]


@dataclass(frozen=True, slots=True)
class Overridden:
    """A pending write lost: the server holds a newer entry for its key (``winner``)."""

    write: Write
    value: JSONValue
    deleted: bool
    winner: Change


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server refused a message of pending writes.

    With ``retry_after`` set, the writes are pending again and will be sent after
    that many seconds. Without, they were refused for good and **rolled back**:
    each key shows again the server's entry (a :class:`Change` follows for each
    key that changed back); a UI should tell the user.
    """

    code: str
    message: str
    id: int | None
    writes: tuple[Write, ...]
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """An ``error`` frame that answers none of the pending messages.

    ``fatal`` when it answers the ``hello``: the server closes the connection.
    """

    code: str
    message: str
    id: int | None
    fatal: bool


@dataclass(frozen=True, slots=True)
class Answered:
    """A page answering the request ``id`` (:mod:`syncd.history_wire`)."""

    id: int
    frame: dict[str, Any]


class State(StrEnum):
    """Where a client's connection stands."""

    CONNECTING = "connecting"
    SYNCED = "synced"
    OFFLINE = "offline"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Status:
    """The connection status a UI shows (the I/O layer emits it).

    ``retry_in`` is set while offline: seconds until the next attempt.
    ``error`` says why the client is offline or failed.
    """

    state: State
    readonly: bool = False
    retry_in: float | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.state is State.SYNCED:
            return "synced (read-only)" if self.readonly else "synced"
        if self.state is State.OFFLINE and self.retry_in is not None:
            return f"offline (retrying in {max(self.retry_in, 0):.0f} s)"
        if self.state is State.FAILED and self.error:
            return f"failed: {self.error}"
        return self.state.value


Event: TypeAlias = (
    Change
    | Presence
    | Synced
    | Moved
    | Acked
    | Overridden
    | Rejected
    | ErrorReceived
    | Answered
    | Status
)
"""Everything a client reports."""
