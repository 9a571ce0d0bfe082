"""The binding rejects bad input with ``CrdtError`` and the contract's code, and nothing else.

Malformed timestamps, entries (missing or ill-typed fields, non-finite numbers, unpaired
surrogates, non-string object keys, huge integers, deep nesting, non-JSON types) and
frames (random text, random JSON, valid ``ops`` frames with random mutations) must
raise :class:`syncd.errors.CrdtError` — never a ``pyo3_runtime.PanicException`` or any
other type — with the code of contract §6, the offending entry's index and the
message's ``id``; and a rejected call must leave the document exactly as it was.

Each case's expected outcome comes from a small Python validator of the contract
written here, so a case that should be accepted is checked too, against the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from crdt_strategies import (
    BASE_WALL,
    any_json_values,
    doc_state,
    frame_text,
    merge_wire,
    mutated,
    small_json_values,
    timestamps,
    ts_of,
    wire_entries,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from model import MAX_KEY_BYTES, TS_PATTERN, LwwModel, canonical, is_valid_ts

from syncd.crdt import (
    MAX_ID,
    Clock,
    CrdtError,
    Document,
    canonical_json,
    canonicalize_json,
    format_timestamp,
    parse_timestamp,
)

MAX_DEPTH = 128
"""Values nested deeper than this are refused; the tests stay clear of the boundary."""

LIMIT = 64
"""``max_value_bytes`` of the documents under test, small so that ``too_large`` is common."""

MAX_OPS = 4
"""``max_ops`` of the documents under test."""

GOOD_TS = ts_of(BASE_WALL, 0, "n1")
LATE_TS = ts_of(BASE_WALL + 10, 0, "n1")
"""Later than every generated timestamp: an entry with it always wins."""


def raw(**fields: str) -> str:
    """A JSON object from the JSON *text* of each field's value, written as given."""
    return "{" + ",".join(f"{json.dumps(name)}:{text}" for name, text in fields.items()) + "}"


def ops_frame(*ops: str, frame_id: str = "7") -> str:
    """An ``ops`` frame from the JSON text of its id and entries."""
    return raw(type='"ops"', id=frame_id, ops="[" + ",".join(ops) + "]")


GOOD = raw(key='"new"', ts=json.dumps(LATE_TS), value="1")
"""A valid entry's JSON text."""
Q_GOOD_TS = json.dumps(GOOD_TS)
Q_LATE_TS = json.dumps(LATE_TS)


# --- helpers ----------------------------------------------------------------------------


def rejects(call: Callable[[], object]) -> CrdtError:
    """Call ``call``; it must raise exactly ``CrdtError`` (a panic is a ``BaseException``)."""
    try:
        call()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        if type(error) is not CrdtError:
            raise AssertionError(
                f"expected CrdtError, got {type(error).__module__}."
                f"{type(error).__qualname__}: {error}"
            ) from error
        assert isinstance(error, ValueError)
        assert isinstance(error.args[0], str) and error.args[0]
        return error
    raise AssertionError("expected CrdtError, nothing was raised")


Snapshot = tuple[int, str, int, int, dict[str, tuple[str, str | None]]]


def snapshot(doc: Document) -> Snapshot:
    """Everything a rejected call must leave as it was."""
    text = json.dumps(doc.to_dict(), sort_keys=True)
    return (doc.seq, text, doc.tombstone_count, len(doc), doc_state(doc))


def seeded() -> tuple[Document, LwwModel]:
    """A document with a few live keys and a tombstone, and its model."""
    doc = Document(max_value_bytes=LIMIT, max_ops=MAX_OPS)
    model = LwwModel()
    seed: list[dict[str, Any]] = [
        {"key": "a", "ts": GOOD_TS, "value": {"x": [1, "é"]}},
        {"key": "b", "ts": GOOD_TS, "value": "two"},
        {"key": "é", "ts": GOOD_TS, "deleted": True},
    ]
    doc.merge_entries(seed)
    for entry in seed:
        merge_wire(model, entry)
    return doc, model


def nest(depth: int) -> Any:
    """``depth`` arrays, one inside the other, around ``1``."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: object) -> int:
    """How deep the deepest part of ``value`` lies (the value itself at 0), iteratively."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, Mapping):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return deepest


# --- the contract, as a validator -------------------------------------------------------


def value_problem(value: object, limit: int) -> str | None:
    """The code for a value the contract refuses, or ``None`` if it is acceptable."""
    if depth_of(value) > MAX_DEPTH:
        return "bad_message"
    try:
        text = canonical(value)
    except ValueError:
        return "bad_message"
    return "too_large" if len(text.encode()) > limit else None


def key_problem(key: object) -> str | None:
    """The code for a key the contract refuses, or ``None``."""
    if not isinstance(key, str) or not key:
        return "bad_message"
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        return "bad_message"
    return "too_large" if size > MAX_KEY_BYTES else None


def ts_problem(ts: object) -> str | None:
    """The code for a timestamp the contract refuses, or ``None``."""
    return None if isinstance(ts, str) and is_valid_ts(ts) else "bad_message"


ENTRY_FIELDS = frozenset({"key", "ts", "value", "deleted"})
FRAME_FIELDS = frozenset({"type", "id", "ops"})


class JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers which fields it repeats."""

    repeated: frozenset[str] = frozenset()


def entry_problems(entry: object, limit: int) -> list[str]:
    """Every code that a wire-form entry deserves (empty if it is valid)."""
    if not isinstance(entry, Mapping):
        return ["bad_message"]
    if isinstance(entry, JsonObject) and entry.repeated & ENTRY_FIELDS:
        return ["bad_message"]
    found: list[str | None] = [
        key_problem(entry["key"]) if "key" in entry else "bad_message",
        ts_problem(entry["ts"]) if "ts" in entry else "bad_message",
    ]
    if ("value" in entry) == ("deleted" in entry):
        found.append("bad_message")
    elif "deleted" in entry:
        found.append(None if entry["deleted"] is True else "bad_message")
    else:
        found.append(value_problem(entry["value"], limit))
    return [code for code in found if code is not None]


@dataclass(frozen=True)
class Skew:
    """The server's clock for ``apply_frame``."""

    now_ms: int
    max_skew_ms: int


Problem = tuple[str, int | None]
"""A code, and the index of the entry it is about (``None`` for the frame itself)."""


def frame_problems(frame: object, skew: Skew | None) -> list[Problem]:
    """Every code that a parsed ``ops`` frame deserves (empty if it is valid)."""
    if not isinstance(frame, dict) or repeats_frame_fields(frame):
        return [("bad_message", None)]
    found: list[Problem] = []
    if frame.get("type") != "ops":
        found.append(("bad_message", None))
    if echo_id(frame) is None:
        found.append(("bad_message", None))
    ops = frame.get("ops")
    if not isinstance(ops, list) or not ops:
        found.append(("bad_message", None))
        return found
    if len(ops) > MAX_OPS:
        found.append(("too_large", None))
    for i, entry in enumerate(ops):
        found.extend((code, i) for code in entry_problems(entry, LIMIT))
        if (
            skew is not None
            and isinstance(entry, dict)
            and ts_problem(entry.get("ts")) is None
            and int(entry["ts"][:13]) > skew.now_ms + skew.max_skew_ms
        ):
            found.append(("clock_skew", i))
    return found


def repeats_frame_fields(frame: object) -> bool:
    """Whether ``frame`` repeats one of its own fields, which makes it no ``ops`` frame."""
    return isinstance(frame, JsonObject) and bool(frame.repeated & FRAME_FIELDS)


def echo_id(frame: object) -> int | None:
    """The id an error about ``frame`` must echo: its ``id`` if that is a valid one."""
    if not isinstance(frame, dict) or repeats_frame_fields(frame):
        return None
    frame_id = frame.get("id")
    if type(frame_id) is int and 0 <= frame_id <= MAX_ID:
        return frame_id
    return None


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> JsonObject:
    # Like serde_json's maps (and Python's dicts), the last of repeated fields wins.
    obj = JsonObject(pairs)
    if len(obj) < len(pairs):
        names = [name for name, _ in pairs]
        obj.repeated = frozenset(name for name in names if names.count(name) > 1)
    return obj


def parse_frame(text: str) -> object:
    """``text`` parsed as strict JSON (no NaN or Infinity); ``ValueError`` if it is not."""
    return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_object)


def parsers_may_disagree(frame: object) -> bool:
    """Whether ``frame`` is JSON to Python but maybe not to serde_json, at the top level.

    A bare number that overflows a double, or a bare string with an unpaired surrogate,
    is neither an object nor clearly "not JSON": either code is a fair answer.
    """
    if isinstance(frame, float):
        return not math.isfinite(frame)
    if isinstance(frame, str):
        return key_problem(frame) == "bad_message"
    return False


def check_frame(doc: Document, model: LwwModel, text: str, skew: Skew | None) -> None:
    """Apply ``text`` and check the outcome against the validator and the model."""
    kwargs: dict[str, int] = {}
    if skew is not None:
        kwargs = {"now_ms": skew.now_ms, "max_skew_ms": skew.max_skew_ms}
    before = snapshot(doc)
    try:
        frame = parse_frame(text)
    except (ValueError, RecursionError):
        error = rejects(lambda: doc.apply_frame(text, **kwargs))
        assert (error.code, error.entry, error.id) == ("bad_json", None, None)
        assert snapshot(doc) == before
        return
    if parsers_may_disagree(frame):
        error = rejects(lambda: doc.apply_frame(text, **kwargs))
        assert error.code in ("bad_json", "bad_message")
        assert snapshot(doc) == before
        return
    problems = frame_problems(frame, skew)
    if not problems:
        assert isinstance(frame, dict)
        result = doc.apply_frame(text, **kwargs)
        wins = [merge_wire(model, entry) for entry in frame["ops"]]
        assert (result.id, result.applied, result.ignored, result.seq) == (
            frame["id"],
            sum(wins),
            len(wins) - sum(wins),
            model.seq,
        )
        assert doc_state(doc) == model.state()
        return
    error = rejects(lambda: doc.apply_frame(text, **kwargs))
    assert (error.code, error.entry) in problems, f"{error!r} is none of {problems}"
    if len(problems) == 1:
        assert (error.code, error.entry) == problems[0]
    assert error.id == echo_id(frame)
    assert snapshot(doc) == before, "a rejected frame must apply nothing"


# --- strategies -------------------------------------------------------------------------


class Opaque:
    """An object that is no JSON value."""


non_json_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, -(10**400)]),
    st.sampled_from(["\ud800", "a\udfff", "\udc00\ud800", "😀\ud83d"]),
    st.sampled_from([{1: 2}, {None: "x"}, {("a",): 1}, {b"k": 1}, {"\ud800": 1}]),
    st.sampled_from([{1, 2}, frozenset(), b"x", bytearray(b"x"), 1 + 2j, Decimal("1.5")]),
    st.builds(Opaque),
    st.sampled_from([MAX_DEPTH + 1, 200, 1000]).map(nest),
)

messy_values: st.SearchStrategy[Any] = st.one_of(
    small_json_values,
    any_json_values,
    st.text(min_size=LIMIT - 4, max_size=LIMIT + 2),  # around the value limit
    st.sampled_from(["x", "é", "😀"]).flatmap(  # canonical text of LIMIT - 3 to LIMIT + 1 bytes
        lambda c: st.sampled_from(
            [c * n for n in range(1, LIMIT) if LIMIT - 3 <= 2 + n * len(c.encode()) <= LIMIT + 1]
        )
    ),
    st.integers(min_value=2**63 - 5, max_value=2**70),  # beyond i64 and u64, still doubles
    st.tuples(small_json_values, small_json_values),  # a tuple is an array
    non_json_values,
    st.lists(non_json_values, min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=2), non_json_values, min_size=1, max_size=1),
)

messy_keys: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["a", "b", "é", "new"]),
    st.text(max_size=4),
    st.sampled_from(["k" * 1024, "k" * 1025, "é" * 512, "é" * 513, "😀" * 256, "😀" * 257]),
    st.sampled_from(["\ud800", "k\udc00", ""]),
    st.sampled_from([None, 1, 1.5, True, b"k", ["k"]]),
)

malformed_ts_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789-_azAZ é\u0661\uff10\n\x00:+.", min_size=18, max_size=30),
)
"""Strings that are rarely timestamps; the tests decide validity with the contract's regex."""

valid_ts_text = st.from_regex(TS_PATTERN, fullmatch=True)

timestamp_candidates = st.one_of(
    malformed_ts_text, valid_ts_text, mutated(valid_ts_text), mutated(timestamps)
)

ts_fields = st.one_of(
    timestamps,
    timestamp_candidates,
    st.sampled_from([None, 1764028800123, b"1764028800123-00000-a", "\ud800"]),
)
"""What an entry's ``ts`` may hold."""


@st.composite
def messy_entries(draw: st.DrawFn) -> Any:
    """A mapping with any subset of an entry's fields, each well- or ill-formed, or no mapping."""
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from([None, [], "entry", 3, ["key", "ts"]]))
    entry: dict[str, Any] = {}
    if draw(st.integers(0, 7)):
        entry["key"] = draw(messy_keys)
    if draw(st.integers(0, 7)):
        entry["ts"] = draw(ts_fields)
    shape = draw(st.sampled_from(["value", "value", "value", "deleted", "both", "neither"]))
    if shape in ("value", "both"):
        entry["value"] = draw(messy_values)
    if shape in ("deleted", "both"):
        entry["deleted"] = draw(st.sampled_from([True, True, False, 1, None, "true"]))
    if draw(st.booleans()):
        entry[draw(st.sampled_from(["seq", "x", "origin"]))] = draw(small_json_values)
    return entry


late_valid_entries = st.builds(
    lambda key, value: {"key": key, "ts": LATE_TS, "value": value},
    st.sampled_from(["a", "b", "é", "new"]),
    small_json_values,
)
"""Valid entries that always win: merged by mistake, they would change the document."""


# --- timestamps -------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(ts=timestamp_candidates)
def test_timestamps_are_parsed_exactly_when_they_match_the_contract(ts: str) -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    clock = Clock("me")
    clock.observe(GOOD_TS)
    if is_valid_ts(ts):
        wall, counter, node = parse_timestamp(ts)
        assert (f"{wall:013d}", f"{counter:05d}", node) == (ts[:13], ts[14:19], ts[20:])
        assert format_timestamp(wall, counter, node) == ts
        return
    for call in (
        lambda: parse_timestamp(ts),
        lambda: doc.set("a", 1, ts),
        lambda: doc.remove("a", ts),
        lambda: clock.observe(ts),
        lambda: doc.purge_tombstones(ts),
    ):
        assert rejects(call).code == "bad_message"
    error = rejects(
        lambda: doc.merge_entries(
            [{"key": "new", "ts": LATE_TS, "value": 1}] * 2 + [{"key": "k", "ts": ts, "value": 1}]
        )
    )
    assert (error.code, error.entry, error.id) == ("bad_message", 2, None)
    assert snapshot(doc) == before
    assert clock.last == (BASE_WALL, 0)


@pytest.mark.parametrize(
    "ts",
    [
        "",
        "1764028800123-00000-",
        "176402880012-00000-node",
        "17640288001234-00000-node",
        "1764028800123-0000-node",
        "1764028800123_00000-node",
        "1764028800123-00000_node",
        "1764028800123-00000-no de",
        "1764028800123-00000-node\n",
        " 1764028800123-00000-node",
        "\u0661764028800123-00000-node",  # an Arabic-Indic digit one
        "\uff11764028800123-00000-node",  # a fullwidth digit one
        "1764028800123-00000-" + "n" * 65,
        "1764028800123-00000-nodé",
        "-764028800123-00000-node",
        "+764028800123-00000-node",
    ],
)
def test_malformed_timestamps_are_bad_message(ts: str) -> None:
    assert not is_valid_ts(ts)
    assert rejects(lambda: parse_timestamp(ts)).code == "bad_message"
    assert rejects(lambda: Document().set("k", 1, ts)).code == "bad_message"


# --- entries ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    prefix=st.lists(late_valid_entries, max_size=2),
    entries=st.lists(messy_entries(), min_size=1, max_size=3),
)
def test_merge_entries_accepts_exactly_the_valid_batches(
    prefix: list[dict[str, Any]], entries: list[Any]
) -> None:
    doc, model = seeded()
    before = snapshot(doc)
    batch = prefix + entries
    problems = [entry_problems(entry, LIMIT) for entry in batch]
    if not any(problems):
        result = doc.merge_entries(batch)
        wins = [merge_wire(model, entry) for entry in batch]
        assert (result.applied, result.ignored, result.seq) == (
            sum(wins),
            len(wins) - sum(wins),
            model.seq,
        )
        assert doc_state(doc) == model.state()
        return
    error = rejects(lambda: doc.merge_entries(batch))
    assert error.entry is not None and error.id is None
    assert error.code in problems[error.entry], f"{error!r}: {batch[error.entry]!r}"
    invalid = [i for i, found in enumerate(problems) if found]
    assert error.entry == invalid[0], "validation runs in order and stops at the first"
    assert snapshot(doc) == before, "a rejected batch must apply nothing"


def _encodable(text: object) -> bool:
    """A ``str`` that UTF-8 can encode (a wrong type is a ``TypeError``, tested apart)."""
    if not isinstance(text, str):
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(
    key=messy_keys.filter(_encodable),
    value=messy_values,
    ts=ts_fields.filter(_encodable),
)
def test_set_and_remove_accept_exactly_the_valid_writes(key: str, value: Any, ts: str) -> None:
    # Unpaired surrogates in str arguments: see test_unpaired_surrogates_in_str_arguments.
    doc, model = seeded()
    before = snapshot(doc)
    write_problems = [p for p in (key_problem(key), ts_problem(ts)) if p is not None]
    set_problems = [*write_problems, *filter(None, [value_problem(value, LIMIT)])]
    if set_problems:
        assert rejects(lambda: doc.set(key, value, ts)).code in set_problems
        assert snapshot(doc) == before
    else:
        assert doc.set(key, value, ts) == model.merge(key, ts, canonical(value))
    if write_problems:
        assert rejects(lambda: doc.remove(key, ts)).code in write_problems
    else:
        assert doc.remove(key, ts) == model.merge(key, ts, None)
    assert doc_state(doc) == model.state()


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(non_json_values, st.lists(non_json_values, min_size=1, max_size=2)))
def test_values_json_cannot_carry_are_bad_message(value: Any) -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    assert rejects(lambda: canonical_json(value)).code == "bad_message"
    assert rejects(lambda: doc.set("a", value, LATE_TS)).code == "bad_message"
    error = rejects(lambda: doc.merge_entries([{"key": "b", "ts": LATE_TS, "value": value}]))
    assert (error.code, error.entry) == ("bad_message", 0)
    assert snapshot(doc) == before


def test_wrong_python_types_for_typed_arguments_are_type_errors() -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    with pytest.raises(TypeError):
        doc.set(1, 1, GOOD_TS)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        doc.set("k", 1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        doc.apply_frame(b'{"type":"ops"}')  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        doc.merge_entries(None)  # type: ignore[arg-type]
    assert snapshot(doc) == before


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("k" * MAX_KEY_BYTES, None),
        ("é" * (MAX_KEY_BYTES // 2), None),
        ("😀" * (MAX_KEY_BYTES // 4), None),
        ("k" * (MAX_KEY_BYTES + 1), "too_large"),
        ("é" * (MAX_KEY_BYTES // 2) + "k", "too_large"),
        ("😀" * (MAX_KEY_BYTES // 4 + 1), "too_large"),
        ("", "bad_message"),
    ],
)
def test_key_limit_counts_utf8_bytes(key: str, code: str | None) -> None:
    doc = Document()
    entry = {"key": key, "ts": GOOD_TS, "value": 1}
    frame = frame_text(9, [entry])
    if code is None:
        assert doc.set(key, 1, GOOD_TS)
        assert doc.merge_entries([entry]).ignored == 1
        assert Document().apply_frame(frame).applied == 1
        assert doc[key] == 1
        return
    assert rejects(lambda: doc.set(key, 1, GOOD_TS)).code == code
    assert rejects(lambda: doc.remove(key, GOOD_TS)).code == code
    error = rejects(lambda: doc.merge_entries([entry]))
    assert (error.code, error.entry) == (code, 0)
    error = rejects(lambda: doc.apply_frame(frame))
    assert (error.code, error.entry, error.id) == (code, 0, 9)
    assert doc.seq == 0


def test_value_limit_applies_to_the_canonical_text_in_utf8_bytes() -> None:
    doc = Document(max_value_bytes=8)
    assert doc.set("fits", "123456", GOOD_TS), '"123456" is 8 bytes'
    assert doc.set("fits2", "é" * 3, GOOD_TS), '"ééé" is 8 bytes'
    assert rejects(lambda: doc.set("big", "1234567", GOOD_TS)).code == "too_large"
    assert rejects(lambda: doc.set("big", "é" * 4, GOOD_TS)).code == "too_large"
    # [1, 2, 3] is 9 bytes as written but [1,2,3] (7) canonically: it fits.
    text = ops_frame(raw(key='"arr"', ts=Q_GOOD_TS, value="[1, 2, 3]"), frame_id="1")
    assert doc.apply_frame(text).applied == 1
    assert doc.entry("arr") is not None
    big = ops_frame(raw(key='"arr"', ts=Q_LATE_TS, value="[1,2,3,4]"), frame_id="2")
    error = rejects(lambda: doc.apply_frame(big))
    assert (error.code, error.entry, error.id) == ("too_large", 0, 2)
    assert doc["arr"] == [1, 2, 3]


def test_values_nested_deeper_than_the_limit_are_bad_message() -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    for depth in (MAX_DEPTH + 1, MAX_DEPTH + 2, 1000, 10_000):
        value = nest(depth)
        assert rejects(partial(canonical_json, value)).code == "bad_message"
        assert rejects(partial(doc.set, "a", value, LATE_TS)).code == "bad_message"
        entries = [{"key": "a", "ts": LATE_TS, "value": value}]
        error = rejects(partial(doc.merge_entries, entries))
        assert (error.code, error.entry) == ("bad_message", 0)
        deep = "[" * depth + "1" + "]" * depth
        text = ops_frame(raw(key='"a"', ts=Q_LATE_TS, value=deep), frame_id="4")
        error = rejects(partial(doc.apply_frame, text))
        assert (error.code, error.entry, error.id) == ("bad_message", 0, 4)
        assert rejects(partial(canonicalize_json, deep)).code == "bad_message"
    assert snapshot(doc) == before


def test_every_value_the_document_accepts_can_be_read_back() -> None:
    for depth in range(MAX_DEPTH - 3, MAX_DEPTH + 3):
        doc = Document()
        value = nest(depth)
        try:
            doc.set("deep", value, GOOD_TS)
        except CrdtError:
            continue  # refusing it is fine; accepting it and failing to read it is not
        assert doc["deep"] == value, depth
        assert doc.to_dict() == {"deep": value}
        assert [e.value for e in doc.changes_since(0)] == [value]


# --- unpaired surrogates in str arguments -----------------------------------------------

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda d: d.set(SURROGATE, 1, GOOD_TS), id="set-key"),
        pytest.param(lambda d: d.set("k", 1, GOOD_TS[:-1] + SURROGATE), id="set-ts"),
        pytest.param(lambda d: d.remove(SURROGATE, GOOD_TS), id="remove-key"),
        pytest.param(lambda d: parse_timestamp(SURROGATE), id="parse_timestamp"),
        pytest.param(lambda d: d.apply_frame(SURROGATE), id="apply_frame"),
        pytest.param(lambda d: canonicalize_json(f'"{SURROGATE}"'), id="canonicalize_json"),
        pytest.param(lambda d: Clock(SURROGATE), id="Clock"),
        pytest.param(lambda d: d.purge_tombstones(SURROGATE), id="purge_tombstones"),
    ],
)
def test_unpaired_surrogates_in_str_arguments(call: Callable[[Document], object]) -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    assert rejects(lambda: call(doc)).code == "bad_message"
    assert snapshot(doc) == before


def test_looking_up_an_unpaired_surrogate_is_a_missing_key() -> None:
    doc, _ = seeded()
    assert SURROGATE not in doc
    assert doc.get(SURROGATE) is None
    assert doc.entry(SURROGATE) is None
    with pytest.raises(KeyError):
        doc[SURROGATE]


def test_unpaired_surrogates_in_entries_and_values_are_bad_message() -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    entries: list[dict[str, Any]] = [
        {"key": SURROGATE, "ts": GOOD_TS, "value": 1},
        {"key": "k", "ts": SURROGATE, "value": 1},
        {"key": "k", "ts": GOOD_TS, "value": [SURROGATE]},
        {"key": "k", "ts": GOOD_TS, "value": {SURROGATE: 1}},
    ]
    for entry in entries:
        error = rejects(partial(doc.merge_entries, [entry]))
        assert (error.code, error.entry) == ("bad_message", 0)
    assert rejects(lambda: doc.set("k", "x" + SURROGATE, GOOD_TS)).code == "bad_message"
    for escaped in (r'"\ud800"', r'"\udc00x"', r'"\ud83d\u0041"'):
        assert rejects(partial(canonicalize_json, escaped)).code == "bad_message"
        for field in ("key", "value"):
            fields = {"key": '"k"', "ts": Q_LATE_TS, "value": "1"} | {field: escaped}
            text = ops_frame(raw(**fields), frame_id="3")
            error = rejects(partial(doc.apply_frame, text))
            assert (error.code, error.entry, error.id) == ("bad_message", 0, 3)
    assert snapshot(doc) == before


# --- frames -----------------------------------------------------------------------------

skews = st.none() | st.builds(
    Skew, st.integers(BASE_WALL - 5, BASE_WALL + 12), st.sampled_from([0, 1, 5])
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.text(alphabet='{}[]":,0123456789 aeopstuy')))
def test_random_text_is_rejected_as_bad_json_or_bad_message(text: str) -> None:
    doc, model = seeded()
    check_frame(doc, model, text, None)


@settings(max_examples=300, deadline=None)
@given(value=any_json_values)
def test_random_json_is_rejected_as_bad_message(value: Any) -> None:
    doc, model = seeded()
    text = json.dumps(value)
    if isinstance(value, dict):
        # Exact, unless a random object happens to look like an ops frame.
        check_frame(doc, model, text, None)
        return
    before = snapshot(doc)
    error = rejects(lambda: doc.apply_frame(text))
    assert error.code == "bad_message"
    assert (error.entry, error.id) == (None, None)
    assert snapshot(doc) == before


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1 2", "bad_json"),
        ('"x" junk', "bad_json"),
        ("0:", "bad_json"),
        ('null {"type":"ops"}', "bad_json"),
        ("[null,null,null,null]", "bad_message"),
        ("[1,2,3,4,5]", "bad_message"),
    ],
)
def test_text_that_is_no_object_gets_the_contract_code(text: str, code: str) -> None:
    assert rejects(lambda: Document().apply_frame(text)).code == code


def _json_safe(entry: Any) -> bool:
    try:
        json.dumps(entry, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return False
    return True


json_messy_entries = messy_entries().filter(_json_safe)
"""Ill-formed entries that JSON can still write (no NaN, no sets, no surrogates)."""


@st.composite
def random_frames(draw: st.DrawFn) -> dict[str, Any]:
    """An ``ops`` frame, mostly well-formed, sometimes with one frame field missing or wrong.

    Its entries are a mix of valid ones and ``messy_entries``, and there may be one more
    than ``max_ops`` of them.
    """
    frame: dict[str, Any] = {
        "type": "ops",
        "id": draw(st.integers(0, MAX_ID)),
        "ops": draw(
            st.lists(
                st.one_of(late_valid_entries, wire_entries(), json_messy_entries),
                min_size=1,
                max_size=MAX_OPS + 1,
            )
        ),
    }
    flaw = draw(st.sampled_from([None, None, None, None, "type", "id", "ops"]))
    if flaw is not None and draw(st.integers(0, 3)) == 0:
        del frame[flaw]
    elif flaw == "type":
        frame["type"] = draw(st.sampled_from(["ack", "OPS", "ops ", 1, None, ["ops"]]))
    elif flaw == "id":
        frame["id"] = draw(st.sampled_from([MAX_ID + 1, -1, 2**64, 1.5, 1.0, "7", True, None, [1]]))
    elif flaw == "ops":
        frame["ops"] = draw(st.sampled_from([[], {}, "ops", None, 1, {"key": "a"}]))
    if draw(st.booleans()):
        frame[draw(st.sampled_from(["x", "origin", "seq"]))] = draw(small_json_values)
    return frame


@settings(max_examples=500, deadline=None)
@given(frame=random_frames(), skew=skews, ascii_only=st.booleans())
def test_random_frames_are_judged_by_the_contract(
    frame: dict[str, Any], skew: Skew | None, ascii_only: bool
) -> None:
    doc, model = seeded()
    text = json.dumps(frame, ensure_ascii=ascii_only)
    if not _encodable(text):
        text = json.dumps(frame)  # an unpaired surrogate travels escaped, as on the wire
    check_frame(doc, model, text, skew)


valid_frame_texts = st.builds(
    lambda frame_id, ops, ascii_only: json.dumps(
        {"type": "ops", "id": frame_id, "ops": ops}, ensure_ascii=ascii_only
    ),
    st.integers(1, MAX_ID),
    st.lists(st.one_of(late_valid_entries, wire_entries()), min_size=1, max_size=MAX_OPS),
    st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(text=mutated(valid_frame_texts, most=2), skew=skews)
def test_mutated_frames_are_judged_by_the_contract(text: str, skew: Skew | None) -> None:
    doc, model = seeded()
    check_frame(doc, model, text, skew)


@pytest.mark.parametrize(
    ("text", "code", "entry", "frame_id"),
    [
        ("", "bad_json", None, None),
        ("{", "bad_json", None, None),
        ("ops", "bad_json", None, None),
        ("{} {}", "bad_json", None, None),
        ("\ufeff" + ops_frame(GOOD), "bad_json", None, None),
        (ops_frame(GOOD)[:-1], "bad_json", None, None),
        (ops_frame(raw(key='"k"', ts=Q_LATE_TS, value="NaN")), "bad_json", None, None),
        ("[]", "bad_message", None, None),
        ('"ops"', "bad_message", None, None),
        ("null", "bad_message", None, None),
        ("{}", "bad_message", None, None),
        (raw(type='"ack"', id="5", ops=f"[{GOOD}]"), "bad_message", None, 5),
        (raw(id="5", ops=f"[{GOOD}]"), "bad_message", None, 5),
        (raw(type='"ops"', ops=f"[{GOOD}]"), "bad_message", None, None),
        ('{"type":"ops","id":5}', "bad_message", None, 5),
        ('{"type":"ops","id":5,"ops":{}}', "bad_message", None, 5),
        ('{"type":"ops","id":5,"ops":[]}', "bad_message", None, 5),
        (ops_frame(GOOD, frame_id="-1"), "bad_message", None, None),
        (ops_frame(GOOD, frame_id=str(MAX_ID + 1)), "bad_message", None, None),
        (ops_frame(GOOD, frame_id="1.5"), "bad_message", None, None),
        (ops_frame(GOOD, frame_id='"7"'), "bad_message", None, None),
        (ops_frame(GOOD, frame_id="true"), "bad_message", None, None),
        (ops_frame(GOOD, frame_id="null"), "bad_message", None, None),
        (ops_frame(GOOD, GOOD, GOOD, GOOD, GOOD), "too_large", None, 7),
        (ops_frame(GOOD, "1"), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS)), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(ts=Q_GOOD_TS, value="1")), "bad_message", 1, 7),
        (ops_frame(GOOD, '{"key":"k","value":1}'), "bad_message", 1, 7),
        (ops_frame(GOOD, '{"key":"k","ts":"nope","value":1}'), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key="1", ts=Q_GOOD_TS, value="1")), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key='""', ts=Q_GOOD_TS, value="1")), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, deleted="false")), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, deleted="1")), "bad_message", 1, 7),
        (ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, deleted="null")), "bad_message", 1, 7),
        (
            ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, value="1", deleted="true")),
            "bad_message",
            1,
            7,
        ),
        (ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, value="1e400")), "bad_message", 1, 7),
        (
            ops_frame(GOOD, raw(key=json.dumps("k" * 1025), ts=Q_GOOD_TS, value="1")),
            "too_large",
            1,
            7,
        ),
        (
            ops_frame(GOOD, raw(key='"k"', ts=Q_GOOD_TS, value=json.dumps("x" * LIMIT))),
            "too_large",
            1,
            7,
        ),
    ],
)
def test_frame_errors_carry_the_contract_code_entry_and_id(
    text: str, code: str, entry: int | None, frame_id: int | None
) -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    error = rejects(lambda: doc.apply_frame(text))
    assert (error.code, error.entry, error.id) == (code, entry, frame_id)
    if entry is not None:
        assert error.args[0].startswith(f"ops[{entry}]")
    assert snapshot(doc) == before


def test_max_ops_is_inclusive() -> None:
    doc = Document(max_ops=3)
    entries = [{"key": f"k{i}", "ts": GOOD_TS, "value": i} for i in range(4)]
    error = rejects(lambda: doc.apply_frame(frame_text(11, entries)))
    assert (error.code, error.entry, error.id) == ("too_large", None, 11)
    assert doc.seq == 0
    assert doc.apply_frame(frame_text(12, entries[:3])).applied == 3


def test_clock_skew_allows_exactly_max_skew_and_rejects_the_whole_frame() -> None:
    doc, _ = seeded()
    before = snapshot(doc)
    now, skew = BASE_WALL, 60_000
    at_limit = {"key": "new", "ts": ts_of(now + skew, 99_999, "n1"), "value": 1}
    beyond = {"key": "newer", "ts": ts_of(now + skew + 1, 0, "n1"), "value": 2}
    error = rejects(
        lambda: doc.apply_frame(frame_text(21, [at_limit, beyond]), now_ms=now, max_skew_ms=skew)
    )
    assert (error.code, error.entry, error.id) == ("clock_skew", 1, 21)
    assert snapshot(doc) == before
    # Without a server clock there is no skew check.
    assert doc.apply_frame(frame_text(22, [at_limit, beyond])).applied == 2
    fresh, _ = seeded()
    assert fresh.apply_frame(frame_text(23, [at_limit]), now_ms=now, max_skew_ms=skew).applied == 1


def test_a_rejected_frame_after_accepted_ones_leaves_the_head_alone() -> None:
    doc = Document()
    first = doc.apply_frame(frame_text(1, [{"key": "a", "ts": GOOD_TS, "value": 1}]))
    assert (first.applied, first.seq) == (1, 1)
    bad = [{"key": "b", "ts": LATE_TS, "value": 2}, {"key": "c", "ts": "x", "value": 3}]
    error = rejects(lambda: doc.apply_frame(frame_text(2, bad)))
    assert (error.code, error.entry, error.id) == ("bad_message", 1, 2)
    again = doc.apply_frame(frame_text(3, [{"key": "a", "ts": GOOD_TS, "value": 1}]))
    assert (again.applied, again.ignored, again.seq) == (0, 1, 1)
    assert json.loads(again.ack())["seq"] == 1
    assert again.broadcast("x") is None
    assert doc.to_dict() == {"a": 1}


def test_the_head_never_goes_backwards_after_a_restore() -> None:
    doc = Document()
    top = 2**64 - 1
    try:
        doc.restore([{"key": "k", "ts": GOOD_TS, "value": 1, "seq": top}], head=top)
        doc.set("j", 1, LATE_TS)
    except CrdtError:
        return  # refusing a head with no room left is fine
    assert doc.seq >= top, f"the head went from {top} to {doc.seq}"
    assert [e.key for e in doc.changes_since(top - 1)] == ["k", "j"]
