"""Runs every case at every size, then the memory measurement, with progress bars."""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import Progress, TaskID

from bench import cases
from bench.cases import CaseResult
from bench.config import Config
from bench.crosscheck import check_baseline
from bench.display import progress_bar
from bench.machine import Machine, describe, load_average
from bench.memory import MemoryResult, measure_memory
from bench.subjects import SUBJECTS, SYNCD, Subject, make_subject
from bench.workload import Workload

__all__ = ["RunResults", "run"]

log = logging.getLogger(__name__)

_BUILD_CHUNK = 10_000
_BUSY_LOAD = 0.5
"""A 1-minute load average above this means other work competes for the CPUs."""


@dataclass
class RunResults:
    """Everything one run measured."""

    config: Config
    command: str
    machine: Machine
    started: str
    cases: list[CaseResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    """What the run verified beyond each call's own check (state agreement, baseline)."""
    seconds: float = 0.0
    load_after: str = ""
    """The load averages when the run ended."""


def _steps(config: Config, size: int) -> int:
    per_case = config.warmup + config.repeats
    counts = len(config.changes_counts(size))
    return math.ceil(size / _BUILD_CHUNK) + per_case * (4 + counts) + 1


def _advancer(progress: Progress, task: TaskID) -> Callable[[], None]:
    return lambda: progress.advance(task)


def _run_size(config: Config, size: int, progress: Progress, results: RunResults) -> None:
    task = progress.add_task(f"{size:>9,} entries", total=_steps(config, size))
    advance = _advancer(progress, task)
    workload = Workload(size, config.seed + size)
    subjects: dict[str, Subject] = {name: make_subject(name) for name in SUBJECTS}

    progress.update(task, description=f"{size:>9,} entries: build")
    for chunk in workload.initial(_BUILD_CHUNK):
        for subject in subjects.values():
            subject.load(chunk)
        advance()
    for name, subject in subjects.items():
        if subject.size() != size:
            raise AssertionError(f"{name} holds {subject.size()} entries after the build")

    timed: list[tuple[str, Callable[[], list[CaseResult]]]] = [
        ("single set", lambda: [cases.single_set(subjects, workload, config, advance)]),
        ("single lookup", lambda: [cases.single_get(subjects, workload, config, advance)]),
        ("batch merge", lambda: [cases.batch_merge(subjects, workload, config, advance)]),
        ("ops frame", lambda: [cases.frame(subjects, workload, config, advance)]),
        ("changes_since", lambda: cases.changes_since(subjects, workload, config, advance)),
    ]
    for label, case in timed:
        progress.update(task, description=f"{size:>9,} entries: {label}")
        results.cases.extend(case())

    progress.update(task, description=f"{size:>9,} entries: compare states")
    reference = subjects[SYNCD].state()
    for name, subject in subjects.items():
        if subject.state() != reference:
            raise AssertionError(f"{name} and {SYNCD} disagree at {size:,} entries")
    results.checks.append(
        f"at {size:,} entries ({len(reference):,} after the run) the three documents hold "
        "the same keys and values"
    )
    advance()
    log.info("%s entries done", f"{size:,}")


def run(config: Config, command: str, console: Console) -> RunResults:
    """Run every case at every size, then measure memory; return what was measured."""
    start = time.perf_counter()
    results = RunResults(
        config=config,
        command=command,
        machine=describe(),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    if results.machine.load_1min > _BUSY_LOAD:
        log.warning(
            "the machine is busy (load average %s): timings will be noisy",
            results.machine.load,
        )
    verdict = check_baseline()
    log.info("pure-Python baseline %s", verdict)
    results.checks.append(f"pure-Python baseline {verdict}")
    with progress_bar(console) as progress:
        for size in config.sizes:
            _run_size(config, size, progress, results)
            gc.collect()
        if config.memory:
            size = config.memory_size
            task = progress.add_task(f"memory at {size:,}", total=len(SUBJECTS))
            for name in SUBJECTS:
                progress.update(task, description=f"memory at {size:,}: {name}")
                results.memory.append(measure_memory(name, size, config.seed))
                progress.advance(task)
    results.seconds = time.perf_counter() - start
    results.load_after = load_average()
    log.info("run took %.0f s", results.seconds)
    return results
