"""The three implementations under test, behind one interface.

A *subject* loads writes (untimed) and prepares a :class:`Trial` for each case: the
call to time, with its input made beforehand, and a check of what the call did, run
after the clock stops. Every subject receives the same writes, so their documents hold
the same state throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pycrdt import Doc, Map, TransactionEvent

from bench.baseline import DictLww
from bench.workload import NODE, Write, chunked
from syncd.crdt import CrdtError, Document

__all__ = [
    "PYCRDT",
    "PYTHON",
    "SUBJECTS",
    "SYNCD",
    "PycrdtSubject",
    "PythonSubject",
    "Subject",
    "SyncdSubject",
    "Trial",
    "make_subject",
    "ops_frame",
]

SYNCD = "syncd"
PYTHON = "pure Python"
PYCRDT = "pycrdt"
SUBJECTS = (SYNCD, PYTHON, PYCRDT)
"""The subjects' names, in the report's column order."""

_LOAD_CHUNK = 1000


@dataclass(frozen=True)
class Trial:
    """One timed call and the check of its result."""

    run: Callable[[], object]
    """The call to time; its input is ready."""
    check: Callable[[object], None]
    """Raises ``AssertionError`` unless ``run`` did the work (called untimed with its result)."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _unchecked(_: object) -> None:
    return None


def ops_frame(writes: Sequence[Write], frame_id: int) -> str:
    """An ``ops`` frame holding ``writes``, as compact JSON text (as ``JSON.stringify`` writes)."""
    frame = {"type": "ops", "id": frame_id, "ops": [w.wire() for w in writes]}
    return json.dumps(frame, separators=(",", ":"))


class Subject(Protocol):
    """What the cases need from an implementation."""

    name: str

    def load(self, writes: Sequence[Write]) -> None:
        """Apply writes, untimed, in the implementation's fastest way."""

    def size(self) -> int:
        """The number of keys held (live or not)."""

    def state(self) -> dict[str, Any]:
        """Every live key and its value, to check that the subjects agree."""

    def single_set(self, writes: Sequence[Write]) -> Trial:
        """One call from Python per write."""

    def single_get(self, keys: Sequence[str]) -> Trial:
        """One lookup from Python per key."""

    def batch_merge(self, writes: Sequence[Write]) -> Trial:
        """The writes merged as one batch given as Python objects."""

    def frame(self, writes: Sequence[Write], frame_id: int) -> Trial:
        """The writes applied as one ``ops`` frame, the broadcast made."""

    def mark(self) -> object:
        """A resume point: the position ``changes_since`` later starts from."""

    def changes(self, mark: object, count: int) -> Trial:
        """The changes since ``mark`` (``count`` of them)."""


class SyncdSubject:
    """syncd's Rust core through its Python binding."""

    name = SYNCD

    def __init__(self) -> None:
        self.doc = Document()
        self._frame_id = 0

    def load(self, writes: Sequence[Write]) -> None:
        for chunk in chunked(writes, _LOAD_CHUNK):
            self._frame_id += 1
            self.doc.apply_frame(ops_frame(chunk, self._frame_id))

    def size(self) -> int:
        return len(self.doc) + self.doc.tombstone_count

    def state(self) -> dict[str, Any]:
        return self.doc.to_dict()

    def single_set(self, writes: Sequence[Write]) -> Trial:
        doc_set = self.doc.set

        def run() -> object:
            for key, value, ts in writes:
                doc_set(key, value, ts)
            return None

        last = writes[-1]
        return Trial(run, lambda _: _expect(self.doc.get(last.key) == last.value, "set lost"))

    def single_get(self, keys: Sequence[str]) -> Trial:
        doc_get = self.doc.get

        def run() -> object:
            for key in keys:
                doc_get(key)
            return None

        return Trial(run, _unchecked)

    def batch_merge(self, writes: Sequence[Write]) -> Trial:
        entries = [w.wire() for w in writes]

        def check(result: object) -> None:
            _expect(getattr(result, "applied", None) == len(writes), f"applied: {result!r}")

        return Trial(lambda: self.doc.merge_entries(entries), check)

    def frame(self, writes: Sequence[Write], frame_id: int) -> Trial:
        text = ops_frame(writes, frame_id)
        apply_frame = self.doc.apply_frame

        def run() -> object:
            return apply_frame(text).broadcast(NODE)

        def check(broadcast: object) -> None:
            _expect(isinstance(broadcast, str), "no broadcast")
            frame = json.loads(str(broadcast))
            _expect(len(frame["ops"]) == len(writes), "not every entry applied")

        return Trial(run, check)

    def frame_rejected(self, writes: Sequence[Write], frame_id: int) -> Trial:
        """The same frame with its last entry's ``ts`` broken: the core parses and validates
        every entry, then rejects the frame, merging nothing. Its time is the cost of
        parsing and validation alone."""
        broken = [*writes[:-1], writes[-1]._replace(ts="not-a-timestamp")]
        text = ops_frame(broken, frame_id)
        apply_frame = self.doc.apply_frame
        last = len(writes) - 1

        def run() -> object:
            try:
                apply_frame(text)
            except CrdtError as error:
                return error
            return None

        def check(error: object) -> None:
            _expect(isinstance(error, CrdtError), "the broken frame was accepted")
            _expect(getattr(error, "entry", None) == last, f"rejected at {error!r}, not {last}")

        return Trial(run, check)

    def mark(self) -> object:
        return self.doc.seq

    def changes(self, mark: object, count: int) -> Trial:
        since = int(str(mark))
        changes_since = self.doc.changes_since
        return Trial(lambda: changes_since(since), _expect_count(count))

    def changes_frames(self, mark: object, count: int) -> Trial:
        """The changes since ``mark`` as ``entries`` frames (JSON text), as a resume sends them."""
        since = int(str(mark))
        entries_frames = self.doc.entries_frames

        def check(frames: object) -> None:
            if not isinstance(frames, list):
                raise AssertionError("no frames")
            got = sum(len(json.loads(frame)["entries"]) for frame in frames)
            _expect(got == count, f"expected {count} entries, got {got}")

        return Trial(lambda: entries_frames(since), check)


def _expect_count(count: int) -> Callable[[object], None]:
    def check(result: object) -> None:
        got = len(result) if isinstance(result, list) else None
        _expect(got == count, f"expected {count} changes, got {got}")

    return check


class PythonSubject:
    """The pure-Python ``dict`` baseline (:mod:`bench.baseline`)."""

    name = PYTHON

    def __init__(self) -> None:
        self.model = DictLww()

    def load(self, writes: Sequence[Write]) -> None:
        merge = self.model.merge
        for key, value, ts in writes:
            merge(key, ts, value)

    def size(self) -> int:
        return len(self.model)

    def state(self) -> dict[str, Any]:
        return self.model.to_dict()

    def single_set(self, writes: Sequence[Write]) -> Trial:
        model_set = self.model.set

        def run() -> object:
            for key, value, ts in writes:
                model_set(key, value, ts)
            return None

        last = writes[-1]
        return Trial(run, lambda _: _expect(self.model.get(last.key) == last.value, "set lost"))

    def single_get(self, keys: Sequence[str]) -> Trial:
        model_get = self.model.get

        def run() -> object:
            for key in keys:
                model_get(key)
            return None

        return Trial(run, _unchecked)

    def batch_merge(self, writes: Sequence[Write]) -> Trial:
        entries = [w.wire() for w in writes]

        def check(result: object) -> None:
            _expect(result == (len(writes), 0), f"(applied, ignored): {result!r}")

        return Trial(lambda: self.model.merge_entries(entries), check)

    def frame(self, writes: Sequence[Write], frame_id: int) -> Trial:
        text = ops_frame(writes, frame_id)
        apply_frame = self.model.apply_frame

        def run() -> object:
            return apply_frame(text).broadcast(NODE)

        def check(broadcast: object) -> None:
            _expect(isinstance(broadcast, str), "no broadcast")
            frame = json.loads(str(broadcast))
            _expect(len(frame["ops"]) == len(writes), "not every entry applied")

        return Trial(run, check)

    def frame_loads(self, writes: Sequence[Write], frame_id: int) -> Trial:
        """``json.loads`` of the same frame alone: the floor of any pure-Python server."""
        text = ops_frame(writes, frame_id)
        return Trial(lambda: json.loads(text), _unchecked)

    def mark(self) -> object:
        return self.model.seq

    def changes(self, mark: object, count: int) -> Trial:
        since = int(str(mark))
        changes_since = self.model.changes_since
        return Trial(lambda: changes_since(since), _expect_count(count))


class PycrdtSubject:
    """pycrdt (Yrs): a ``Map`` in a ``Doc``.

    For the ``ops`` frame, a second replica (``source``) kept in sync with the target makes
    each frame's writes in one transaction; the update that transaction emits (what a Yjs
    client sends) is what the target applies, timed. Every frame writes new values, so
    every timed ``apply_update`` integrates new items and deletes the ones they replace.
    """

    name = PYCRDT

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.map: Map[Any] = self.doc.get("m", type=Map)
        self._source: Doc[Any] | None = None
        self._source_map: Map[Any] | None = None
        self._updates: list[bytes] = []

    def load(self, writes: Sequence[Write]) -> None:
        for chunk in chunked(writes, _LOAD_CHUNK):
            with self.doc.transaction():
                for key, value, _ in chunk:
                    self.map[key] = value

    def size(self) -> int:
        return len(self.map)

    def state(self) -> dict[str, Any]:
        return self.map.to_py() or {}

    def single_set(self, writes: Sequence[Write]) -> Trial:
        target = self.map

        def run() -> object:
            for key, value, _ in writes:
                target[key] = value
            return None

        last = writes[-1]
        return Trial(run, lambda _: _expect(self.map[last.key] == last.value, "set lost"))

    def single_get(self, keys: Sequence[str]) -> Trial:
        target = self.map

        def run() -> object:
            for key in keys:
                target[key]
            return None

        return Trial(run, _unchecked)

    def batch_merge(self, writes: Sequence[Write]) -> Trial:
        doc, target = self.doc, self.map

        def run() -> object:
            with doc.transaction():
                for key, value, _ in writes:
                    target[key] = value
            return None

        return Trial(run, lambda _: self._expect_holds(writes))

    def frame(self, writes: Sequence[Write], frame_id: int) -> Trial:
        source, source_map = self._synced_source()
        self._updates.clear()
        with source.transaction():
            for key, value, _ in writes:
                source_map[key] = value
        _expect(len(self._updates) == 1, f"expected one update, got {len(self._updates)}")
        update = self._updates.pop()
        apply_update = self.doc.apply_update
        return Trial(lambda: apply_update(update), lambda _: self._expect_holds(writes))

    def mark(self) -> object:
        return self.doc.get_state()

    def changes(self, mark: object, count: int) -> Trial:
        if not isinstance(mark, bytes):
            raise TypeError("a pycrdt mark is a state vector")
        get_update = self.doc.get_update

        def check(update: object) -> None:
            # An update holds at least each changed key and value; it cannot be smaller.
            got = len(update) if isinstance(update, bytes) else 0
            _expect(got >= count * 26, f"update of {got} bytes for {count} changes")

        return Trial(lambda: get_update(mark), check)

    def _expect_holds(self, writes: Iterable[Write]) -> None:
        target = self.map
        for key, value, _ in writes:
            _expect(target.get(key) == value, f"{key} does not hold its new value")

    def _synced_source(self) -> tuple[Doc[Any], Map[Any]]:
        """The source replica, brought up to the target's state (untimed)."""
        if self._source is None or self._source_map is None:
            self._source = Doc()
            self._source_map = self._source.get("m", type=Map)
            self._source.apply_update(self.doc.get_update())
            self._source.observe(self._on_update)
        else:
            self._source.apply_update(self.doc.get_update(self._source.get_state()))
        return self._source, self._source_map

    def _on_update(self, event: TransactionEvent) -> None:
        self._updates.append(event.update)


def make_subject(name: str) -> Subject:
    """A new, empty subject by name."""
    factories: dict[str, Callable[[], Subject]] = {
        SYNCD: SyncdSubject,
        PYTHON: PythonSubject,
        PYCRDT: PycrdtSubject,
    }
    return factories[name]()
