"""Type stubs for the Rust extension ``syncd._crdt`` (see ``rust_crdt/src/python/``).

Every method raises :class:`syncd.errors.CrdtError` for input it rejects.
"""

import os
from collections.abc import Iterable, Mapping
from typing import Any, final

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_OPS",
    "DEFAULT_MAX_SKEW_MS",
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_ID",
    "MAX_KEY_BYTES",
    "Clock",
    "Document",
    "Entry",
    "FrameResult",
    "MergeResult",
    "broadcast_frame",
    "canonical_json",
    "canonicalize_json",
    "check_key",
    "check_value",
    "format_timestamp",
    "frame_type",
    "parse_timestamp",
    "validate_node",
    "wall_clock_ms",
]

MAX_KEY_BYTES: int
"""The longest key, in UTF-8 bytes (1024)."""

MAX_ID: int
"""The greatest ``ops`` message id, 2**53 - 1."""

DEFAULT_MAX_VALUE_BYTES: int
"""The default longest canonical JSON text of a value, in bytes (65536, contract §1)."""

DEFAULT_MAX_OPS: int
"""The default most entries in one ``ops`` message (1000, contract §5)."""

DEFAULT_MAX_SKEW_MS: int
"""The default of how far an entry may be ahead of the server's clock, in ms (60000, §2)."""

DEFAULT_MAX_FRAME_BYTES: int
"""The default frame limit, in bytes (1 MiB, contract §6)."""

@final
class Entry:
    """One entry of a document, live or tombstone, with the seq it took."""

    @property
    def key(self) -> str:
        """The key."""
    @property
    def ts(self) -> str:
        """The timestamp, ``WWWWWWWWWWWWW-CCCCC-NODE``."""
    @property
    def value(self) -> Any:
        """The value as a Python object (``None`` for a tombstone: see ``deleted``)."""
    @property
    def deleted(self) -> bool:
        """Whether the entry is a tombstone."""
    @property
    def seq(self) -> int:
        """The sequence number the entry took when it was applied."""
    @property
    def value_json(self) -> str | None:
        """The value's canonical JSON text, or ``None`` for a tombstone."""
    def to_wire(self) -> dict[str, Any]:
        """The entry in its wire form.

        ``{"key", "ts", "value"}`` or ``{"key", "ts", "deleted": True}``.
        """

@final
class MergeResult:
    """What merging a batch of entries did."""

    @property
    def applied(self) -> int:
        """Entries that won and took a seq."""
    @property
    def ignored(self) -> int:
        """Entries that lost to what the document held."""
    @property
    def seq(self) -> int:
        """The document's head after the merge."""

@final
class FrameResult:
    """What applying an ``ops`` frame did, with the frames to send."""

    @property
    def id(self) -> int:
        """The message id, echoed in the ack."""
    @property
    def applied(self) -> int:
        """Entries that won, each taking the next seq."""
    @property
    def ignored(self) -> int:
        """Entries that lost."""
    @property
    def seq(self) -> int:
        """The document's head once the message is merged."""
    @property
    def ops_json(self) -> str:
        """The applied entries' wire form, comma-separated (the inside of a broadcast's ``ops``)."""
    @property
    def lost(self) -> list[tuple[str, str]]:
        """Each entry that lost to a different entry of its key: (its wire form as JSON
        text, the winner's timestamp). A write sent again is not listed."""
    def ack(self) -> str:
        """The ``ack`` frame for the writer, as JSON text."""
    def broadcast(self, origin: str) -> str | None:
        """The ``ops`` broadcast frame for the other clients, or ``None`` if nothing applied."""
    def log_line(self) -> str | None:
        """The applied entries as one log line (``{"seq", "ops"}`` and a newline), or ``None``."""

@final
class Document:
    """A Last-Write-Wins element dictionary, safe to share between threads."""

    def __new__(cls, *, max_value_bytes: int = ..., max_ops: int = ...) -> Document:
        """An empty document whose incoming values and messages are held to these limits
        (by default :data:`DEFAULT_MAX_VALUE_BYTES` and :data:`DEFAULT_MAX_OPS`)."""
    @property
    def seq(self) -> int:
        """The head: the seq of the last applied entry (0 when new)."""
    @property
    def horizon(self) -> int:
        """The compaction horizon: a resume point below it gets a snapshot, not a delta."""
    @property
    def digest(self) -> int:
        """XOR of a fixed 64-bit hash of (key, ts) of every live entry: equal replicas agree."""
    @property
    def tombstone_count(self) -> int:
        """How many tombstones the document keeps."""
    @property
    def max_value_bytes(self) -> int:
        """The longest canonical JSON text of a value."""
    @property
    def max_ops(self) -> int:
        """The most entries in one ``ops`` message."""
    def __len__(self) -> int:
        """The number of live keys."""
    def __contains__(self, key: str, /) -> bool:
        """Whether ``key`` is live."""
    def __getitem__(self, key: str, /) -> Any:
        """The value of a live key; ``KeyError`` if absent or deleted."""
    def get(self, key: str, default: Any = None) -> Any:
        """The value of a live key, or ``default``."""
    def entry(self, key: str) -> Entry | None:
        """The winning entry for ``key``, live or tombstone, or ``None`` if never written."""
    def set(self, key: str, value: Any, ts: str) -> bool:
        """Add or update: merge a live entry; return whether it won."""
    def remove(self, key: str, ts: str) -> bool:
        """Merge a tombstone for ``key``; return whether it won."""
    def keys(self) -> list[str]:
        """The live keys, sorted by code point."""
    def to_dict(self) -> dict[str, Any]:
        """Every live key and its value."""
    def merge(self, other: Document) -> MergeResult:
        """Merge every entry of another document into this one."""
    def merge_entries(self, entries: Iterable[Mapping[str, Any]]) -> MergeResult:
        """Merge wire-form entries in order; validated as a whole first.

        Not held to ``max_ops``: this is how a replica takes in a snapshot.
        """
    def apply_frame(
        self, text: str, *, now_ms: int | None = None, max_skew_ms: int = ...
    ) -> FrameResult:
        """Validate an ``ops`` frame (JSON text) as a whole, then merge it, without the GIL.

        With ``now_ms``, an entry more than ``max_skew_ms`` (by default
        :data:`DEFAULT_MAX_SKEW_MS`) ahead of it is ``clock_skew``.
        """
    def changes_since(self, seq: int) -> list[Entry]:
        """The entries with a seq greater than ``seq``, in seq order."""
    def entries_frames(self, since: int | None = None, max_frame_bytes: int = ...) -> list[str]:
        """``entries`` frames (JSON text) for the changes after ``since``, or for every entry,
        each at most ``max_frame_bytes`` (by default :data:`DEFAULT_MAX_FRAME_BYTES`)."""
    def entries_frame(
        self, after: int, until: int, max_frame_bytes: int = ...
    ) -> tuple[str, int] | None:
        """One ``entries`` frame of the entries with a seq in (``after``, ``until``], in seq
        order, and the seq of its last entry (the next frame's ``after``); ``None`` when
        none is left. Sends a snapshot a frame at a time: an entry replaced between two
        calls took a seq above ``until`` and is left out."""
    def write_file(self, path: str | os.PathLike[str], fields: str) -> int:
        """Write the document as a TinyDB file (as ``restore_file_json`` reads it) in pieces,
        without fsync; record 1 of its ``meta`` table is the JSON object ``fields`` with
        ``seq`` and ``horizon`` first. Returns the bytes written; ``OSError`` if it fails."""
    def purge_tombstones(self, before: str) -> int:
        """Drop tombstones older than the timestamp ``before``, raising the horizon."""
    def snapshot(self) -> tuple[int, int, str]:
        """(head, horizon, entries) at one instant; entries as a TinyDB table keyed by seq."""
    def restore_file_json(self, text: str | bytes) -> str:
        """Restore a TinyDB file ``{"meta", "entries"}`` (entries as ``snapshot`` writes them).

        Returns the text of its ``meta`` table.
        """
    def restore_file(self, path: str | os.PathLike[str]) -> str:
        """``restore_file_json`` of the file at ``path``, read in pieces (never held whole).

        Returns the text of its ``meta`` table; ``OSError`` if the file cannot be read.
        """
    def restore_log(self, path: str | os.PathLike[str], *, after: int = 0) -> tuple[int, int]:
        """``restore_log_json`` of the log segment at ``path``, read a line at a time.

        An unfinished last line (torn by a crash) is skipped. Returns how many entries were
        replayed and the bytes of the torn line (0 if none); ``OSError`` if the file
        cannot be read.
        """
    def restore_log_json(self, text: str | bytes, *, after: int = 0) -> int:
        """Replay complete log lines (``FrameResult.log_line``), skipping seqs <= ``after``.

        Returns how many entries were replayed; a malformed line names its number.
        """
    def restore(self, entries: Iterable[Mapping[str, Any]], *, head: int, horizon: int = 0) -> None:
        """Put back entries with their ``seq`` (as loaded from disk), then set head and horizon.

        Every seq, and the head, must be at most 2**53 - 1 (seqs start at 1).
        """

@final
class Clock:
    """A Hybrid Logical Clock for one replica, safe to share between threads."""

    def __new__(cls, node: str) -> Clock:
        """A clock for the replica ``node``."""
    @property
    def node(self) -> str:
        """The replica's node id."""
    @property
    def last(self) -> tuple[int, int]:
        """The greatest (wall, counter) issued or observed."""
    def now(self) -> str:
        """A new timestamp for a local write, by the system clock."""
    def tick(self, physical_ms: int) -> str:
        """A new timestamp for a local write when the physical clock reads ``physical_ms``."""
    def observe(self, ts: str) -> None:
        """Take a received timestamp into account: later local writes order after it."""

def broadcast_frame(seq: int, origin: str, ops_json: str) -> str:
    """An ``ops`` broadcast frame from comma-separated entries (coalesced ``ops_json``)."""

def frame_type(text: str) -> str:
    """The ``type`` of a client frame (``bad_json`` if not JSON, ``bad_message`` if no type)."""

def parse_timestamp(ts: str) -> tuple[int, int, str]:
    """Split a timestamp into (wall, counter, node), validating it."""

def format_timestamp(wall: int, counter: int, node: str) -> str:
    """The wire form of a timestamp from its parts."""

def validate_node(node: str) -> None:
    """Check a node id: 1-64 characters of ``[A-Za-z0-9_-]``."""

def check_key(key: str) -> None:
    """Check a key: not empty, at most :data:`MAX_KEY_BYTES` of UTF-8, valid Unicode."""

def check_value(value: Any, *, max_value_bytes: int = ...) -> str:
    """Check a value: a JSON value whose canonical JSON text is at most ``max_value_bytes``
    (by default :data:`DEFAULT_MAX_VALUE_BYTES`); return that text."""

def canonical_json(value: Any) -> str:
    """The canonical JSON text (RFC 8785) of a Python value."""

def canonicalize_json(text: str) -> str:
    """The canonical JSON text (RFC 8785) of a value given as JSON text."""

def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch by the system clock."""
