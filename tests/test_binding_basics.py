"""The Python binding's basic operations, as the original project's tests named them."""

from __future__ import annotations

import pytest

from syncd.crdt import CrdtError, Document


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
