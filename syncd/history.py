"""A document's history on disk: every applied entry of every key, and every overridden write.

One SQLite file per document, ``history/NAME.sqlite`` in the data directory (WAL
mode, ``synchronous=NORMAL``), holds:

``versions``
    every applied entry (value or tombstone) by ``(key, ts)``: the primary key is
    the index, so one key's history is one range of the B-tree, never a scan;
``conflicts``
    every entry that lost its merge to a different entry (an overridden write),
    with the timestamp of the entry that beat it and when the server saw it;
``meta``
    the document's epoch and the greatest seq recorded.

The log stays the source of truth. A commit's rows are written after its log
append is fsync'd, in the document's history lane (:mod:`syncd.lanes`), in commit
order, so the history never holds what was not acknowledged. When it opens (at
the loaded document's first commit or read), the log lines past the recorded seq
are recorded again (idempotent: one row per
``(key, ts)``), so a crash between the fsync and
the insert loses nothing; a history file that is new, or of another epoch, is
first seeded with the document's current entries. Only the conflicts of the
last commits before a crash can be lost: lost entries are not in the log.

Retention (``--history-retention``) is by the entries' timestamps, so that the
history reads the same after a restart: versions older than it are expired,
except each key's newest live version before the cut, which is still the
document's state at the cut (``state_at`` stays right for any time since). Old
conflicts are expired by when they were recorded. Expiry proceeds one range of
keys per commit, so a million keys never stall one commit.

The readers (:func:`read_versions`, :func:`read_conflicts`, :func:`read_state`)
open the file read-only in whatever thread calls them: WAL readers do not wait
for the writer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from syncd.crdt import Document, wall_clock_ms
from syncd.sqlite import sqlite3

__all__ = [
    "ConflictRow",
    "History",
    "StateRow",
    "VersionRow",
    "history_bytes",
    "read_conflicts",
    "read_state",
    "read_versions",
    "ts_bound",
]

logger = logging.getLogger(__name__)

EXPIRY_INTERVAL_S: Final = 600.0
"""Seconds between two passes of retention expiry over a document's history."""
EXPIRY_CHUNK_ROWS: Final = 10_000
"""Rows of versions one commit goes through to expire old ones, while a pass is under way."""
PAGE_BYTES: Final = 4096
"""The page size of a new history file (SQLite's default, set here in case a build's
differs; files made with 1 KiB pages, as for a while, keep them)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS versions (
    key TEXT NOT NULL,
    ts TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (key, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    recorded_at INTEGER NOT NULL,
    key TEXT NOT NULL,
    ts TEXT NOT NULL,
    node TEXT NOT NULL,
    value TEXT,
    winner_ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflicts_by_node ON conflicts (node, id);
CREATE INDEX IF NOT EXISTS conflicts_by_time ON conflicts (recorded_at);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""

# The log lines' entries, parsed by SQLite in C (the GIL is released while it runs):
# a tombstone has no "value", so `->` gives NULL; a JSON null value gives 'null'.
_RECORD_LINES: Final = """
INSERT OR REPLACE INTO versions (key, ts, value)
SELECT e.value ->> '$.key', e.value ->> '$.ts', e.value -> '$.value'
FROM json_each(?1) AS line, json_each(line.value -> '$.ops') AS e
"""

# A commit's applied entries (a JSON array of them in wire form), one level less to
# parse than log lines: the per-row work of the hot path.
_RECORD_ENTRIES: Final = """
INSERT OR REPLACE INTO versions (key, ts, value)
SELECT e.value ->> '$.key', e.value ->> '$.ts', e.value -> '$.value' FROM json_each(?1) AS e
"""

_RECORD_LOST: Final = """
INSERT INTO conflicts (recorded_at, key, ts, node, value, winner_ts)
SELECT ?1, e ->> '$.key', e ->> '$.ts', substr(e ->> '$.ts', 21), e -> '$.value', ?3
FROM (SELECT ?2 AS e)
"""

# Versions before the cut, except each key's newest live one before it.
_EXPIRE_RANGE: Final = """
DELETE FROM versions
WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND ts < ?3
  AND (value IS NULL OR EXISTS (
    SELECT 1 FROM versions AS newer
    WHERE newer.key = versions.key AND newer.ts > versions.ts AND newer.ts < ?3))
"""

_NO_TS: Final = "~"
"""Sorts after every timestamp (they start with digits)."""


def ts_bound(at_ms: int) -> str:
    """The least timestamp string after every timestamp of wall time ``at_ms`` or earlier."""
    return f"{at_ms + 1:013d}"


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version of a key: its timestamp and value JSON (``None``: deleted)."""

    ts: str
    value_json: str | None


@dataclass(frozen=True, slots=True)
class StateRow:
    """One live key of a document at a past time."""

    key: str
    ts: str
    value_json: str


@dataclass(frozen=True, slots=True)
class ConflictRow:
    """An overridden write: the entry that lost and the one that beat it."""

    id: int
    recorded_at_ms: int
    key: str
    ts: str
    value_json: str | None
    winner_ts: str
    winner_value_json: str | None
    """The winner's value JSON, ``None`` if deleted or no longer in the history."""
    winner_known: bool
    """Whether the winner's version is still in the history."""


class History:
    """The writer of one document's history file; every call runs in its history lane."""

    def __init__(self, path: Path, retention_ms: int) -> None:
        self.path = path
        self.retention_ms = retention_ms
        self._db: sqlite3.Connection | None = None
        self._next_pass = 0.0
        self._expiring_from: str | None = None
        """The first key of the next range to expire, while a pass is under way."""

    def open(self, document: Document, epoch: str, segments: list[Path]) -> None:
        """Open (or create) the file and bring it up to the loaded ``document``: seed it
        if it is new or of another epoch, then record the log lines past what it holds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as error:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            logger.error("%s: unreadable (%s); moved to %s, starting anew", self.path, error, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._db = self._connect()
        db = self._db
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        recorded = meta.get("seq", 0) if meta.get("epoch") == epoch else 0
        with db:
            lines = list(_lines_after(segments, recorded))
            if lines:
                db.execute(_RECORD_LINES, (f"[{','.join(lines)}]",))
            if recorded == 0:  # after the lines: at an equal ts the document holds the winner
                db.executemany(
                    "INSERT OR REPLACE INTO versions (key, ts, value) VALUES (?, ?, ?)",
                    ((e.key, e.ts, e.value_json) for e in document.changes_since(0)),
                )
            db.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                [("epoch", epoch), ("seq", document.seq)],
            )
        logger.debug("%s: history caught up with %d log lines", self.path, len(lines))

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # Creating the file (WAL mode, the schema) took 5 fsyncs under the default
            # synchronous=FULL, for each of thousands of new documents, queueing the
            # log's fsyncs behind them. A file torn by a power cut meanwhile holds
            # nothing yet: it is moved aside or seeded again at the next open.
            db.execute("PRAGMA synchronous=OFF")
            # Before the file has any page (a file that has one keeps its size). 1 KiB
            # pages wrote less into a million random keys (2.2 KB an entry against
            # 7.6 KB) but cost a quarter more CPU an entry in the ordinary case (one
            # writer as fast as acks allow: history on 0.80x off, against 1.05x with
            # 4 KiB; docs/benchmarks.md, session 6).
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("PRAGMA synchronous=NORMAL")
            # 8 MiB: the upper levels of the B-tree of a million keys take under 1 MiB;
            # 32 MiB was a quarter of the whole server's memory at a million keys (#14).
            db.execute("PRAGMA cache_size=-8192")
        except sqlite3.DatabaseError:
            db.close()
            raise
        db.isolation_level = "DEFERRED"
        return db

    def record(self, entries: list[str], seq: int, lost: list[tuple[str, str]]) -> None:
        """Record commits in one transaction: their applied ``entries`` (each a
        comma-separated run in wire form, ``FrameResult.ops_json``; together they took
        the seqs up to ``seq``) and their lost entries (wire form JSON, winner's ts).
        Errors are logged, not raised: the history is a view of the log, caught up at
        the next load."""
        if self._db is None:
            return
        try:
            with self._db as db:
                if entries:
                    db.execute(_RECORD_ENTRIES, (f"[{','.join(entries)}]",))
                    db.execute("UPDATE meta SET value = ? WHERE name = 'seq'", (seq,))
                if lost:
                    now = wall_clock_ms()
                    db.executemany(_RECORD_LOST, ((now, entry, ts) for entry, ts in lost))
                self._expire_some(db)
        except sqlite3.Error:
            logger.exception("%s: cannot record a commit; the next load catches up", self.path)

    def _expire_some(self, db: sqlite3.Connection) -> None:
        """One step of retention expiry: a range of keys while a pass is under way."""
        if self._expiring_from is None:
            if time.monotonic() < self._next_pass:
                return
            self._expiring_from = ""
            cut_ms = max(wall_clock_ms() - self.retention_ms, 0)
            db.execute("DELETE FROM conflicts WHERE recorded_at < ?", (cut_ms,))
        start = self._expiring_from
        row = db.execute(
            "SELECT key FROM versions WHERE key > ? ORDER BY key LIMIT 1 OFFSET ?",
            (start, EXPIRY_CHUNK_ROWS),
        ).fetchone()
        end: str | None = row[0] if row is not None else None
        cut = ts_bound(max(wall_clock_ms() - self.retention_ms, 0) - 1)
        db.execute(_EXPIRE_RANGE, (start, end, cut))
        if end is None:
            self._expiring_from = None
            self._next_pass = time.monotonic() + EXPIRY_INTERVAL_S
        else:
            self._expiring_from = end

    def expire_all(self) -> None:
        """Run a whole pass of expiry now (for tests and tools)."""
        if self._db is None:
            return
        self._next_pass = 0.0
        self._expiring_from = None
        with self._db as db:
            self._expire_some(db)
            while self._expiring_from is not None:
                self._expire_some(db)

    def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None


def _lines_after(segments: list[Path], recorded: int) -> Iterator[str]:
    """The complete lines of the log ``segments`` for seqs past ``recorded``."""
    for path in segments:
        try:
            data = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            logger.error("%s: cannot read it for the history: %s", path, error)
            continue
        for line in data.split("\n")[:-1]:  # the text after the last newline is torn
            try:
                seq = json.loads(line)["seq"]
            except (ValueError, KeyError, TypeError):
                continue  # the store refuses such a file before the history reads it
            if isinstance(seq, int) and seq > recorded:
                yield line


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to a history file, or ``None`` if it has none yet."""
    if not path.exists():
        yield None
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield db


def read_versions(path: Path, key: str, limit: int, before: str | None) -> list[VersionRow]:
    """Up to ``limit`` versions of ``key``, newest first, older than the ts ``before``."""
    with _reading(path) as db:
        if db is None:
            return []
        rows = db.execute(
            "SELECT ts, value FROM versions WHERE key = ? AND ts < ? ORDER BY ts DESC LIMIT ?",
            (key, before or _NO_TS, limit),
        ).fetchall()
    return [VersionRow(ts, value) for ts, value in rows]


def read_state(path: Path, at_ms: int, after: str | None, limit: int) -> list[StateRow]:
    """Up to ``limit`` live keys (after the key ``after``, in key order) with the value
    each had at wall time ``at_ms``."""
    with _reading(path) as db:
        if db is None:
            return []
        # SQLite takes the bare columns of a max() aggregate from the row holding the max.
        rows = db.execute(
            "SELECT key, max(ts), value FROM versions WHERE key > ? AND ts < ? "
            "GROUP BY key HAVING value IS NOT NULL ORDER BY key LIMIT ?",
            (after or "", ts_bound(at_ms), limit),
        ).fetchall()
    return [StateRow(key, ts, value) for key, ts, value in rows]


def read_conflicts(
    path: Path, node: str | None, limit: int, before: int | None
) -> list[ConflictRow]:
    """Up to ``limit`` overridden writes, newest first, of ``node`` (or any), with ids
    below ``before``."""
    with _reading(path) as db:
        if db is None:
            return []
        rows = db.execute(
            "SELECT c.id, c.recorded_at, c.key, c.ts, c.value, c.winner_ts, v.value, "
            "v.ts IS NOT NULL FROM conflicts AS c "
            "LEFT JOIN versions AS v ON v.key = c.key AND v.ts = c.winner_ts "
            "WHERE (?1 IS NULL OR c.node = ?1) AND c.id < ?2 ORDER BY c.id DESC LIMIT ?3",
            (node, before if before is not None else 1 << 62, limit),
        ).fetchall()
    return [
        ConflictRow(id, at, key, ts, value, winner_ts, winner_value, winner_known=bool(known))
        for id, at, key, ts, value, winner_ts, winner_value, known in rows
    ]


def history_bytes(folder: Path) -> int:
    """The disk space of the history files under ``folder`` (with their WAL)."""
    try:
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return 0
