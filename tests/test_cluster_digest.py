"""The document digest that cluster nodes compare (anti-entropy), from the Rust core."""

from __future__ import annotations

import random

from syncd.crdt import Clock, Document


def test_equal_replicas_have_equal_digests_whatever_the_order() -> None:
    clock = Clock("writer")
    writes = [(f"k{i % 7}", i, clock.now()) for i in range(40)]
    shuffled = random.Random(7).sample(writes, len(writes))
    first, second = Document(), Document()
    for key, value, ts in writes:
        first.set(key, value, ts)
    for key, value, ts in shuffled:
        second.set(key, value, ts)
    assert first.to_dict() == second.to_dict()
    assert first.digest == second.digest != 0


def test_a_missing_or_older_entry_changes_the_digest() -> None:
    clock = Clock("writer")
    old, new = clock.now(), clock.now()
    full, behind, empty = Document(), Document(), Document()
    full.set("a", 1, old)
    full.set("a", 2, new)
    behind.set("a", 1, old)
    assert full.digest != behind.digest
    assert empty.digest == 0 != behind.digest


def test_tombstones_count_as_absent_so_purging_them_changes_nothing() -> None:
    clock = Clock("writer")
    doc, never_had_it = Document(), Document()
    doc.set("a", 1, clock.now())
    doc.remove("a", clock.now())
    assert doc.digest == never_had_it.digest == 0
    doc.purge_tombstones(clock.now())
    assert doc.digest == 0


def test_the_digest_survives_a_reload() -> None:
    clock = Clock("writer")
    doc = Document()
    for i in range(10):
        doc.set(f"k{i}", i, clock.now())
    copy = Document()
    copy.restore([{**e.to_wire(), "seq": e.seq} for e in doc.changes_since(0)], head=doc.seq)
    assert copy.digest == doc.digest
