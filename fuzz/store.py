"""Fuzz loading a document from its data files: ``DocumentStore.load`` on a data
directory whose ``docs/`` holds an arbitrary ``NAME.json`` and ``NAME.1.log``.

The input's first byte says which files exist (bit 0 the TinyDB file, bit 1 the
log); the rest is the file's content, then a NUL byte, then the log's. The load
must succeed or raise ``StoreError`` (``CorruptFileError`` included), nothing
else. A loaded document's snapshot must reload equal, loading the same files
again must give the same document, and so must its file once written.

Run: ``python -m fuzz.store [CORPUS_DIR] -max_total_time=60``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from fuzz.harness import check_reloads, run, state
from syncd.crdt import Document
from syncd.errors import StoreError
from syncd.store import DataDirectory, DocumentStore

__all__ = ["fuzz_one", "load"]


def load(root: Path) -> Document:
    """The document ``doc`` of the data directory ``root``, as a server start reads it;
    :class:`~syncd.store.StoreError` if the store refuses its files."""
    data = DataDirectory(root)
    data.open()
    store = data.document("doc")
    doc = Document()
    try:
        store.load(doc)
    finally:
        store.close()
    return doc


def _loaded(root: Path) -> Document | None:
    try:
        return load(root)
    except StoreError:
        return None


def fuzz_one(data: bytes) -> None:
    """Load the files the input describes, checking the outcome."""
    if not data:
        return
    content, _, log = data[1:].partition(b"\0")
    root = Path(tempfile.mkdtemp(prefix="syncd-fuzz-", dir=_scratch()))
    directory = root / "docs"
    directory.mkdir()
    try:
        if data[0] & 1:
            (directory / "doc.json").write_bytes(content)
        if data[0] & 2:
            (directory / "doc.1.log").write_bytes(log)
        doc = _loaded(root)
        if doc is None:
            return
        check_reloads(doc)
        again = _loaded(root)
        assert again is not None and state(again) == state(doc), "a second load differs"
        store = DocumentStore(directory, "doc", "srv-1")
        store.epoch = "e-1"
        store.write_file(doc)
        for log_file in directory.glob("*.log"):
            log_file.unlink()
        written = _loaded(root)
        assert written is not None and state(written) == state(doc), "its file loads different"
        assert (written.seq, written.horizon) == (doc.seq, doc.horizon)
    finally:
        shutil.rmtree(root)


def _scratch() -> str | None:
    # Memory-backed when there is one: every load fsyncs.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # torn lines are logged as warnings
    run(fuzz_one, "store")
