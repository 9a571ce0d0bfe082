"""Interleaved, repeated timing and the statistics the report gives.

Each repetition prepares one trial per subject (untimed), then times the subjects one
after another, in an order that rotates from one repetition to the next, so that the
machine's slow moments fall on every subject alike. The garbage collector is off while
a call is timed, as in :mod:`timeit`.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.subjects import Trial

__all__ = ["Stats", "measure"]


@dataclass(frozen=True)
class Stats:
    """Repeated measurements of one quantity, in seconds per unit of work."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median, which the report gives."""
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        """The fastest repetition."""
        return min(self.samples)

    @property
    def high(self) -> float:
        """The slowest repetition."""
        return max(self.samples)

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median: how noisy the repetitions were."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median if self.median else 0.0


def _time_one(trial: Trial) -> float:
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        result = trial.run()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    trial.check(result)
    return elapsed


def measure(
    prepare: Mapping[str, Callable[[int], Trial]],
    *,
    repeats: int,
    warmup: int,
    per: int = 1,
    advance: Callable[[], None] | None = None,
) -> dict[str, Stats]:
    """Time each subject's trial ``warmup + repeats`` times, interleaved.

    ``prepare[name](repetition)`` makes a fresh trial; the samples are seconds divided
    by ``per`` (the units of work in one call). ``advance`` is called after each
    repetition, for a progress bar.
    """
    names = list(prepare)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(warmup + repeats):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = _time_one(prepare[name](repetition))
            if repetition >= warmup:
                samples[name].append(elapsed / per)
        if advance is not None:
            advance()
    return {name: Stats(tuple(values)) for name, values in samples.items()}
