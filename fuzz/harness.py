"""What the atheris harnesses share: a document's state, the check that a
document's snapshot reloads equal, and the entry point."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from syncd.crdt import Document

__all__ = ["BASE_WALL", "check_reloads", "lines", "run", "state"]

BASE_WALL: Final = 1_764_028_800_000
"""The wall clock the harnesses run at (2025-11-25), so that inputs replay the same."""

CORPORA: Final = Path(__file__).parent / "corpus"


def state(doc: Document) -> dict[str, tuple[str, str | None, int]]:
    """Every entry, tombstones included: key → (ts, canonical value text, seq)."""
    return {e.key: (e.ts, e.value_json, e.seq) for e in doc.changes_since(0)}


def check_reloads(doc: Document) -> None:
    """The document's snapshot, written as its TinyDB file, must restore it exactly."""
    seq, horizon, table = doc.snapshot()
    copy = Document(max_value_bytes=doc.max_value_bytes, max_ops=doc.max_ops)
    meta = copy.restore_file_json(f'{{"meta":{{}},"entries":{table}}}')
    assert meta == "{}", meta
    copy.restore([], head=seq, horizon=horizon)
    assert state(copy) == state(doc), "the snapshot reloaded different"
    assert (copy.seq, copy.horizon) == (doc.seq, doc.horizon)
    assert copy.to_dict() == doc.to_dict()


def lines(data: bytes) -> tuple[int, list[str]]:
    """An input as its first byte (a choice of the harness) and the text lines after it,
    decoded as a WebSocket text frame would be (invalid UTF-8 replaced)."""
    if not data:
        return 0, []
    return data[0], data[1:].decode("utf-8", errors="replace").split("\n")


def run(fuzz_one: Callable[[bytes], None], corpus: str) -> None:
    """Fuzz ``fuzz_one``, on ``fuzz/corpus/CORPUS`` unless a directory is given."""
    import atheris  # only here: the tests replay the harnesses without it

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        directory = CORPORA / corpus
        directory.mkdir(parents=True, exist_ok=True)
        argv.append(str(directory))
    atheris.instrument_all()
    atheris.Setup(argv, fuzz_one)
    atheris.Fuzz()
