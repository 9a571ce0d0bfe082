"""Hypothesis strategies and helpers shared by the binding's tests.

The strategies draw from small domains on purpose: a few keys, a few nodes and a few
wall and counter values, so that generated writes collide on keys and tie on
timestamps, which is where the merge rule has something to decide.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from model import LwwModel, canonical

from syncd.crdt import Document

__all__ = [
    "BASE_WALL",
    "KEYS",
    "NODES",
    "any_json_values",
    "doc_state",
    "frame_text",
    "merge_wire",
    "mutated",
    "same_json",
    "small_json_values",
    "timestamps",
    "ts_of",
    "wire_entries",
]

BASE_WALL = 1_764_028_800_000
"""A wall field near the present: 2025-11-25."""

KEYS = ("a", "b", "é", "😀", "\ue000")
"""A small key space; "😀" and "\\ue000" order differently by UTF-16 than by code point."""

NODES = ("n1", "n2", "z-9")


def ts_of(wall: int, counter: int, node: str) -> str:
    """A timestamp's wire form from its parts."""
    return f"{wall:013d}-{counter:05d}-{node}"


timestamps = st.builds(
    ts_of,
    st.integers(BASE_WALL, BASE_WALL + 2),
    st.integers(0, 2),
    st.sampled_from(NODES),
)
"""Timestamps from a few walls, counters and nodes, so that equal ones are common."""

_small_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from(["", "x", "y", "é", "😀", '"\\\n']),
    st.sampled_from([0.5, -1.5, 1e21, 1e-7, 2.0**60]),
)

small_json_values: st.SearchStrategy[Any] = st.recursive(
    _small_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "é", "😀"]), children, max_size=3)
    ),
    max_leaves=5,
)
"""JSON values from a small domain, so that equal and near-equal values are common."""

any_json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value ``json.dumps`` can write: floats, big integers, any valid text."""


@st.composite
def wire_entries(draw: st.DrawFn, values: st.SearchStrategy[Any] = small_json_values) -> Any:
    """A valid entry in its wire form: ``{"key", "ts", "value"}`` or ``… "deleted": True}``."""
    key = draw(st.sampled_from(KEYS))
    ts = draw(timestamps)
    if draw(st.integers(0, 3)) == 0:
        return {"key": key, "ts": ts, "deleted": True}
    return {"key": key, "ts": ts, "value": draw(values)}


def merge_wire(model: LwwModel, entry: dict[str, Any]) -> bool:
    """Merge a valid wire-form entry into the model."""
    value = None if entry.get("deleted") else canonical(entry["value"])
    return model.merge(entry["key"], entry["ts"], value)


def frame_text(frame_id: int, ops: list[dict[str, Any]]) -> str:
    """An ``ops`` frame as JSON text."""
    return json.dumps({"type": "ops", "id": frame_id, "ops": ops}, ensure_ascii=False)


def doc_state(doc: Document) -> dict[str, tuple[str, str | None]]:
    """What replicas agree on: every key's winning ``(ts, canonical value text)``."""
    return {e.key: (e.ts, e.value_json) for e in doc.changes_since(0)}


def same_json(a: object, b: object) -> bool:
    """Whether two parsed JSON values are equal *and* of the same types.

    Plain ``==`` would take ``True`` for ``1`` and ``1`` for ``1.0``.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


MUTATION_ALPHABET = '{}[]",:0123456789-etfn \\u\n\tazé😀\x00\u0661'


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str], most: int = 3) -> str:
    """``base`` with a few characters deleted, inserted, replaced, or the end cut off."""
    text = draw(base)
    for _ in range(draw(st.integers(1, most))):
        where = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        char = draw(st.sampled_from(MUTATION_ALPHABET))
        if kind == "delete":
            text = text[:where] + text[where + 1 :]
        elif kind == "insert":
            text = text[:where] + char + text[where:]
        elif kind == "replace":
            text = text[:where] + char + text[where + 1 :]
        else:
            text = text[:where]
    return text
