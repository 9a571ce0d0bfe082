"""Inputs found while fuzzing (``make fuzz``), each replayed exactly.

Every one of them once escaped as something other than the documented error: a
data file that ``DocumentStore.load`` must refuse with ``CorruptFileError``, or
a log line that made the core's seq arithmetic overflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.store import load
from syncd.client_store import ClientStore
from syncd.crdt import CrdtError, Document
from syncd.errors import CorruptFileError, StoreFileError
from syncd.places import Place
from syncd.store import DataDirectory

DEEP_META = '{"meta":' + "[" * 5000 + "]" * 5000 + "}"
"""A TinyDB file whose ``meta`` nests deeper than Python's JSON parser goes: the
core reads it, then ``json.loads`` raised ``RecursionError`` (atheris, ``fuzz.store``)."""

U64_MAX_LINE = '{"seq":18446744073709551615,"ops":[]}\n'
"""A log line whose seq is the greatest u64: ``seq + 1`` overflowed in the core, a
panic where overflow is checked (cargo fuzz, ``persist``), silently accepted in the
release build."""


def docs(root: Path) -> Path:
    """The documents' folder of the data directory ``root``."""
    folder = root / "docs"
    folder.mkdir(exist_ok=True)
    return folder


def test_a_file_whose_meta_nests_too_deep_is_a_corrupt_file(tmp_path: Path) -> None:
    (docs(tmp_path) / "doc.json").write_text(DEEP_META, encoding="utf-8")
    with pytest.raises(CorruptFileError) as caught:
        load(tmp_path)
    assert caught.value.path == docs(tmp_path) / "doc.json"
    assert (docs(tmp_path) / "doc.json").read_text(encoding="utf-8") == DEEP_META  # left as is


def test_a_log_line_with_a_seq_above_the_greatest_is_refused() -> None:
    doc = Document()
    with pytest.raises(CrdtError) as caught:
        doc.restore_log_json(U64_MAX_LINE)
    assert caught.value.code == "bad_message"
    assert str(caught.value).startswith("log line 1: seq 18446744073709551615 is above")
    assert (doc.seq, len(doc.changes_since(0))) == (0, 0)


def test_a_log_segment_with_such_a_line_is_a_corrupt_file(tmp_path: Path) -> None:
    segment = docs(tmp_path) / "doc.1.log"
    segment.write_text(U64_MAX_LINE, encoding="utf-8")
    with pytest.raises(CorruptFileError) as caught:
        load(tmp_path)
    assert caught.value.path == segment


def test_a_server_file_that_nests_too_deep_is_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text('{"server":' + DEEP_META[8:], encoding="utf-8")
    with pytest.raises(CorruptFileError) as caught:
        DataDirectory(tmp_path).open()
    assert caught.value.path == tmp_path / "server.json"


def test_a_client_pending_file_that_nests_too_deep_is_a_store_error(tmp_path: Path) -> None:
    store = ClientStore(
        tmp_path / "client.db",
        doc="default",
        place=Place("ws://127.0.0.1:1/ws", None, ("ws://127.0.0.1:1/ws",)),
    )
    store.pending_path.write_text('{"pending":' + DEEP_META[8:], encoding="utf-8")
    with pytest.raises(StoreFileError, match="unreadable"):
        store.load()


def test_a_client_replica_file_that_nests_too_deep_is_a_store_error(tmp_path: Path) -> None:
    store = ClientStore(
        tmp_path / "client.db",
        doc="default",
        place=Place("ws://127.0.0.1:1/ws", None, ("ws://127.0.0.1:1/ws",)),
    )
    store.path.write_text(DEEP_META, encoding="utf-8")
    with pytest.raises(StoreFileError, match="not a readable client store"):
        store.load()


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe{not utf-8", b'{"meta": {"1": {}}, "entries": {"1": ', b"", b"[1, 2]"],
    ids=["not-utf-8", "torn", "empty", "not-an-object"],
)
def test_a_client_replica_file_that_is_not_a_store_is_a_store_error(
    tmp_path: Path, content: bytes
) -> None:
    store = ClientStore(
        tmp_path / "client.db",
        doc="default",
        place=Place("ws://127.0.0.1:1/ws", None, ("ws://127.0.0.1:1/ws",)),
    )
    store.path.write_bytes(content)
    with pytest.raises(StoreFileError, match="not a readable client store"):
        store.load()
