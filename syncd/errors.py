"""The exception tree of syncd, one base for everything the project raises.

    SyncdError
     └── CrdtError (also a ValueError): input the CRDT core rejected; carries the
                    protocol error ``code`` and, for a batch, the offending ``entry``
                    index and the message ``id``.

The Rust extension raises :class:`CrdtError` itself, so a caller catches one type
whichever layer found the problem.
"""

from __future__ import annotations

__all__ = ["CrdtError", "SyncdError"]


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
