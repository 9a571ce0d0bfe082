"""Checks that the pure-Python baseline merges like ``tests.model.LwwModel``, when it exists.

``tests/model.py`` is the project's reference model of the merge rule. The benchmark's
baseline (:mod:`bench.baseline`) keeps values as Python objects rather than text, for
speed, so this replays random writes — equal timestamps, tombstones and all — through
both and compares every outcome.
"""

from __future__ import annotations

import importlib
import json
import logging
import random

from bench.baseline import TOMBSTONE, DictLww

__all__ = ["check_baseline"]

log = logging.getLogger(__name__)

_VALUES = ("a", "b", "ab", "", 1, 2, True, None, {"x": 1}, [1, "a"])


def check_baseline(merges: int = 20_000, seed: int = 7) -> str:
    """A one-line verdict on whether the baseline agrees with ``tests.model.LwwModel``."""
    try:
        model_class = importlib.import_module("tests.model").LwwModel
    except (ImportError, AttributeError):
        return "not cross-checked: tests/model.py (LwwModel) is not there yet"
    model = model_class()
    baseline = DictLww()
    rng = random.Random(seed)
    for i in range(merges):
        key = f"k{rng.randrange(20)}"
        ts = f"17640288{rng.randrange(3):05d}-{rng.randrange(2):05d}-n{rng.randrange(2)}"
        value: object = TOMBSTONE if rng.random() < 0.2 else rng.choice(_VALUES)
        text = None if value is TOMBSTONE else json.dumps(value, separators=(",", ":"))
        expected = bool(model.merge(key, ts, text))
        got = baseline.merge(key, ts, value)
        if got != expected:
            message = (
                f"DISAGREES with tests.model.LwwModel at merge {i}: {key} {ts} {text}: "
                f"baseline {got}, model {expected}"
            )
            log.error(message)
            return message
    return f"agrees with tests.model.LwwModel on {merges:,} random merges (ties included)"
