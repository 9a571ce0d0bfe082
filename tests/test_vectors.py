"""The binding against the shared conformance vectors in ``tests/vectors/`` (see its README).

The same files are read by ``cargo test`` and the web client's tests, so the Rust,
Python and TypeScript implementations of timestamps, canonical JSON, the merge rule,
wire entries and ``ops`` frames cannot drift apart. The pure-Python model
(``model.py``) is held to the canonical and merge vectors too, since the benchmarks
compare against it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from model import LwwModel, canonical, is_valid_ts

from syncd.crdt import (
    CrdtError,
    Document,
    canonical_json,
    canonicalize_json,
    format_timestamp,
    parse_timestamp,
)

VECTORS = Path(__file__).parent / "vectors"
MAX_PERMUTED = 6
"""Merge cases with at most this many entries are merged in every order."""


def load(name: str) -> dict[str, Any]:
    """One vector file, or nothing if it is not there (its tests are then skipped)."""
    path = VECTORS / name
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def cases(data: dict[str, Any], group: str) -> list[Any]:
    """The cases of ``group``, each with its name (or its timestamp) as the test id."""
    return [
        pytest.param(case, id=str(case.get("name", case.get("ts")))) for case in data.get(group, [])
    ]


def field(case: dict[str, Any], name: str) -> str:
    """A text field of a case with its ``repeat`` placeholder expanded."""
    text: str = case[name]
    repeat = case.get("repeat", {}).get(name)
    if repeat is not None:
        text = text.replace(repeat["placeholder"], repeat["text"] * repeat["count"])
    return text


def strict_loads(text: str) -> Any:
    """JSON text parsed without Python's extensions (NaN, Infinity)."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def repeats_a_field(text: str) -> bool:
    """Whether any object in the JSON text repeats a field (Python would keep the last)."""
    repeated = False

    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        obj = dict(pairs)
        repeated = repeated or len(obj) < len(pairs)
        return obj

    json.loads(text, object_pairs_hook=check)
    return repeated


TIMESTAMPS = load("timestamps.json")
CANONICAL = load("canonical.json")
MERGE = load("merge.json")
ENTRIES = load("entries.json")
FRAMES = load("frames.json")


# --- timestamps -------------------------------------------------------------------------


def test_ordered_timestamps_order_as_strings_and_as_parts() -> None:
    ordered: list[str] = TIMESTAMPS.get("ordered", [])
    if not ordered:
        pytest.skip("no timestamps.json")
    parsed = [parse_timestamp(ts) for ts in ordered]
    for i, j in itertools.combinations(range(len(ordered)), 2):
        assert ordered[i] < ordered[j]
        assert parsed[i] < parsed[j], (ordered[i], ordered[j])
    for ts, parts in zip(ordered, parsed, strict=True):
        assert format_timestamp(*parts) == ts
    # The document's merge orders them the same way.
    doc = Document()
    for i, ts in enumerate(ordered):
        assert doc.set("k", i, ts), ts
    for ts in ordered[:-1]:
        assert not doc.set("k", -1, ts), ts


@pytest.mark.parametrize("case", cases(TIMESTAMPS, "valid"))
def test_valid_timestamps(case: dict[str, Any]) -> None:
    ts = case["ts"]
    assert parse_timestamp(ts) == (case["wall"], case["counter"], case["node"])
    assert format_timestamp(case["wall"], case["counter"], case["node"]) == ts
    assert is_valid_ts(ts)


@pytest.mark.parametrize("case", cases(TIMESTAMPS, "invalid"))
def test_invalid_timestamps(case: dict[str, Any]) -> None:
    ts = case["ts"]
    with pytest.raises(CrdtError) as caught:
        parse_timestamp(ts)
    assert caught.value.code == "bad_message", case["why"]
    with pytest.raises(CrdtError):
        Document().set("k", 1, ts)
    assert not is_valid_ts(ts), "the model's pattern must agree"


# --- canonical JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(CANONICAL, "cases"))
def test_canonical_cases(case: dict[str, Any]) -> None:
    expected = case["canonical"]
    assert canonicalize_json(case["json"]) == expected
    assert canonicalize_json(expected) == expected
    value = strict_loads(case["json"])
    assert canonical_json(value) == expected, "from the Python value"
    assert canonical(value) == expected, "the pure-Python model"


@pytest.mark.parametrize("case", cases(CANONICAL, "invalid"))
def test_canonical_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(CrdtError) as caught:
        canonicalize_json(case["json"])
    assert caught.value.code == case["code"]


# --- merge ------------------------------------------------------------------------------


def orders(entries: list[Any]) -> list[list[Any]]:
    """The given order, the reverse, and every permutation of short lists."""
    if len(entries) <= MAX_PERMUTED:
        return [list(p) for p in itertools.permutations(entries)]
    return [list(entries), list(reversed(entries))]


def expected_state(case: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Each key's expected ``(ts, canonical value text or None)``."""
    return {
        key: (wire["ts"], None if wire.get("deleted") else canonical(wire["value"]))
        for key, wire in case["expected"].items()
    }


@pytest.mark.parametrize("case", cases(MERGE, "cases"))
def test_merge_cases_in_every_order(case: dict[str, Any]) -> None:
    expected = expected_state(case)
    for order in orders(case["entries"]):
        doc = Document()
        doc.merge_entries(order)
        got = {e.key: (e.ts, e.value_json) for e in doc.changes_since(0)}
        assert got == expected, [e["ts"] for e in order]
        for key, wire in case["expected"].items():
            entry = doc.entry(key)
            assert entry is not None
            assert entry.deleted == bool(wire.get("deleted"))
        seq = doc.seq
        again = doc.merge_entries(order)
        assert (again.applied, doc.seq) == (0, seq), "merging again changes nothing"

        model = LwwModel()
        for wire in order:
            value = None if wire.get("deleted") else canonical(wire["value"])
            model.merge(wire["key"], wire["ts"], value)
        assert model.state() == expected, "the pure-Python model"


# --- entries ----------------------------------------------------------------------------


def single_entry_frame(entry: str) -> str:
    """An ``ops`` frame (id 1) holding one entry's text as it is."""
    return '{"type":"ops","id":1,"ops":[' + entry + "]}"


@pytest.mark.parametrize("case", cases(ENTRIES, "valid"))
def test_valid_entries(case: dict[str, Any]) -> None:
    text = field(case, "entry")
    doc = Document()
    result = doc.apply_frame(single_entry_frame(text))
    assert (result.id, result.applied, result.ignored, result.seq) == (1, 1, 0, 1)
    expected = None if case["value_canonical"] is None else field(case, "value_canonical")
    (entry,) = doc.changes_since(0)
    assert entry.value_json == expected
    assert entry.deleted == (expected is None)
    # The same entry given as a Python mapping.
    mapping = strict_loads(text)
    other = Document()
    assert other.merge_entries([mapping]).applied == 1
    assert [e.value_json for e in other.changes_since(0)] == [expected]


@pytest.mark.parametrize("case", cases(ENTRIES, "invalid"))
def test_invalid_entries(case: dict[str, Any]) -> None:
    text = field(case, "entry")
    expected: tuple[str, int | None, int | None]
    try:
        mapping = strict_loads(text)
    except ValueError:
        # The binding parses entries only inside a frame, and a frame holding text that
        # is not JSON is not JSON either: the whole frame is bad_json.
        mapping, expected = None, ("bad_json", None, None)
    else:
        expected = (case["code"], 0, 1)
    doc = Document()
    with pytest.raises(CrdtError) as caught:
        doc.apply_frame(single_entry_frame(text))
    error = caught.value
    assert (error.code, error.entry, error.id) == expected
    if mapping is not None and not repeats_a_field(text):
        # The same entry as a Python object; a repeated field would be lost in json.loads.
        with pytest.raises(CrdtError) as caught:
            doc.merge_entries([mapping])
        error = caught.value
        assert (error.code, error.entry, error.id) == (case["code"], 0, None)
    assert (doc.seq, len(doc), doc.tombstone_count) == (0, 0, 0)


# --- frames -----------------------------------------------------------------------------


def apply(doc: Document, case: dict[str, Any]) -> Any:
    """Apply a case's frame, with the server clock when the case gives one."""
    text = field(case, "frame")
    if "now_ms" in case:
        return doc.apply_frame(text, now_ms=case["now_ms"], max_skew_ms=60_000)
    return doc.apply_frame(text)


@pytest.mark.parametrize("case", cases(FRAMES, "valid"))
def test_valid_frames(case: dict[str, Any]) -> None:
    doc = Document()
    result = apply(doc, case)
    assert (result.id, result.applied, result.ignored) == (
        case["id"],
        case["applied"],
        case["ignored"],
    )
    assert result.seq == doc.seq == case["applied"]
    assert json.loads(result.ack()) == {
        "type": "ack",
        "id": case["id"],
        "seq": case["applied"],
        "applied": case["applied"],
        "ignored": case["ignored"],
    }


@pytest.mark.parametrize("case", cases(FRAMES, "invalid"))
def test_invalid_frames(case: dict[str, Any]) -> None:
    doc = Document()
    with pytest.raises(CrdtError) as caught:
        apply(doc, case)
    error = caught.value
    assert (error.code, error.id, error.entry) == (case["code"], case["id"], case["entry"])
    assert (doc.seq, len(doc), doc.tombstone_count) == (0, 0, 0), "nothing applied"
