"""``Document`` is safe to share between threads, and ``apply_frame`` lets go of the GIL.

Several threads write (``apply_frame``, ``merge_entries``, ``set``) and read
(``changes_since``, ``to_dict``) one document at once for a fixed number of rounds; the
document must end where the model ends after merging every entry, each batch must have
taken a contiguous run of seqs of its own, and the head must equal the number of entries
applied. Every wait is bounded, scaled by ``SYNCD_TEST_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from crdt_strategies import doc_state, frame_text, merge_wire, same_json, ts_of
from model import LwwModel, canonical

from syncd.crdt import Document

TIMEOUT_FACTOR = float(os.environ.get("SYNCD_TEST_TIMEOUT_FACTOR", "1"))
JOIN_TIMEOUT = 60.0 * TIMEOUT_FACTOR

THREADS = 4
ROUNDS = 500
KEYS = [f"key-{i}" for i in range(24)]
BASE_WALL = 1_764_028_800_000


@dataclass
class Worker:
    """What one thread did, for checking once every thread is done."""

    index: int
    written: list[dict[str, Any]] = field(default_factory=list)
    """Every entry the thread wrote, whatever its fate."""
    runs: list[tuple[int, int]] = field(default_factory=list)
    """``(first seq, last seq)`` taken by each batch that applied something."""
    applied: int = 0
    errors: list[BaseException] = field(default_factory=list)


def random_entry(rng: random.Random, node: str) -> dict[str, Any]:
    """An entry over a small key space with few walls, so threads collide and tie."""
    ts = ts_of(BASE_WALL + rng.randrange(4), rng.randrange(3), node)
    key = rng.choice(KEYS)
    if rng.random() < 0.2:
        return {"key": key, "ts": ts, "deleted": True}
    return {"key": key, "ts": ts, "value": rng.choice([1, "x", [1, 2], {"n": node}, None])}


def check_changes(doc: Document, since: int) -> None:
    """``changes_since`` is in strictly increasing seq order, all above ``since``."""
    seqs = [e.seq for e in doc.changes_since(since)]
    assert seqs == sorted(set(seqs))
    assert all(since < s for s in seqs)
    assert not seqs or seqs[-1] <= doc.seq


def work(doc: Document, worker: Worker, barrier: threading.Barrier) -> None:
    """One thread's fixed program of writes and reads."""
    rng = random.Random(worker.index)
    # Two nodes shared by every thread, so equal timestamps with different values occur.
    nodes = ["shared-a", "shared-b", f"t{worker.index}"]
    last_seq = 0
    barrier.wait(timeout=JOIN_TIMEOUT)
    for round_ in range(ROUNDS):
        kind = round_ % 4
        if kind == 3:
            entry = random_entry(rng, rng.choice(nodes))
            worker.written.append(entry)
            won = (
                doc.remove(entry["key"], entry["ts"])
                if entry.get("deleted")
                else doc.set(entry["key"], entry["value"], entry["ts"])
            )
            worker.applied += int(won)
            continue
        batch = [random_entry(rng, rng.choice(nodes)) for _ in range(rng.randint(1, 8))]
        worker.written.extend(batch)
        if kind == 2:
            merged = doc.merge_entries(batch)
            applied, seq = merged.applied, merged.seq
            assert merged.applied + merged.ignored == len(batch)
        else:
            result = doc.apply_frame(frame_text(round_, batch))
            applied, seq = result.applied, result.seq
            assert result.id == round_
            assert result.applied + result.ignored == len(batch)
            ops = json.loads(f"[{result.ops_json}]")
            assert len(ops) == result.applied
        assert seq >= last_seq, "one thread sees the head only move forward"
        last_seq = seq
        if applied:
            worker.runs.append((seq - applied + 1, seq))
        worker.applied += applied
        if round_ % 5 == 0:
            check_changes(doc, rng.randrange(max(seq, 1)))
            snapshot = doc.to_dict()
            assert set(snapshot) <= set(KEYS)


def run_threads(target: Callable[[Worker], None], workers: list[Worker]) -> None:
    """Run ``target`` for every worker in its own thread, within a bounded time."""

    def guarded(worker: Worker) -> None:
        try:
            target(worker)
        except BaseException as error:  # reported by the main thread
            worker.errors.append(error)

    threads = [threading.Thread(target=guarded, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    for worker in workers:
        if worker.errors:
            raise worker.errors[0]


def test_concurrent_writers_and_readers_end_where_the_model_does() -> None:
    doc = Document()
    workers = [Worker(i) for i in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    run_threads(lambda w: work(doc, w, barrier), workers)

    model = LwwModel()
    for worker in workers:
        for entry in worker.written:
            merge_wire(model, entry)
    assert doc_state(doc) == model.state()
    assert same_json(doc.to_dict(), model.to_dict())
    assert doc.seq == sum(w.applied for w in workers), "one seq per applied entry, no more"
    runs = sorted(run for w in workers for run in w.runs)
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert end < start, "each batch takes a contiguous run of seqs of its own"
    check_changes(doc, 0)


def test_concurrent_merges_between_documents_converge() -> None:
    docs = [Document() for _ in range(THREADS)]
    batches = [
        [random_entry(random.Random(100 + i), f"n{i % 2}") for _ in range(200)]
        for i in range(THREADS)
    ]
    for doc, batch in zip(docs, batches, strict=True):
        doc.merge_entries(batch)
    barrier = threading.Barrier(THREADS)

    def gossip(worker: Worker) -> None:
        # Each merges every other document into its own, in both directions at once,
        # which would deadlock if merge held both documents' locks.
        barrier.wait(timeout=JOIN_TIMEOUT)
        mine = docs[worker.index]
        for _ in range(3):
            for other in docs:
                mine.merge(other)

    run_threads(gossip, [Worker(i) for i in range(THREADS)])
    for doc in docs:  # one more round makes sure every entry reached everyone
        for other in docs:
            doc.merge(other)
    model = LwwModel()
    for batch in batches:
        for entry in batch:
            model.merge(
                entry["key"],
                entry["ts"],
                None if entry.get("deleted") else canonical(entry["value"]),
            )
    for doc in docs:
        assert doc_state(doc) == model.state()


# --- the GIL ----------------------------------------------------------------------------


@contextmanager
def spinning_counter() -> Iterator[Callable[[], int]]:
    """A pure-Python thread counting while it can hold the GIL; yields a reader.

    The switch interval is raised so far that the interpreter never takes the GIL from a
    running thread: the counter can move only while the reading thread gives the GIL
    up of its own accord (blocking, sleeping, or native code that releases it).
    """
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1
            time.sleep(0.0002)  # lets the main thread take the GIL back

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield lambda: count
    finally:
        stop.set()
        sys.setswitchinterval(old)
        thread.join(timeout=JOIN_TIMEOUT)
    assert not thread.is_alive()


def progress_during(call: Callable[[], object], read: Callable[[], int], tries: int) -> bool:
    """Whether the counter moved during one of ``tries`` calls of ``call``."""
    for _ in range(tries):
        before = read()
        call()
        if read() > before:
            return True
    return False


def test_apply_frame_releases_the_gil() -> None:
    ts = ts_of(BASE_WALL, 0, "n1")
    ops = [{"key": f"k{i}", "ts": ts, "value": "x" * 200} for i in range(20_000)]
    frame = frame_text(1, ops)
    same_size_json = json.dumps({"ops": ops})
    docs = iter([Document(max_ops=len(ops)) for _ in range(20)])
    with spinning_counter() as read:
        # The control: json.loads holds the GIL throughout, so nothing may move. This
        # shows that the harness tells the two cases apart.
        assert not progress_during(lambda: json.loads(same_size_json), read, tries=3)
        # Each try is a fresh document, so every call does the full work.
        assert progress_during(lambda: next(docs).apply_frame(frame), read, tries=20)


# --- the document lock and the GIL ------------------------------------------------------

FINALIZER_DURING_CHANGES_SINCE = textwrap.dedent(
    """
    import gc, threading, time
    from syncd.crdt import Document

    doc = Document()
    for i in range(2000):
        doc.set(f"k{i}", {"a": [i, {"b": "x"}]}, "1764028800000-00000-a")

    class Garbage:
        def __del__(self):
            time.sleep(0.0001)  # gives up the GIL, as any blocking call in a finalizer does

    def reader():
        while True:
            doc.seq

    threading.Thread(target=reader, daemon=True).start()
    gc.set_threshold(50)
    for _ in range(20):
        for _ in range(20):
            cycle = Garbage()
            cycle.itself = cycle  # only the cyclic GC frees it, at any allocation
        del cycle
        doc.changes_since(0)
    print("done")
    """
)


def test_a_finalizer_that_runs_during_changes_since_cannot_deadlock() -> None:
    # In a child process, so that a deadlock costs a timeout rather than the test run.
    done = subprocess.run(
        [sys.executable, "-c", FINALIZER_DURING_CHANGES_SINCE],
        capture_output=True,
        text=True,
        timeout=5 * TIMEOUT_FACTOR,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
