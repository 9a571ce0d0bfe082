"""The binding's ``Document`` and ``Clock`` against the pure-Python model (``model.py``).

Random sequences of writes (``set``, ``remove``, ``merge_entries`` batches and ``ops``
frames) over a small key space must leave the document agreeing with the model after
every step: live values, every entry's ts, tombstone flag and seq, applied and ignored
counts, the head, and ``changes_since``. Merging documents must obey the CRDT laws
(commutative, associative, idempotent), and the clock must be strictly monotonic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from crdt_strategies import (
    BASE_WALL,
    KEYS,
    NODES,
    any_json_values,
    doc_state,
    frame_text,
    merge_wire,
    same_json,
    small_json_values,
    timestamps,
    ts_of,
    wire_entries,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from model import LwwModel, canonical

from syncd.crdt import (
    Clock,
    CrdtError,
    Document,
    canonical_json,
    canonicalize_json,
    parse_timestamp,
)

MAX_WALL = 9_999_999_999_999
MAX_COUNTER = 99_999


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class SetOp:
    """``Document.set(key, value, ts)``."""

    key: str
    value: Any
    ts: str


@dataclass(frozen=True)
class RemoveOp:
    """``Document.remove(key, ts)``."""

    key: str
    ts: str


@dataclass(frozen=True)
class BatchOp:
    """``Document.merge_entries(entries)``."""

    entries: list[dict[str, Any]]


@dataclass(frozen=True)
class FrameOp:
    """``Document.apply_frame(text)`` of an ``ops`` frame."""

    id: int
    entries: list[dict[str, Any]]


Op = SetOp | RemoveOp | BatchOp | FrameOp

operations: st.SearchStrategy[Op] = st.one_of(
    st.builds(SetOp, st.sampled_from(KEYS), small_json_values, timestamps),
    st.builds(RemoveOp, st.sampled_from(KEYS), timestamps),
    st.builds(BatchOp, st.lists(wire_entries(), max_size=6)),
    st.builds(FrameOp, st.integers(0, 2**53 - 1), st.lists(wire_entries(), min_size=1, max_size=6)),
)


def wire_from_model(key: str, ts: str, value: str | None) -> dict[str, Any]:
    """The wire form a document writes for an entry, with its value parsed."""
    if value is None:
        return {"key": key, "ts": ts, "deleted": True}
    return {"key": key, "ts": ts, "value": json.loads(value)}


def apply_op(doc: Document, model: LwwModel, op: Op) -> int:
    """Apply ``op`` to both, check that they report the same outcome, return the applied count."""
    if isinstance(op, SetOp):
        won = doc.set(op.key, op.value, op.ts)
        assert won == model.merge(op.key, op.ts, canonical(op.value))
        return int(won)
    if isinstance(op, RemoveOp):
        won = doc.remove(op.key, op.ts)
        assert won == model.merge(op.key, op.ts, None)
        return int(won)
    if isinstance(op, BatchOp):
        result = doc.merge_entries(op.entries)
        wins = [merge_wire(model, entry) for entry in op.entries]
        assert (result.applied, result.ignored) == (sum(wins), len(wins) - sum(wins))
        assert result.seq == model.seq
        return result.applied
    frame = doc.apply_frame(frame_text(op.id, op.entries))
    applied: list[dict[str, Any]] = []
    for entry in op.entries:
        if merge_wire(model, entry):
            winner = model.get(entry["key"])
            assert winner is not None
            applied.append(wire_from_model(entry["key"], winner.ts, winner.value))
    assert frame.id == op.id
    assert (frame.applied, frame.ignored) == (len(applied), len(op.entries) - len(applied))
    assert frame.seq == model.seq
    assert same_json(json.loads(f"[{frame.ops_json}]"), applied)
    assert json.loads(frame.ack()) == {
        "type": "ack",
        "id": op.id,
        "seq": model.seq,
        "applied": len(applied),
        "ignored": len(op.entries) - len(applied),
    }
    broadcast = frame.broadcast("tui-1")
    if applied:
        assert broadcast is not None
        parsed = json.loads(broadcast)
        assert {k: v for k, v in parsed.items() if k != "ops"} == {
            "type": "ops",
            "seq": model.seq,
            "origin": "tui-1",
        }
        assert same_json(parsed["ops"], applied)
    else:
        assert broadcast is None
    return frame.applied


def check_agrees(doc: Document, model: LwwModel, since_points: list[int]) -> None:
    """Every observable part of the document equals the model's."""
    expected = model.to_dict()
    assert doc.seq == model.seq
    assert same_json(doc.to_dict(), expected)
    assert len(doc) == len(expected)
    assert doc.keys() == sorted(expected)
    assert doc.tombstone_count == model.tombstone_count
    for key in KEYS:
        entry, winner = doc.entry(key), model.get(key)
        if winner is None:
            assert entry is None
            assert key not in doc
            continue
        assert entry is not None
        assert (entry.key, entry.ts, entry.seq) == (key, winner.ts, winner.seq)
        assert entry.deleted == (winner.value is None)
        assert entry.value_json == winner.value
        assert same_json(entry.to_wire(), wire_from_model(key, winner.ts, winner.value))
        assert (key in doc) == (winner.value is not None)
        if winner.value is None:
            assert entry.value is None
            assert doc.get(key, "absent") == "absent"
            with pytest.raises(KeyError):
                doc[key]
        else:
            assert same_json(entry.value, json.loads(winner.value))
            assert same_json(doc[key], json.loads(winner.value))
            assert same_json(doc.get(key), json.loads(winner.value))
    for since in since_points:
        got = [(e.key, e.ts, e.value_json, e.seq) for e in doc.changes_since(since)]
        want = [(k, e.ts, e.value, e.seq) for k, e in model.changes_since(since)]
        assert got == want, f"changes_since({since})"


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(operations, max_size=25), probe=st.integers(0, 200))
def test_document_agrees_with_the_model_after_every_step(ops: list[Op], probe: int) -> None:
    doc, model = Document(), LwwModel()
    check_agrees(doc, model, [0, probe])
    for op in ops:
        before = doc.seq
        applied = apply_op(doc, model, op)
        assert doc.seq == before + applied, "seq must rise by exactly the applied count"
        check_agrees(doc, model, [0, before, max(doc.seq - 1, 0), doc.seq, probe])


def test_equal_timestamps_follow_the_tie_rule() -> None:
    ts = ts_of(BASE_WALL, 0, "n1")
    doc = Document()
    assert doc.remove("k", ts)
    assert not doc.remove("k", ts), "an identical tombstone is ignored"
    assert doc.set("k", "a", ts), "a live entry beats a tombstone with the same ts"
    assert not doc.remove("k", ts), "a tombstone never beats a live entry with the same ts"
    assert doc.set("k", "b", ts), '"b" > "a" as canonical text'
    assert not doc.set("k", "a", ts)
    assert not doc.set("k", "b", ts), "an identical entry is ignored"
    assert doc.set("k", "é", ts), "the UTF-8 bytes of é (0xC3 0xA9) are above ASCII"
    assert doc.set("k", {"z": 1}, ts), '{"z":1} starts with 0x7B, "é" with 0x22'
    assert not doc.set("k", [1], ts), "[1] starts with 0x5B"
    assert not doc.set("k", 5, ts)
    assert doc["k"] == {"z": 1}
    assert doc.seq == 5


def test_tie_between_live_values_compares_canonical_text_not_input_text() -> None:
    ts = ts_of(BASE_WALL, 0, "n1")
    doc = Document()
    # {"b":1,"a":2} and {"a":2,"b":1} are one value: the second write is identical.
    assert doc.set("k", {"b": 1, "a": 2}, ts)
    assert not doc.set("k", {"a": 2, "b": 1}, ts)
    # 1.0 and 1 have the same canonical text "1".
    assert doc.set("n", 1.0, ts)
    assert not doc.set("n", 1, ts)
    entry = doc.entry("n")
    assert entry is not None
    assert entry.value_json == "1"


# --- merge laws -------------------------------------------------------------------------

entry_lists = st.lists(wire_entries(), max_size=12)


def doc_of(entries: list[dict[str, Any]]) -> Document:
    """A fresh document holding what ``entries`` merge to."""
    doc = Document()
    doc.merge_entries(entries)
    return doc


def model_state(*batches: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """The model's state after merging every batch in order."""
    model = LwwModel()
    for batch in batches:
        for entry in batch:
            merge_wire(model, entry)
    return model.state()


def merged(a: Document, b: Document) -> Document:
    """``a`` after merging ``b`` into it, checking the counts the merge reports."""
    size = len(b.changes_since(0))
    before = a.seq
    result = a.merge(b)
    assert result.applied + result.ignored == size
    assert result.seq == a.seq == before + result.applied
    return a


@settings(max_examples=300, deadline=None)
@given(xs=entry_lists, ys=entry_lists)
def test_merge_is_commutative(xs: list[dict[str, Any]], ys: list[dict[str, Any]]) -> None:
    ab = merged(doc_of(xs), doc_of(ys))
    ba = merged(doc_of(ys), doc_of(xs))
    assert doc_state(ab) == doc_state(ba) == model_state(xs, ys)
    assert same_json(ab.to_dict(), ba.to_dict())


@settings(max_examples=300, deadline=None)
@given(xs=entry_lists, ys=entry_lists, zs=entry_lists)
def test_merge_is_associative(
    xs: list[dict[str, Any]], ys: list[dict[str, Any]], zs: list[dict[str, Any]]
) -> None:
    left = merged(merged(doc_of(xs), doc_of(ys)), doc_of(zs))
    right = merged(doc_of(xs), merged(doc_of(ys), doc_of(zs)))
    assert doc_state(left) == doc_state(right) == model_state(xs, ys, zs)


@settings(max_examples=300, deadline=None)
@given(xs=entry_lists, ys=entry_lists)
def test_merge_is_idempotent(xs: list[dict[str, Any]], ys: list[dict[str, Any]]) -> None:
    doc = doc_of(xs)
    state, seq, size = doc_state(doc), doc.seq, len(doc.changes_since(0))
    again = doc.merge(doc)
    assert (again.applied, again.ignored, again.seq) == (0, size, seq)
    twin = doc.merge(doc_of(xs))
    assert twin.applied == 0 and doc.seq == seq
    assert doc_state(doc) == state
    merged(doc, doc_of(ys))
    state, seq = doc_state(doc), doc.seq
    assert doc.merge(doc_of(ys)).applied == 0
    assert doc.merge_entries(xs + ys).applied == 0
    assert (doc_state(doc), doc.seq) == (state, seq)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), xs=st.lists(wire_entries(), max_size=10))
def test_merge_order_does_not_matter(data: st.DataObject, xs: list[dict[str, Any]]) -> None:
    shuffled = data.draw(st.permutations(xs))
    assert doc_state(doc_of(shuffled)) == doc_state(doc_of(xs)) == model_state(xs)


# --- canonical JSON ---------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(value=any_json_values)
def test_canonical_json_matches_rfc8785_model(value: Any) -> None:
    expected = canonical(value)
    assert canonical_json(value) == expected
    assert canonicalize_json(json.dumps(value)) == expected
    assert canonicalize_json(json.dumps(value, ensure_ascii=False, indent=1)) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"\ue000": 1, "😀": 2, "a": 3}, '{"a":3,"😀":2,"\ue000":1}'),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-0.0, "0"),
        (2**60, "1152921504606847000"),
        (2**53 + 1, "9007199254740992"),
        ("\x00\x1f\x7f\u2028/", '"\\u0000\\u001f\x7f\u2028/"'),
        ('"\\\b\f\n\r\t', '"\\"\\\\\\b\\f\\n\\r\\t"'),
    ],
)
def test_canonical_json_known_answers(value: Any, text: str) -> None:
    assert canonical(value) == text
    assert canonical_json(value) == text


# --- clock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """``Clock.tick(physical_ms)``."""

    physical_ms: int


@dataclass(frozen=True)
class Observe:
    """``Clock.observe(ts)``."""

    ts: str


clock_ops: st.SearchStrategy[Tick | Observe] = st.one_of(
    st.builds(Tick, st.integers(BASE_WALL - 2, BASE_WALL + 3)),
    st.builds(
        Observe,
        st.builds(
            ts_of,
            st.integers(BASE_WALL - 2, BASE_WALL + 3),
            st.sampled_from([0, 1, MAX_COUNTER - 1, MAX_COUNTER]),
            st.sampled_from(NODES),
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(clock_ops, max_size=40))
def test_clock_is_strictly_monotonic(ops: list[Tick | Observe]) -> None:
    clock = Clock("me")
    seen: list[str] = []  # every ts the clock issued or observed
    last = (0, 0)  # the HLC's (wall, counter), as contract §2 defines it
    for op in ops:
        if isinstance(op, Observe):
            clock.observe(op.ts)
            seen.append(op.ts)
            wall, counter, _ = parse_timestamp(op.ts)
            last = max(last, (wall, counter))
        else:
            ts = clock.tick(op.physical_ms)
            assert all(ts > other for other in seen), f"{ts} does not follow {max(seen)}"
            if op.physical_ms > last[0]:
                last = (op.physical_ms, 0)
            elif last[1] < MAX_COUNTER:
                last = (last[0], last[1] + 1)
            else:
                last = (last[0] + 1, 0)  # the counter would pass 99999: the wall advances
            assert parse_timestamp(ts) == (*last, "me")
            seen.append(ts)
        assert clock.last == last


def test_counter_overflow_advances_the_wall() -> None:
    clock = Clock("a")
    clock.observe(ts_of(BASE_WALL, MAX_COUNTER, "b"))
    assert clock.tick(BASE_WALL) == ts_of(BASE_WALL + 1, 0, "a")
    assert clock.tick(BASE_WALL - 10) == ts_of(BASE_WALL + 1, 1, "a")
    assert clock.last == (BASE_WALL + 1, 1)


def test_clock_at_the_end_of_time_refuses_rather_than_repeats() -> None:
    clock = Clock("a")
    clock.observe(ts_of(MAX_WALL, MAX_COUNTER - 1, "b"))
    assert clock.tick(MAX_WALL + 5) == ts_of(MAX_WALL, MAX_COUNTER, "a")
    with pytest.raises(CrdtError) as caught:
        clock.tick(MAX_WALL)
    assert caught.value.code == "clock_skew"
    assert clock.last == (MAX_WALL, MAX_COUNTER)


def test_clock_now_follows_the_system_clock_and_stays_monotonic() -> None:
    clock = Clock("n1")
    issued = [clock.now() for _ in range(200)]
    assert issued == sorted(set(issued))
    assert all(parse_timestamp(ts)[2] == "n1" for ts in issued)
    clock.observe(ts_of(MAX_WALL - 1, 0, "z"))
    assert clock.now() == ts_of(MAX_WALL - 1, 1, "n1")
