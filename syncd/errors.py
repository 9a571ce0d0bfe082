"""The exception tree of syncd: every exception the project raises, under one base.

    SyncdError
     ├── CrdtError (also a ValueError): input the CRDT core rejected; carries the
     │              protocol error ``code`` and, for a batch, the offending ``entry``
     │              index and the message ``id``.
     ├── ProtocolError: a client's frame the server rejects; carries the ``error``
     │              frame that answers it and, before the handshake is done, the
     │              ``close_code`` that then ends the connection.
     ├── ConnectionFailed (also a ConnectionError): the server cannot be reached,
     │              or the connection was lost and could not be restored in time.
     ├── ServerError: the server answered with an ``error`` frame; carries its
     │    │         ``code`` (contract §6), ``message`` and message ``id``.
     │    ├── AuthError: ``unauthorized`` — a wrong or missing token.
     │    └── ReadOnlyError: ``forbidden`` — a write on a read-only connection
     │                  (also raised locally, before sending, once the server
     │                  said the connection is read-only).
     ├── SyncdTimeoutError (also a TimeoutError): a wait of the client (connect,
     │              sync, acknowledgement) took longer than its timeout.
     ├── UnexpectedFrame: the server sent something the protocol does not allow
     │              there (the client drops the connection and reconnects).
     ├── StoreError: the server's data directory cannot be read or written.
     │    └── CorruptFileError: a data file cannot be read; it is left untouched.
     ├── StoreFileError: a client store file cannot be read or written.
     ├── UsageError: invalid arguments or input of a ``syncd`` command (exit 2).
     ├── InvalidInput (also a ValueError): what the TUI's editor holds cannot be
     │              written; the message says why.
     ├── ClusterError: a node cannot join its cluster: Redis is unreachable,
     │              unusable, or disagrees (the server refuses to start).
     └── RepairError: a peer node's snapshot could not be had or merged.

The Rust extension raises :class:`CrdtError` itself, so a caller catches one type
whichever layer found the problem.
"""

from __future__ import annotations

from pathlib import Path

from websockets.frames import CloseCode

__all__ = [
    "AuthError",
    "ClusterError",
    "ConnectionFailed",
    "CorruptFileError",
    "CrdtError",
    "InvalidInput",
    "ProtocolError",
    "ReadOnlyError",
    "RepairError",
    "ServerError",
    "StoreError",
    "StoreFileError",
    "SyncdError",
    "SyncdTimeoutError",
    "UnexpectedFrame",
    "UsageError",
]


class SyncdError(Exception):
    """Base class of every error syncd raises."""


class CrdtError(SyncdError, ValueError):
    """Input rejected by the CRDT core (bad timestamp, entry, value or frame)."""

    def __init__(
        self,
        message: str,
        code: str = "bad_message",
        entry: int | None = None,
        id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.entry = entry
        self.id = id


class ProtocolError(SyncdError):
    """A frame the protocol rejects, with the ``error`` frame that answers it.

    ``close_code`` is set when the connection must close after the answer.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        id: int | None = None,
        entry: int | None = None,
        close_code: CloseCode | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.entry = entry
        self.close_code = close_code

    @classmethod
    def from_crdt(cls, error: CrdtError) -> ProtocolError:
        """The protocol error for a frame the core rejected (the connection stays open)."""
        return cls(error.code, str(error), id=error.id, entry=error.entry)

    def frame(self) -> str:
        """The ``error`` frame, as JSON text."""
        # Imported here: syncd.protocol, which writes every frame, imports this module.
        from syncd.protocol import error_frame

        return error_frame(self.code, self.message, self.id, self.entry)


class ConnectionFailed(SyncdError, ConnectionError):
    """The server cannot be reached, or the connection was lost for too long."""


class ServerError(SyncdError):
    """The server answered with an ``error`` frame (contract §6)."""

    def __init__(self, code: str, message: str, id: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.id = id


class AuthError(ServerError):
    """The server refused the token (``unauthorized``)."""

    def __init__(self, message: str = "a valid token is required") -> None:
        super().__init__("unauthorized", message)


class ReadOnlyError(ServerError):
    """A write on a read-only connection (``forbidden``)."""

    def __init__(
        self, message: str = "this connection is read-only", id: int | None = None
    ) -> None:
        super().__init__("forbidden", message, id)


class SyncdTimeoutError(SyncdError, TimeoutError):
    """A wait of the client took longer than its timeout."""


class UnexpectedFrame(SyncdError):
    """The server sent a frame that is not of the protocol, or not at that point."""


class StoreError(SyncdError):
    """The data directory cannot be read or written."""


class CorruptFileError(StoreError):
    """A data file cannot be read; it is left untouched."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class StoreFileError(SyncdError):
    """A client store file cannot be read or written."""


class UsageError(SyncdError):
    """Invalid arguments or input of a ``syncd`` command (exit 2)."""


class InvalidInput(SyncdError, ValueError):
    """What the TUI's editor holds cannot be written; the message says why."""


class ClusterError(SyncdError):
    """The cluster cannot be joined: Redis is unreachable, unusable, or disagrees."""


class RepairError(SyncdError):
    """A peer's snapshot could not be had or merged."""
