"""The exception tree of syncd, one base for everything the project raises.

    SyncdError
     ├── CrdtError (also a ValueError): input the CRDT core rejected; carries the
     │              protocol error ``code`` and, for a batch, the offending ``entry``
     │              index and the message ``id``.
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
     └── UnexpectedFrame: the server sent something the protocol does not allow
                    there (the client drops the connection and reconnects).

The Rust extension raises :class:`CrdtError` itself, so a caller catches one type
whichever layer found the problem.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConnectionFailed",
    "CrdtError",
    "ReadOnlyError",
    "ServerError",
    "SyncdError",
    "SyncdTimeoutError",
    "UnexpectedFrame",
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
