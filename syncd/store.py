"""Durable documents: a TinyDB file per document plus an fsync'd append-only log.

Under the data directory (``--data``, default ``./syncd-data``)::

    server.json        TinyDB: the server's node id, its crash generation, and
                       whether it is running (unset by a clean stop)
    docs/NAME.json     TinyDB: table "meta" (epoch, seq, horizon, server node) and
                       table "entries", one record per key, its doc_id the entry's seq
    docs/NAME.N.log    log segment N: one line per applied message, {"seq", "ops"}
    history/NAME.sqlite  the document's history (:mod:`syncd.history`)

A document's files are created by its first write: naming a document only
reads it. A commit appends its lines to the newest segment and fsyncs it; only
then is it acknowledged. Its cost does not depend on the document's size. When
the log has grown as large as the file, a *fold* writes the whole document to a
new file and deletes the segments it covers (write, fsync, rename, fsync the
folder, as :func:`syncd.files.atomic_write`); tombstones past the retention
period are purged then. The core writes the file in pieces and reads it and the
log in pieces, restoring record by record (issue #14): a million keys are never
held twice in memory, nor is a file's text.
Each load appends to a new segment, so a line torn by a crash is always the
last of its segment and is skipped when loading; any other unreadable line or
file stops the server with an error that names the file, which is left as is.

Readers are sent a write as soon as it is merged, before its fsync, so a crash
can lose entries some clients saw, and their seqs are then given to other
entries. The epoch clients see (:attr:`DocumentStore.served_epoch`) therefore
changes at every start after an unclean stop: ``server.json`` says the server
is running from just before it listens until its clean stop, and a start that finds it
still running raises the *crash generation*, which every document's served
epoch carries (a start that cannot write the mark, on a full disk, marks its
epochs with a random run id instead). One small write at start covers every document, open or not,
and no document file is rewritten. A room closed while the disk still refuses
writes that were broadcast (:meth:`DocumentStore.break_lineage`) leaves the run
not marked clean, so the next start raises the generation too (a store whose
lineage broke has files, so the directory never forgets it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from tinydb import TinyDB

from syncd.crdt import CrdtError, Document, validate_node
from syncd.errors import CorruptFileError, StoreError
from syncd.files import AtomicJSONStorage, fsync_path, temporary_path

__all__ = ["DataDirectory", "DocumentStore", "Fold"]

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"(?P<doc>.+)\.(?P<number>[0-9]+)\.log")


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class DataDirectory:
    """The server's data directory: its node id and one store per document."""

    def __init__(self, root: Path, fold_min_bytes: int = 4 << 20) -> None:
        self.root = root
        self.fold_min_bytes = fold_min_bytes
        self.docs = root / "docs"
        self.node = ""
        self.generation = 0
        """Raised at every start after an unclean stop (crash, ``kill -9``)."""
        self.unclean_start = False
        self.run_mark = ""
        """Set when this run could not write its running mark (a full disk): a random id
        that marks its served epochs, so that no later run serves the same ones."""
        self._stores: dict[str, DocumentStore] = {}
        """The store of every document with files; each keeps the list of its segments."""

    def open(self) -> None:
        """Create the folders if needed, read (or make) the server's node id, and after
        an unclean stop raise the crash generation (written by :meth:`mark_running`)."""
        try:
            self.docs.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the data directory {self.root}: {error}") from None
        path = self.root / "server.json"
        try:
            with TinyDB(path, storage=AtomicJSONStorage) as db:
                table = db.table("server")
                record = table.get(doc_id=1)
                if record is None:
                    table.insert({"node": _new_id("srv")})
                    record = table.get(doc_id=1)
                assert record is not None and not isinstance(record, list)
                node, generation = record["node"], record.get("generation", 0)
                validate_node(node)
                if not _is_count(generation):
                    raise ValueError(f"invalid generation {generation!r}")
                unclean = record.get("running") is True
                if unclean:
                    generation += 1
        # TinyDB reports a file of the wrong shape with TypeError, AttributeError or KeyError.
        except (ValueError, OSError, TypeError, AttributeError, KeyError, RecursionError) as error:
            raise CorruptFileError(path, f"unreadable ({error!r})") from None
        self.node, self.generation, self.unclean_start = node, generation, unclean
        self._scan()

    def mark_running(self) -> None:
        """Write that the server runs, with its crash generation, before it serves anyone:
        a start that finds this mark (no clean stop since) raises the generation."""
        if self.unclean_start:
            logger.warning("the last run did not stop cleanly: every document takes a new epoch")
        try:
            self._write_server({"generation": self.generation, "running": True})
        except StoreError as error:
            # Serve anyway (reads go on, writes wait for room), under epochs of this run alone.
            self.run_mark = _new_id("r")
            logger.error("%s; this run's epochs are marked %s", error, self.run_mark)
            for store in self._stores.values():
                store.run_mark = self.run_mark

    def _write_server(self, fields: dict[str, object]) -> None:
        path = self.root / "server.json"
        try:
            with TinyDB(path, storage=AtomicJSONStorage) as db:
                db.table("server").update(fields, doc_ids=[1])
        except OSError as error:
            raise StoreError(f"cannot write {path}: {error}") from None

    def close(self) -> None:
        """Mark a clean stop (every acknowledged and broadcast write is on disk), unless
        a document lost broadcast writes this run."""
        if any(store.lineage_breaks for store in self._stores.values()):
            logger.warning("%s: not marked clean: a document lost broadcast writes", self.root)
            return
        try:
            # With the generation: it may not have been written at start.
            self._write_server({"generation": self.generation, "running": False})
        except StoreError as error:
            logger.error("cannot mark a clean stop: %s", error)

    def _scan(self) -> None:
        """List the folder once: which documents have files, and their log segments.

        From then on each store keeps its own list up to date, so loading a
        document never lists a folder that may hold thousands of files.
        """
        segments: dict[str, list[_Segment]] = {}
        with os.scandir(self.docs) as entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    segments.setdefault(entry.name.removesuffix(".json"), [])
                elif match := _SEGMENT.fullmatch(entry.name):
                    segment = _Segment(int(match["number"]), Path(entry.path))
                    segments.setdefault(match["doc"], []).append(segment)
        for name, found in segments.items():
            found.sort(key=lambda segment: segment.number)
            self._stores[name] = self._new_store(name, found)

    def document_names(self) -> list[str]:
        """The documents stored here (those with a file or a log)."""
        return sorted(name for name, store in self._stores.items() if store.stored)

    def document(self, name: str) -> DocumentStore:
        """The store of the document ``name`` (which must be a valid document name)."""
        if (store := self._stores.get(name)) is None:
            store = self._stores[name] = self._new_store(name, [])
        return store

    def release(self, name: str) -> None:
        """Forget the store of a document unloaded from memory, unless it has files."""
        store = self._stores.get(name)
        if store is not None and not store.stored:
            del self._stores[name]

    def _new_store(self, name: str, segments: list[_Segment]) -> DocumentStore:
        return DocumentStore(
            self.docs,
            name,
            self.node,
            self.fold_min_bytes,
            generation=self.generation,
            run_mark=self.run_mark,
            _segments=segments,
        )


@dataclass(frozen=True)
class Fold:
    """A fold in progress: the document's new file, written but not yet fsync'd nor in
    place, and the log segments it replaces."""

    staged: Path
    size: int
    covered: list[Path]
    purged: int
    """How many tombstones were purged from the document for it."""


@dataclass
class _Segment:
    number: int
    path: Path


@dataclass
class DocumentStore:
    """The files of one document: its TinyDB file, and its log segments on disk, in order
    (listed by :class:`DataDirectory` at start, then kept up to date here)."""

    directory: Path
    name: str
    server_node: str
    fold_min_bytes: int = 4 << 20
    """A fold is due when the log outgrows the file, but never for less than this."""
    epoch: str = ""
    """The lineage written in the document's file (and its history's)."""
    generation: int = 0
    """The server's crash generation (:attr:`DataDirectory.generation`)."""
    run_mark: str = ""
    """:attr:`DataDirectory.run_mark`."""
    lineage_breaks: int = 0
    """How many commits of this run failed after their broadcast."""
    _segments: list[_Segment] = field(default_factory=list)
    _segments_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """A fold (in its thread) drops the segments it covered while an append (in another)
    may open a new one."""
    _last_number: int = 0
    """The greatest segment number used: numbers never repeat while the store is open,
    whether or not a fold has deleted the segments before the next one opens."""
    _fd: int | None = None
    _log_bytes: int = 0
    _file_bytes: int = 0

    @property
    def served_epoch(self) -> str:
        """The epoch clients resume from: the file's, marked by the crash generation and
        this run's lineage breaks, so that no client resumes across seqs a crash reused."""
        marks = [f"g{self.generation}"] if self.generation else []
        if self.run_mark:
            marks.append(self.run_mark)
        if self.lineage_breaks:
            marks.append(f"b{self.lineage_breaks}")
        return ".".join([self.epoch, *marks])

    def break_lineage(self) -> None:
        """Writes that clients saw were lost (a failed append): a new served epoch."""
        self.lineage_breaks += 1

    @property
    def path(self) -> Path:
        """The document's TinyDB file."""
        return self.directory / f"{self.name}.json"

    @property
    def history_path(self) -> Path:
        """The document's history file (:mod:`syncd.history`), beside the documents' folder."""
        return self.directory.parent / "history" / f"{self.name}.sqlite"

    def segment_paths(self) -> list[Path]:
        """The log segments on disk, oldest first."""
        with self._segments_lock:
            return [segment.path for segment in self._segments]

    @property
    def stored(self) -> bool:
        """Whether the document has files (a file or log segments)."""
        return self.created or bool(self._segments)

    @property
    def created(self) -> bool:
        """Whether the document has its file (it has been written to)."""
        return self._file_bytes > 0

    def load(self, document: Document) -> None:
        """Fill ``document`` from the file and the log; appends will go to a new segment.

        A document with no files gets a new epoch; :meth:`create` writes its file.
        """
        self.close()
        self.epoch, self._log_bytes, self._file_bytes = "", 0, 0
        temporary_path(self.path).unlink(missing_ok=True)
        after = 0
        if self.path.exists():
            after = self._load_file(document)
        for segment in self._segments:
            self._replay(document, segment.path, after)
        if not self.epoch:
            self.epoch = _new_id("e")
            if self._segments:
                logger.warning("%s: no file for the log; starting a new epoch", self.path)
                self.write_file(document)

    def create(self, document: Document) -> None:
        """Write the file of a document that has none yet (before its first append)."""
        try:
            self.write_file(document)
        except OSError as error:
            temporary_path(self.path).unlink(missing_ok=True)
            raise StoreError(f"cannot create {self.path}: {error}") from None

    def _load_file(self, document: Document) -> int:
        try:
            size = self.path.stat().st_size
            meta = json.loads(document.restore_file(self.path))
            record = meta.get("1") if isinstance(meta, dict) else None
            if not isinstance(record, dict):
                raise ValueError('no record 1 in table "meta"')
            epoch, seq, horizon = record.get("epoch"), record.get("seq"), record.get("horizon", 0)
            if not (isinstance(epoch, str) and epoch and _is_count(seq) and _is_count(horizon)):
                raise ValueError("invalid epoch, seq or horizon")
            document.restore([], head=seq, horizon=horizon)
        # RecursionError: a "meta" nested deeper than Python's parser goes (the core reads it).
        except (
            OSError,
            CrdtError,
            ValueError,
            OverflowError,
            RecursionError,
        ) as error:
            raise CorruptFileError(self.path, f"not a readable syncd document ({error})") from None
        self.epoch = epoch
        self._file_bytes = size
        return seq

    def _replay(self, document: Document, path: Path, after: int) -> None:
        try:
            size = path.stat().st_size
            _, torn = document.restore_log(path, after=after)
        except OSError as error:
            raise CorruptFileError(path, f"unreadable ({error})") from None
        except CrdtError as error:
            raise CorruptFileError(path, str(error)) from None
        if torn:
            logger.warning("%s: skipping a torn last line (%d bytes)", path, torn)
        self._log_bytes += size

    def _open_segment(self) -> int:
        with self._segments_lock:
            number = max([self._last_number, *(s.number for s in self._segments)]) + 1
            path = self.directory / f"{self.name}.{number}.log"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._segments.append(_Segment(number, path))
            self._last_number = number
        fsync_path(self.directory)
        return self._fd

    def append(self, lines: str) -> None:
        """Append log lines and fsync them; on failure the segment is cut back, not torn."""
        assert self.created, "create() first"
        data = lines.encode("utf-8")
        fd, size = self._fd, None
        try:
            if fd is None:
                fd = self._open_segment()
            size = os.fstat(fd).st_size
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as error:
            try:
                if fd is not None and size is not None:
                    os.ftruncate(fd, size)
            except OSError:
                logger.exception("%s: could not cut back a failed write", self._segments[-1].path)
            raise StoreError(f"cannot write {self._segments[-1].path}: {error}") from None
        self._log_bytes += len(data)

    def fold_due(self) -> bool:
        """Whether the log has grown enough to be folded into the file."""
        return self._log_bytes > max(self.fold_min_bytes, self._file_bytes)

    def begin_fold(self, document: Document, purge_before: str | None = None) -> Fold:
        """Write what the next fold puts in place: the document as committed, to a new
        file beside the old one (written by the core in pieces, never held whole in
        memory); appends go to a new segment from now on.

        Tombstones older than ``purge_before`` are purged first. Call between appends,
        while the document does not change, then :meth:`fold` (in a thread) with what
        this returned.
        """
        purged = document.purge_tombstones(purge_before) if purge_before else 0
        staged = temporary_path(self.path)
        try:
            size = self._write_staged(document, staged)
        except BaseException:
            # A write that failed (a full disk) must not keep holding the space it took.
            staged.unlink(missing_ok=True)
            raise
        fold = Fold(staged, size, [s.path for s in self._segments], purged)
        self.close()
        self._log_bytes = 0
        return fold

    def fold(self, fold: Fold) -> None:
        """Put the document's new file in place (fsync, rename), then delete the segments
        it covers."""
        try:
            fsync_path(fold.staged)
            os.replace(fold.staged, self.path)
        except BaseException:
            fold.staged.unlink(missing_ok=True)
            raise
        fsync_path(self.directory)
        self._file_bytes = fold.size
        for path in fold.covered:
            path.unlink(missing_ok=True)
        with self._segments_lock:
            self._segments = [s for s in self._segments if s.path not in fold.covered]
        fsync_path(self.directory)

    def write_file(self, document: Document) -> None:
        """Write the document's TinyDB file atomically."""
        staged = temporary_path(self.path)
        try:
            size = self._write_staged(document, staged)
            fsync_path(staged)
            os.replace(staged, self.path)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        fsync_path(self.directory)
        self._file_bytes = size

    def _write_staged(self, document: Document, staged: Path) -> int:
        fields = json.dumps({"epoch": self.epoch, "server": self.server_node})
        return document.write_file(staged, fields)

    def close(self) -> None:
        """Close the open log segment."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
