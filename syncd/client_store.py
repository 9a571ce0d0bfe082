"""A client's optional local persistence: its replica, resume point and pending writes.

Two TinyDB JSON files, both written atomically (:func:`syncd.files.atomic_write`:
new file, fsync, rename), so a crash leaves either the old or the new content::

    PATH               table "meta" (doc, place, epoch, seq, local head) and table
                       "entries" (the local replica, one record per key, keyed by
                       its local seq) — the layout of the server's document files
    PATH.pending.json  table "pending": the unacknowledged writes, wire form; table
                       "clock": the greatest timestamp the client issued or saw

A third file, ``PATH.lock``, is locked (``flock``) while a client uses the
store: two clients sharing one store would overwrite each other's pending
writes, so the second one is refused.

They are split because they change at different rates. Pending writes are the
user's own data, saved as soon as they are made; the file is small. The replica
can be large (every key of the document) and can always be fetched again, so
it is saved lazily — at most every few seconds and when the client closes.

The clock's high-water mark is saved with every pending write, so a client
made again from its store never issues a timestamp below one it issued before
(contract §2) — even without a saved replica, after a crash that lost the
latest replica, or while its wall clock is behind the server's and the offset
learnt from the last ``welcome`` is gone. Otherwise a write made after a
restart could lose to the same client's earlier, already acknowledged write.

A store belongs to a *place* (:mod:`syncd.places`): a cluster, or a server's
URL. A replica saved for another place is not loaded (its epochs mean nothing
there); one saved for any node of the same cluster is, and the handshake then
brings a snapshot from the node reached. :func:`store_file` moves a store kept
under a node's URL to its cluster's file once the cluster is known.

The resume point is saved **with** the replica, never ahead of it: resuming
from a seq whose changes the saved replica lacks would skip them for good.
Pending writes saved after the replica are merged back into it on load.

A :class:`StoreSaver` keeps a running client's store up to date: the I/O
layer tells it what changed, and it writes the pending writes at once and the
replica at most every ``interval`` seconds, in a thread, one write at a time.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.crdt import DEFAULT_MAX_VALUE_BYTES, CrdtError, Document, parse_timestamp
from syncd.errors import StoreFileError
from syncd.files import atomic_write, temporary_path
from syncd.places import Place
from syncd.replica import Pending, Replica

__all__ = ["ClientStore", "Saved", "StoreSaver", "store_file"]

logger = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class Saved:
    """What a store held: the replica (if saved) with its resume point, pending writes,
    and the clock's high-water mark (a timestamp, if saved)."""

    document: Document | None
    epoch: str | None
    seq: int
    pending: list[dict[str, Any]]
    clock: str | None = None


class ClientStore:
    """The files that keep one client's state of one document across runs.

    With ``replica=False`` only pending writes are kept (no replica, no resume
    point: every connection starts from a snapshot).
    """

    def __init__(self, path: Path, *, doc: str, place: Place, replica: bool = True) -> None:
        self.path = path
        self.pending_path = path.with_name(path.name + ".pending.json")
        self.doc = doc
        self.place = place
        """Where the store belongs; a client that learns its cluster updates it."""
        self.keep_replica = replica
        self._lock: int | None = None

    def lock(self) -> None:
        """Take the store for this client; :class:`StoreFileError` if another one has it."""
        if self._lock is not None:
            return
        path = self.path.with_name(self.path.name + ".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreFileError(f"cannot open {path}: {error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreFileError(f"{self.path} is in use by another client") from None
        self._lock = fd

    def unlock(self) -> None:
        """Let another client take the store."""
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def load(self, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Saved:
        """Lock the store and read what was saved (nothing yet: an empty :class:`Saved`)."""
        self.lock()
        for path in (self.path, self.pending_path):
            temporary_path(path).unlink(missing_ok=True)
        saved = Saved(None, None, 0, [])
        if self.keep_replica and self.path.exists():
            saved.document, saved.epoch, saved.seq = self._load_replica(max_value_bytes)
        if self.pending_path.exists():
            saved.pending, saved.clock = self._load_pending()
        return saved

    def _load_replica(self, max_value_bytes: int) -> tuple[Document | None, str | None, int]:
        document = Document(max_value_bytes=max_value_bytes)
        try:
            record = json.loads(document.restore_file(self.path)).get("1")
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise ValueError('no record 1 of a known format in table "meta"')
            if record.get("doc") != self.doc:
                raise StoreFileError(
                    f"{self.path} holds document {record.get('doc')!r}, not {self.doc!r}"
                )
            epoch, seq, head = record.get("epoch"), record.get("seq"), record.get("head")
            if not (isinstance(epoch, str) or epoch is None):
                raise ValueError("invalid epoch")
            if not (isinstance(seq, int) and isinstance(head, int) and seq >= 0 and head >= 0):
                raise ValueError("invalid seq or head")
            document.restore([], head=head)
        except (OSError, CrdtError, ValueError, AttributeError, RecursionError) as error:
            raise StoreFileError(f"{self.path}: not a readable client store ({error})") from None
        # Files from before places kept the server's URL under "url".
        if not self.place.accepts(record.get("place", record.get("url"))):
            # Another server: its epochs mean nothing here, but the pending writes still do.
            return None, None, 0
        return document, epoch, seq

    def _load_pending(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            data = json.loads(self.pending_path.read_text(encoding="utf-8"))
            table = data.get("pending", {})
            if not isinstance(table, dict):
                raise ValueError('table "pending" is not an object')
            entries = list(table.values())
            if not all(isinstance(e, dict) and isinstance(e.get("ts"), str) for e in entries):
                raise ValueError("a pending write is not an entry")
            clock = data.get("clock", {}).get("1", {}).get("last")  # absent in older files
            if clock is not None:
                if not isinstance(clock, str):
                    raise ValueError("the clock is not a timestamp")
                parse_timestamp(clock)
        except (
            OSError,
            UnicodeDecodeError,
            ValueError,
            AttributeError,
            CrdtError,
            RecursionError,
        ) as error:
            raise StoreFileError(f"{self.pending_path}: unreadable ({error})") from None
        return entries, clock

    def save_pending(self, pending: list[Pending], clock: str | None = None) -> None:
        """Replace the saved pending writes (small: one entry per key written offline)
        and the clock's high-water mark (a timestamp: see the module's docstring)."""
        records = ",".join(f'"{i}":{p.text}' for i, p in enumerate(pending, start=1))
        text = f'{{"pending":{{{records}}}'
        if clock is not None:
            text += f',"clock":{{"1":{{"last":"{clock}"}}}}'
        self._write(self.pending_path, text + "}")

    def save_replica(self, document: Document, epoch: str | None, seq: int) -> None:
        """Save the replica with the resume point it matches (call when they are consistent)."""
        text = self.replica_text(document, epoch, seq)
        if text is not None:
            self.write_replica(text)

    def write_replica(self, text: str) -> None:
        """Write the replica file's text (from :meth:`replica_text`); safe in another thread."""
        self._write(self.path, text)

    def replica_text(self, document: Document, epoch: str | None, seq: int) -> str | None:
        """The replica file's text for ``document`` at resume point ``(epoch, seq)``,
        or ``None`` when this store keeps no replica."""
        if not self.keep_replica:
            return None
        head, _horizon, table = document.snapshot()
        meta = json.dumps(
            {
                "1": {
                    "format": FORMAT,
                    "doc": self.doc,
                    "place": self.place.key,
                    "epoch": epoch,
                    "seq": seq,
                    "head": head,
                }
            },
            ensure_ascii=False,
        )
        return f'{{"meta":{meta},"entries":{table}}}'

    def _write(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text)
        except OSError as error:
            raise StoreFileError(f"cannot write {path}: {error}") from None


def store_file(place: Place, path_for: Callable[[str], Path]) -> Path:
    """The store file of ``place``: ``path_for(place.key)``.

    If it does not exist yet, a store kept under one of the place's member URLs
    (made before the cluster was known) is moved there first, once. A store in
    use by a running client is left where it is.
    """
    target = path_for(place.key)
    if place.cluster is None or _exists(ClientStore(target, doc="", place=place)):
        return target
    for url in place.members:
        old = ClientStore(path_for(url), doc="", place=place)
        if not _exists(old):
            continue
        try:
            old.lock()
        except StoreFileError:
            logger.info("%s is in use: not moving it to %s", old.path, target)
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            new = ClientStore(target, doc="", place=place)
            # The replica last: a crash in between leaves its pending writes already moved.
            for source, destination in ((old.pending_path, new.pending_path), (old.path, target)):
                if source.exists():
                    os.replace(source, destination)
            logger.info("moved the client store %s to %s", old.path, target)
        except OSError as error:
            logger.warning("cannot move %s to %s: %s", old.path, target, error)
        finally:
            old.unlock()
        break
    return target


def _exists(store: ClientStore) -> bool:
    return store.path.exists() or store.pending_path.exists()


class StoreSaver:
    """Saves a replica's state into a :class:`ClientStore` while its client runs.

    Pending writes are the user's own data: :meth:`save_pending_now` writes them
    at once. The replica is large and can be fetched again: it is written at most
    every ``interval`` seconds by :meth:`run`, and by :meth:`save` with ``final``.
    Errors are logged, never raised: a client keeps working without its store.
    """

    def __init__(self, store: ClientStore, replica: Replica, interval: float) -> None:
        self.store = store
        self.replica = replica
        self.interval = interval
        self._dirty_pending = False
        self._dirty_replica = False
        self._replica_write: asyncio.Future[None] | None = None
        """The replica file's write in progress, in a thread (one at a time)."""

    def pending_changed(self) -> None:
        """The pending writes changed: save them with the next save."""
        self._dirty_pending = True

    def replica_changed(self) -> None:
        """The replica or its resume point changed: save it with the next save."""
        self._dirty_replica = True

    def save_pending_now(self) -> None:
        """Write the pending writes and the clock's mark now (on every local write)."""
        try:
            self.store.save_pending(self.replica.pending, self.replica.clock_mark)
        except StoreFileError as error:
            logger.error("%s", error)

    async def run(self) -> None:
        """Save what changed every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.save()

    async def save(self, final: bool = False) -> None:
        """Save what changed (everything, with ``final``) and wait for the writes."""
        store = self.store
        try:
            if self._dirty_pending or final:
                self._dirty_pending = False
                store.save_pending(self.replica.pending, self.replica.clock_mark)
            if self._dirty_replica or (final and store.keep_replica):
                self._dirty_replica = False
                # The replica and its resume point are read at one instant, on this thread.
                replica = self.replica
                text = store.replica_text(replica.document, replica.epoch, replica.seq)
                if text is not None:
                    await self.written()
                    self._replica_write = asyncio.ensure_future(
                        asyncio.to_thread(store.write_replica, text)
                    )
                    await self.written()
        except StoreFileError as error:
            logger.error("%s", error)

    async def written(self) -> None:
        """Wait for the replica's write in progress, if any (its thread cannot be stopped).

        Two writes at once would stage the same temporary file: one rename fails,
        or the file gets both contents mixed.
        """
        write = self._replica_write
        if write is None:
            return
        try:
            # Shielded, and forgotten only once done: a cancelled waiter (the save loop,
            # cancelled by close()) leaves the write for the next one to wait for.
            await asyncio.shield(write)
        except StoreFileError as error:
            logger.error("%s", error)
        if self._replica_write is write:
            self._replica_write = None
