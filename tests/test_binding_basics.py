"""The Python binding's basic operations, as the original project's tests named them."""

from __future__ import annotations

import pytest

from syncd.crdt import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_SKEW_MS,
    DEFAULT_MAX_VALUE_BYTES,
    MAX_KEY_BYTES,
    CrdtError,
    Document,
    check_key,
    check_value,
)


def test_add_then_lookup() -> None:
    doc = Document()
    assert doc.set("title", {"text": "hello"}, "1764028800123-00000-a")
    assert doc["title"] == {"text": "hello"}
    assert doc.seq == 1


def test_remove_after_add_hides_the_key_and_keeps_a_tombstone() -> None:
    doc = Document()
    doc.set("k", 1, "1764028800123-00000-a")
    assert doc.remove("k", "1764028800124-00000-a")
    assert "k" not in doc
    assert doc.tombstone_count == 1
    assert not doc.set("k", 2, "1764028800123-00001-b"), "an older write must not resurrect"


def test_bad_timestamp_raises_the_binding_exception() -> None:
    with pytest.raises(CrdtError) as caught:
        Document().set("k", 1, "yesterday")
    assert caught.value.code == "bad_message"


def test_the_core_states_the_contract_defaults_and_holds_a_new_document_to_them() -> None:
    assert (DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_OPS) == (65_536, 1000)
    assert (DEFAULT_MAX_SKEW_MS, DEFAULT_MAX_FRAME_BYTES) == (60_000, 1 << 20)
    doc = Document()
    assert (doc.max_value_bytes, doc.max_ops) == (DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_OPS)


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        ("", "bad_message", "key must not be empty"),
        ("k" * (MAX_KEY_BYTES + 1), "too_large", "key is 1025 bytes, over the limit of 1024"),
        ("\ud800", "bad_message", "string is not valid Unicode (an unpaired surrogate?)"),
    ],
)
def test_check_key_refuses_what_a_document_refuses(key: str, code: str, message: str) -> None:
    check_key("k" * MAX_KEY_BYTES)
    with pytest.raises(CrdtError) as checked:
        check_key(key)
    assert (checked.value.code, str(checked.value)) == (code, message)
    with pytest.raises(CrdtError) as stored:
        Document().set(key, 1, "1764028800123-00000-a")
    assert (stored.value.code, str(stored.value)) == (code, message)


def test_check_value_returns_the_canonical_text_within_the_limit() -> None:
    assert check_value({"b": 1.0, "a": [True]}) == '{"a":[true],"b":1}'
    assert check_value("x" * 8, max_value_bytes=10) == '"xxxxxxxx"'
    with pytest.raises(CrdtError) as caught:
        check_value("x" * 9, max_value_bytes=10)
    assert (caught.value.code, str(caught.value)) == (
        "too_large",
        "value is 11 bytes of JSON, over the limit of 10",
    )
    with pytest.raises(CrdtError, match="finite"):
        check_value(float("nan"))
    with pytest.raises(CrdtError) as default:
        check_value("x" * DEFAULT_MAX_VALUE_BYTES)
    assert default.value.code == "too_large"
