"""The benchmark cases, each timing every subject side by side on the same writes.

- single set and single lookup from Python (per call);
- batch merge of ``batch_entries`` writes given as Python objects;
- one ``ops`` frame of ``frame_entries`` writes, JSON text in, broadcast JSON text out
  (pycrdt: ``Doc.apply_update`` of one update holding the same writes);
- ``changes_since`` for the latest changes (pycrdt: ``Doc.get_update`` from a state vector).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from bench.config import Config
from bench.subjects import PYTHON, SYNCD, PythonSubject, Subject, SyncdSubject, Trial
from bench.timing import Stats, measure
from bench.workload import Workload, Write

__all__ = [
    "CASES",
    "PYTHON_LOADS",
    "SYNCD_FRAMES",
    "SYNCD_VALIDATE",
    "Case",
    "CaseResult",
    "batch_merge",
    "changes_since",
    "frame",
    "single_get",
    "single_set",
]

SYNCD_FRAMES = "syncd entries_frames"
"""The extra column of ``changes_since``: the same changes as ``entries`` frames (JSON text)."""
SYNCD_VALIDATE = "syncd parse + validate only"
"""An extra column of the frame case: syncd rejecting the frame at its last entry."""
PYTHON_LOADS = "json.loads only"
"""An extra column of the frame case: ``json.loads`` of the frame, nothing else."""


@dataclass(frozen=True)
class Case:
    """What a case measures, for the report."""

    key: str
    title: str
    unit: str
    scale: float
    """Multiplier from seconds to ``unit``."""
    what: str


CASES = {
    case.key: case
    for case in (
        Case(
            "set",
            "Single set from Python",
            "µs per call",
            1e6,
            "syncd `Document.set(key, value, ts)`; pure Python `DictLww.set` (validates key "
            "and ts, merges); pycrdt `Map[key] = value` (one implicit transaction each). "
            "Existing keys, newer timestamps.",
        ),
        Case(
            "get",
            "Single lookup from Python",
            "µs per call",
            1e6,
            "syncd `Document.get(key)`; pure Python `DictLww.get`; pycrdt `Map[key]`.",
        ),
        Case(
            "batch",
            "Batch merge",
            "ms per batch",
            1e3,
            "One batch of wire-form entries given as Python dicts: syncd "
            "`Document.merge_entries`, pure Python validate-all-then-merge; pycrdt has no "
            "merge of entries, so: the same `Map` sets in one transaction. Existing keys, "
            "newer timestamps.",
        ),
        Case(
            "frame",
            "Apply one ops frame, JSON text in, broadcast JSON text out",
            "ms per frame",
            1e3,
            "syncd `Document.apply_frame(text)` then `.broadcast(origin)`; pure Python "
            "`json.loads`, validate every entry, merge into the dict, `json.dumps` the "
            "broadcast; pycrdt `Doc.apply_update(update)` of the update another replica's "
            "transaction emitted for the same sets. Frames are compact JSON, as "
            "`JSON.stringify` writes them (about 80 KB). Half new keys, half existing keys.",
        ),
        Case(
            "changes",
            "changes_since for the latest changes",
            "ms per query",
            1e3,
            "syncd `Document.changes_since(seq)` (a list of `Entry` objects) and "
            "`Document.entries_frames(since=seq)` (JSON text); pure Python: a scan of the "
            "dict for seq > since, sorted; pycrdt `Doc.get_update(state_vector)`.",
        ),
    )
}


@dataclass(frozen=True)
class CaseResult:
    """One case at one size: the statistics of every subject."""

    case: str
    size: int
    stats: dict[str, Stats]
    count: int | None = None
    """Entries per call (batch, frame), or for ``changes`` the latest changes asked for."""


Advance = Callable[[], None]


def _shared(make: Callable[[int], list[Write]]) -> Callable[[int], list[Write]]:
    """``make`` called once per repetition, so that every subject gets the same writes."""
    cache: dict[int, list[Write]] = {}

    def get(repetition: int) -> list[Write]:
        if repetition not in cache:
            cache.clear()
            cache[repetition] = make(repetition)
        return cache[repetition]

    return get


def _run(
    subjects: Mapping[str, Subject],
    make_trial: Callable[[Subject, int], Trial],
    config: Config,
    per: int,
    advance: Advance,
) -> dict[str, Stats]:
    prepare = {name: partial(make_trial, subject) for name, subject in subjects.items()}
    return measure(prepare, repeats=config.repeats, warmup=config.warmup, per=per, advance=advance)


def single_set(
    subjects: Mapping[str, Subject], workload: Workload, config: Config, advance: Advance
) -> CaseResult:
    """Single writes from Python, per call."""
    writes = _shared(lambda _: workload.existing(config.single_ops))
    stats = _run(
        subjects, lambda s, rep: s.single_set(writes(rep)), config, config.single_ops, advance
    )
    return CaseResult("set", workload.size, stats)


def single_get(
    subjects: Mapping[str, Subject], workload: Workload, config: Config, advance: Advance
) -> CaseResult:
    """Single lookups of present keys from Python, per call."""
    keys = workload.lookups(config.single_ops)
    stats = _run(subjects, lambda s, _: s.single_get(keys), config, config.single_ops, advance)
    return CaseResult("get", workload.size, stats)


def batch_merge(
    subjects: Mapping[str, Subject], workload: Workload, config: Config, advance: Advance
) -> CaseResult:
    """One batch of writes to existing keys, given as Python objects."""
    count = min(config.batch_entries, workload.size)
    writes = _shared(lambda _: workload.existing(count))
    stats = _run(subjects, lambda s, rep: s.batch_merge(writes(rep)), config, 1, advance)
    return CaseResult("batch", workload.size, stats, count=count)


def frame(
    subjects: Mapping[str, Subject], workload: Workload, config: Config, advance: Advance
) -> CaseResult:
    """One ``ops`` frame per repetition, fresh writes each time."""
    writes = _shared(lambda _: workload.mixed(config.frame_entries, config.frame_new_share))
    prepare: dict[str, Callable[[int], Trial]] = {
        name: partial(_frame_trial, subject, writes) for name, subject in subjects.items()
    }
    syncd, python = subjects.get(SYNCD), subjects.get(PYTHON)
    if isinstance(syncd, SyncdSubject):
        prepare[SYNCD_VALIDATE] = lambda rep: syncd.frame_rejected(writes(rep), rep + 1)
    if isinstance(python, PythonSubject):
        prepare[PYTHON_LOADS] = lambda rep: python.frame_loads(writes(rep), rep + 1)
    stats = measure(prepare, repeats=config.repeats, warmup=config.warmup, advance=advance)
    return CaseResult("frame", workload.size, stats, count=config.frame_entries)


def _frame_trial(subject: Subject, writes: Callable[[int], list[Write]], repetition: int) -> Trial:
    return subject.frame(writes(repetition), repetition + 1)


def changes_since(
    subjects: Mapping[str, Subject], workload: Workload, config: Config, advance: Advance
) -> list[CaseResult]:
    """The latest ``count`` changes, for each count of ``config.changes_counts``.

    Writes to distinct keys follow a resume point (a mark) per count, so that exactly
    ``count`` changes follow each mark; the queries then run against the finished document.
    """
    counts = config.changes_counts(workload.size)
    writes = workload.existing(counts[0])
    marks: dict[int, dict[str, object]] = {}
    done = 0
    for count in counts:
        _load_all(subjects, writes[done : len(writes) - count])
        done = len(writes) - count
        marks[count] = {name: subject.mark() for name, subject in subjects.items()}
    _load_all(subjects, writes[done:])

    results = []
    for count in counts:
        mark = marks[count]
        # The query only reads, so every repetition asks the same.
        prepare: dict[str, Callable[[int], Trial]] = {
            name: _every_repetition(partial(subject.changes, mark[name], count))
            for name, subject in subjects.items()
        }
        syncd = subjects.get(SYNCD)
        if isinstance(syncd, SyncdSubject):
            prepare[SYNCD_FRAMES] = _every_repetition(
                partial(syncd.changes_frames, mark[SYNCD], count)
            )
        stats = measure(prepare, repeats=config.repeats, warmup=config.warmup, advance=advance)
        results.append(CaseResult("changes", workload.size, stats, count=count))
    return results


def _every_repetition(make: Callable[[], Trial]) -> Callable[[int], Trial]:
    return lambda _: make()


def _load_all(subjects: Mapping[str, Subject], writes: Sequence[Write]) -> None:
    for subject in subjects.values():
        subject.load(writes)
