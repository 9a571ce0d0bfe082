"""The durable store, on real files: a TinyDB file per document plus fsync'd log segments.

Every test works in ``tmp_path`` with the real :class:`syncd.store.DataDirectory`, the
real Rust :class:`~syncd.crdt.Document` and real log lines made as the server makes them
(``Document.apply_frame(...).log_line()``). What is checked is what a restart sees:
a reload gives back every entry with its seq, the epoch and the head; a fold leaves the
same state in a plain TinyDB file; a torn last line is skipped, any other damage stops
the load with :class:`~syncd.store.CorruptFileError` and leaves the bytes as they were.

Failures are real ones too: an append that hits ``RLIMIT_FSIZE`` (in a child process,
so the limit cannot touch pytest), and a writer killed with SIGKILL in the middle of a
loop of :func:`syncd.files.atomic_write` calls.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tinydb import TinyDB

from syncd.crdt import Document
from syncd.errors import CorruptFileError
from syncd.files import AtomicJSONStorage, atomic_write, temporary_path
from syncd.store import DataDirectory, DocumentStore

BASE_WALL = 1_764_028_800_000
"""The wall field of the tests' timestamps: ``ts(n)`` is ``n`` ms after it."""

CHILD_TIMEOUT = 20.0
"""Seconds a child process may take before the test fails."""


def ts(n: int, node: str = "t") -> str:
    """A timestamp ``n`` ms after :data:`BASE_WALL`."""
    return f"{BASE_WALL + n:013d}-00000-{node}"


def live(key: str, n: int, value: Any) -> dict[str, Any]:
    """A live wire entry written at ``ts(n)``."""
    return {"key": key, "ts": ts(n), "value": value}


def dead(key: str, n: int) -> dict[str, Any]:
    """A tombstone written at ``ts(n)``."""
    return {"key": key, "ts": ts(n), "deleted": True}


def ops(entries: list[dict[str, Any]], id: int = 1) -> str:
    """An ``ops`` frame holding ``entries``."""
    return json.dumps({"type": "ops", "id": id, "ops": entries})


def commit(store: DocumentStore, doc: Document, entries: list[dict[str, Any]]) -> int:
    """Apply a message and append its log line, as the server does; returns ``applied``."""
    if not store.created:
        store.create(doc)
    result = doc.apply_frame(ops(entries))
    line = result.log_line()
    if line is not None:
        store.append(line)
    return result.applied


State = list[tuple[int, dict[str, Any]]]


def state(doc: Document) -> State:
    """Every entry of ``doc`` with its seq, in seq order."""
    return [(entry.seq, entry.to_wire()) for entry in doc.changes_since(0)]


def segments(data: DataDirectory, name: str) -> list[Path]:
    """The log segments of document ``name``, by number."""
    found = [p for p in data.docs.glob(f"{name}.*.log") if p.name[len(name) + 1 : -4].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(name) + 1 : -4]))


def snapshot_files(directory: Path) -> dict[str, bytes]:
    """The name and bytes of every file in ``directory``."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


class Stores:
    """Opens documents of one data directory, like a server start, and closes them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[DocumentStore] = []

    def data(self) -> DataDirectory:
        """The data directory, opened anew."""
        data = DataDirectory(self.root)
        data.open()
        return data

    def load(self, name: str = "doc") -> tuple[DocumentStore, Document]:
        """A fresh process's view of document ``name``: a new store, a new document."""
        store = self.data().document(name)
        doc = Document()
        store.load(doc)
        self.opened.append(store)
        return store, doc

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(tmp_path / "data")
    yield opened
    opened.close()


# -- a new document and plain TinyDB ------------------------------------------------


def test_a_document_only_read_leaves_no_file(stores: Stores) -> None:
    store, _ = stores.load("visited")
    assert store.epoch.startswith("e-")
    assert not store.created
    store.close()
    assert list(stores.data().docs.iterdir()) == []
    assert stores.data().document_names() == []


def test_new_document_gets_an_epoch_and_a_plain_tinydb_file(stores: Stores) -> None:
    store, doc = stores.load("fresh")
    store.create(doc)
    assert store.epoch.startswith("e-")
    assert doc.seq == 0
    with TinyDB(store.path) as db:
        assert db.tables() == {"meta", "entries"}
        meta = db.table("meta").get(doc_id=1)
        assert isinstance(meta, dict)
        assert meta == {
            "epoch": store.epoch,
            "seq": 0,
            "horizon": 0,
            "server": stores.data().node,
        }
        assert db.table("entries").all() == []


def test_folded_file_holds_one_record_per_key_keyed_by_seq(stores: Stores) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("a", 1, "x"), live("b", 2, [1, {"n": None}])])
    commit(store, doc, [live("a", 3, "y"), dead("b", 4), dead("never", 5)])
    store.fold(store.begin_fold(doc))
    with TinyDB(store.path) as db:
        records = {record.doc_id: dict(record) for record in db.table("entries").all()}
        meta = db.table("meta").get(doc_id=1)
    assert records == {seq: wire for seq, wire in state(doc)}
    assert records == {
        3: live("a", 3, "y"),
        4: dead("b", 4),
        5: dead("never", 5),
    }
    assert isinstance(meta, dict)
    assert (meta["epoch"], meta["seq"], meta["horizon"]) == (store.epoch, 5, 0)


def test_a_file_rewritten_by_plain_tinydb_loads_in_pieces(stores: Stores) -> None:
    """The core reads the file in pieces of a few hundred KiB: a file larger than that,
    written as plain ``json`` would (indented, the tables in another order, a table it
    does not know, keys as \\u escapes) loads the same as the file the core wrote."""
    store, doc = stores.load()
    for start in range(0, 3_000, 500):
        commit(store, doc, [live(f"ключ\t{i}", i, "x" * 200) for i in range(start, start + 500)])
    store.fold(store.begin_fold(doc))
    expected, head, epoch = state(doc), doc.seq, store.epoch
    store.close()
    tables = json.loads(store.path.read_bytes())
    rewritten = {
        "_default": {"1": {"a": [1, 2]}},
        "entries": tables["entries"],
        "meta": tables["meta"],
    }
    store.path.write_text(json.dumps(rewritten, indent=2), encoding="utf-8")
    assert store.path.stat().st_size > 3 * (256 << 10)  # several of the core's pieces

    store2, doc2 = stores.load()
    assert (state(doc2), doc2.seq, store2.epoch) == (expected, head, epoch)


# -- append and reload ----------------------------------------------------------------


def test_append_and_reload_restore_every_entry_with_its_seq(stores: Stores) -> None:
    store, doc = stores.load()
    assert commit(store, doc, [live("title", 1, "hello"), live("n", 1, 1)]) == 2
    assert commit(store, doc, [live("title", 2, "bye"), live("n", 0, 99)]) == 1
    assert commit(store, doc, [dead("n", 3), live("list", 4, [1, 2.5, "three", None])]) == 2
    assert commit(store, doc, [live("title", 1, "hello")]) == 0  # nothing applied, no line
    assert commit(store, doc, [live("ключ ☃", 5, {"nested": {"deep": [True, False]}})]) == 1
    expected, head, epoch = state(doc), doc.seq, store.epoch
    assert head == 6
    store.close()

    store2, doc2 = stores.load()
    assert state(doc2) == expected
    assert doc2.seq == head
    assert store2.epoch == epoch
    assert doc2.to_dict() == doc.to_dict()


def test_epoch_and_seq_continue_across_restarts(stores: Stores) -> None:
    store, doc = stores.load()
    epoch = store.epoch
    for restart in range(4):
        assert store.epoch == epoch
        assert doc.seq == restart * 2
        commit(
            store, doc, [live(f"k{restart}", restart, restart), live("shared", restart, restart)]
        )
        store.close()
        store, doc = stores.load()
    assert doc.seq == 8
    assert [seq for seq, _ in state(doc)] == [1, 3, 5, 7, 8]
    assert doc.get("shared") == 3


def test_tombstones_survive_a_reload_and_keep_older_writes_out(stores: Stores) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("gone", 10, "value")])
    commit(store, doc, [dead("gone", 20)])
    store.close()

    store2, doc2 = stores.load()
    entry = doc2.entry("gone")
    assert entry is not None
    assert entry.deleted
    assert entry.ts == ts(20)
    assert "gone" not in doc2
    # A late write older than the delete must not resurrect the key.
    assert commit(store2, doc2, [live("gone", 15, "late")]) == 0
    assert "gone" not in doc2


# -- fold -------------------------------------------------------------------------------


def test_fold_writes_the_file_deletes_covered_segments_and_reloads_the_same(
    stores: Stores,
) -> None:
    store, doc = stores.load()
    for n in range(5):
        commit(store, doc, [live(f"k{n % 3}", n, n), dead(f"d{n}", n)])
    store.close()
    store, doc = stores.load()  # a second segment
    commit(store, doc, [live("after-restart", 10, True)])
    data = stores.data()
    before_fold = segments(data, "doc")
    assert len(before_fold) == 2

    fold = store.begin_fold(doc)
    folded_seq, folded_keys = doc.seq, len(state(doc))
    assert sorted(fold.covered) == sorted(before_fold)
    commit(store, doc, [live("during-fold", 11, "in the new segment")])
    store.fold(fold)

    assert not any(path.exists() for path in fold.covered)
    remaining = segments(data, "doc")
    assert len(remaining) == 1
    assert remaining[0] not in fold.covered
    expected = state(doc)
    with TinyDB(store.path) as db:
        meta = db.table("meta").get(doc_id=1)
        assert isinstance(meta, dict)
        assert meta["seq"] == folded_seq  # the document as it was when the fold began
        assert len(db.table("entries")) == folded_keys
    store.close()

    store2, doc2 = stores.load()
    assert state(doc2) == expected
    assert doc2.seq == doc.seq
    assert store2.epoch == store.epoch


def test_fold_purges_old_tombstones_and_raises_the_horizon(stores: Stores) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("old1", 1, 1), live("old2", 2, 2), live("new", 3, 3)])
    commit(store, doc, [dead("old1", 4), dead("old2", 5)])  # seq 4, 5
    commit(store, doc, [live("keep", 6, "live and old"), dead("new", 50)])  # seq 6, 7
    assert doc.tombstone_count == 3

    fold = store.begin_fold(doc, ts(10))
    store.fold(fold)
    assert fold.purged == 2
    assert doc.horizon == 5
    assert doc.tombstone_count == 1
    expected = state(doc)
    assert [wire["key"] for _, wire in expected] == ["keep", "new"]
    store.close()

    _, doc2 = stores.load()
    assert doc2.horizon == 5
    assert doc2.seq == 7
    assert doc2.tombstone_count == 1
    assert state(doc2) == expected
    new = doc2.entry("new")
    assert new is not None and new.deleted


# -- damage -----------------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("a", 1, 1)])
    commit(store, doc, [live("b", 2, 2)])
    expected = state(doc)
    torn_line = doc.apply_frame(ops([live("c", 3, "café")])).log_line()
    assert torn_line is not None
    store.close()
    segment = segments(stores.data(), "doc")[-1]
    with open(segment, "ab") as handle:  # torn inside the "é": not UTF-8 either
        handle.write(torn_line.encode()[: torn_line.encode().index("é".encode()) + 1])

    with caplog.at_level(logging.WARNING, logger="syncd.store"):
        store2, doc2 = stores.load()
    assert state(doc2) == expected
    assert any("torn" in r.getMessage() and segment.name in r.getMessage() for r in caplog.records)

    # The torn line stays behind in its old segment: the next start still loads.
    commit(store2, doc2, [live("d", 4, 4)])
    expected2 = state(doc2)
    store2.close()
    _, doc3 = stores.load()
    assert state(doc3) == expected2
    assert doc3.seq == 3


def test_a_corrupt_line_before_the_last_stops_the_load_and_changes_nothing(
    stores: Stores,
) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("a", 1, 1)])
    commit(store, doc, [live("b", 2, 2)])
    store.close()
    segment = segments(stores.data(), "doc")[-1]
    first, second = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(first + b'{"seq": 2, "ops": [{"key": "x"\n' + second)
    before = snapshot_files(stores.data().docs)

    with pytest.raises(CorruptFileError) as raised:
        stores.load()
    assert raised.value.path == segment
    assert str(segment) in str(raised.value)
    assert snapshot_files(stores.data().docs) == before


def _truncated_real_file(stores: Stores) -> bytes:
    store, doc = stores.load("donor")
    commit(store, doc, [live("a", 1, "x" * 100), live("b", 2, "y" * 100)])
    store.fold(store.begin_fold(doc))
    text = store.path.read_bytes()
    return text[: len(text) // 2]


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json at all",
        b"",
        b"\xff\xfe\x00",
        b"[1]",
        b"{}",
        b'{"meta": [1], "entries": {}}',
        b'{"meta": {"1": {"seq": 3}}, "entries": {}}',
        b'{"meta": {"1": {"epoch": "e-1", "seq": -1}}, "entries": {}}',
        b'{"meta": {"1": {"epoch": "e-1", "seq": 1.5}}, "entries": {}}',
        b'{"meta": {"1": {"epoch": "e-1", "seq": 2}}, "entries": {"1": {"key": "k"}}}',
        b"truncated",
    ],
)
def test_a_garbage_document_file_stops_the_load_and_is_left_as_is(
    stores: Stores, garbage: bytes
) -> None:
    if garbage == b"truncated":
        garbage = _truncated_real_file(stores)
    docs = stores.data().docs
    path = docs / "broken.json"
    path.write_bytes(garbage)
    before = snapshot_files(docs)

    with pytest.raises(CorruptFileError) as raised:
        stores.load("broken")
    assert raised.value.path == path
    assert str(path) in str(raised.value)
    assert snapshot_files(docs) == before


@pytest.mark.parametrize(
    "garbage",
    [b"xx", b"[1]", b'{"server": []}', b'{"server": {"1": {}}}', b'{"server": {"1": {"node": 5}}}'],
)
def test_a_garbage_server_file_is_a_corrupt_file_error(tmp_path: Path, garbage: bytes) -> None:
    tmp_path.joinpath("server.json").write_bytes(garbage)
    with pytest.raises(CorruptFileError) as raised:
        DataDirectory(tmp_path).open()
    assert raised.value.path == tmp_path / "server.json"
    assert tmp_path.joinpath("server.json").read_bytes() == garbage


def test_a_leftover_temporary_file_from_a_crashed_fold_is_ignored_and_removed(
    stores: Stores,
) -> None:
    store, doc = stores.load()
    commit(store, doc, [live("a", 1, "folded")])
    store.fold(store.begin_fold(doc))
    commit(store, doc, [live("b", 2, "logged")])
    expected = state(doc)
    store.close()
    staged = temporary_path(store.path)
    real = store.path.read_text()
    staged.write_text(real[: len(real) // 2])  # the fold died while writing it

    _, doc2 = stores.load()
    assert state(doc2) == expected
    assert not staged.exists()


def test_documents_whose_names_are_prefixes_keep_their_own_segments(stores: Stores) -> None:
    names = ["a", "a.1", "a.5", "a.5.1"]
    for number, name in enumerate(names):
        store, doc = stores.load(name)
        for restart in range(2):  # two segments each: a.1.log, a.2.log, a.1.1.log, ...
            commit(store, doc, [live(f"{name}/{restart}", number * 10 + restart, name)])
            store.close()
            store, doc = stores.load(name)
    for name in names:
        _, doc = stores.load(name)
        assert doc.keys() == [f"{name}/0", f"{name}/1"], name
        assert doc.seq == 2
    assert stores.data().document_names() == names


# -- the data directory ----------------------------------------------------------------


def test_data_directory_keeps_its_node_and_lists_documents(stores: Stores) -> None:
    first = stores.data()
    assert first.node.startswith("srv-")
    assert first.document_names() == []
    for name in ("zeta", "alpha", "only-read"):
        store, doc = stores.load(name)
        if name != "only-read":
            commit(store, doc, [live("k", 1, name)])
    again = stores.data()
    assert again.node == first.node
    assert again.document_names() == ["alpha", "zeta"]


def test_a_document_with_only_a_log_is_listed(stores: Stores) -> None:
    store, doc = stores.load("orphan")
    commit(store, doc, [live("k", 1, 1)])
    store.close()
    store.path.unlink()
    assert stores.data().document_names() == ["orphan"]


# -- a failed append ---------------------------------------------------------------------

_APPEND_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from pathlib import Path
    from syncd.crdt import Document
    from syncd.errors import StoreError
    from syncd.store import DataDirectory

    root, mode = Path(sys.argv[1]), sys.argv[2]
    data = DataDirectory(root)
    data.open()
    store, doc = data.document("doc"), Document()
    store.load(doc)
    store.create(doc)

    def line(key, n, value):
        frame = {"type": "ops", "id": n, "ops": [
            {"key": key, "ts": f"{1764028800000 + n:013d}-00000-t", "value": value}]}
        return doc.apply_frame(json.dumps(frame)).log_line()

    store.append(line("first", 1, "ok"))
    segment = sorted(root.glob("docs/doc.*.log"))[-1]
    size = segment.stat().st_size
    big = line("second", 2, "x" * 4000)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # "short": room for part of the line (os.write returns less); "full": no room at all.
    room = 100 if mode == "short" else 0
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + room, resource.RLIM_INFINITY))
    try:
        store.append(big)
    except StoreError as error:
        outcome = str(error)
    else:
        outcome = None
    after = segment.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    store.append(big)  # the retry, once there is room again
    store.close()
    print(json.dumps({"outcome": outcome, "size": size, "after": after,
                      "segment": str(segment)}))
    """
)


@pytest.mark.parametrize("mode", ["short", "full"])
def test_a_failed_append_cuts_the_segment_back(stores: Stores, mode: str) -> None:
    stores.data()
    child = subprocess.run(
        [sys.executable, "-c", _APPEND_CHILD, str(stores.root), mode],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["outcome"] is not None, "the append over the limit did not fail"
    assert report["segment"] in report["outcome"]
    assert report["after"] == report["size"], "the failed append left bytes behind"

    _, doc = stores.load()
    assert doc.to_dict() == {"first": "ok", "second": "x" * 4000}
    assert doc.seq == 2


# -- AtomicJSONStorage and atomic_write ---------------------------------------------------


def test_atomic_storage_replaces_the_file_instead_of_rewriting_it(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    with TinyDB(path, storage=AtomicJSONStorage) as db:
        db.insert({"n": 1})
        old_inode = path.stat().st_ino
        with open(path, encoding="utf-8") as old:
            db.insert({"n": 2})
            # The old file is untouched: a reader holding it sees the old content whole.
            assert json.load(old) == {"_default": {"1": {"n": 1}}}
        assert path.stat().st_ino != old_inode
    assert json.loads(path.read_text()) == {"_default": {"1": {"n": 1}, "2": {"n": 2}}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.json"]


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_atomic_storage_reads_none_for_a_missing_or_empty_file(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "db.json"
    if content is not None:
        path.write_text(content)
    assert AtomicJSONStorage(path).read() is None
    with TinyDB(path, storage=AtomicJSONStorage) as db:
        assert db.all() == []
        db.insert({"k": "v"})
    with TinyDB(path) as plain:
        assert plain.all() == [{"k": "v"}]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    for text in ['{"a": 1}', '{"b": 2}']:
        atomic_write(path, text)
        assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


_WRITER_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from syncd.files import atomic_write

    path, size = Path(sys.argv[1]), int(sys.argv[2])
    texts = [sys.argv[3] * size, sys.argv[4] * (size // 3)]
    for i in range(10_000):
        atomic_write(path, '{"v": "' + texts[i % 2] + '"}')
        if i == 0:
            print("ready", flush=True)
    """
)


def test_atomic_write_survives_sigkill_at_a_random_moment(tmp_path: Path) -> None:
    size = 3 << 20
    contents = ("a" * size, "b" * (size // 3))
    rng = random.Random(20_251_125)
    deadline = time.monotonic() + 25.0
    for round_ in range(8):
        assert time.monotonic() < deadline, "the crash rounds took too long"
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        path = folder / "f.json"
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER_CHILD, str(path), str(size), "a", "b"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=CHILD_TIMEOUT) == -signal.SIGKILL, "killed too late"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=CHILD_TIMEOUT)
            if child.stdout is not None:
                child.stdout.close()
        assert json.loads(path.read_text())["v"] in contents
        # At most the staged file of the write the kill interrupted remains beside it.
        assert {p.name for p in folder.iterdir()} <= {"f.json", "f.json.tmp"}
