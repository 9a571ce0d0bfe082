"""The writes every implementation receives: 10-byte keys, 16-byte string values, HLC timestamps.

Every implementation is driven with the same :class:`Write` objects, so that their
documents hold the same state at every step (the runner checks it after each size).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

__all__ = [
    "KEY_BYTES",
    "NODE",
    "RAW_ENTRY_BYTES",
    "VALUE_BYTES",
    "Clock",
    "Workload",
    "Write",
    "chunked",
    "key_for",
]

KEY_BYTES = 10
"""Bytes in every key: ``key`` and 7 digits."""
VALUE_BYTES = 16
"""Bytes in every value: 16 hexadecimal digits."""
RAW_ENTRY_BYTES = KEY_BYTES + VALUE_BYTES
"""The raw key and value bytes of one entry, the floor of any storage."""
NODE = "tui-3f9a"
"""The node id in every timestamp and the origin of every broadcast."""

_START_WALL_MS = 1_764_028_800_000
_MAX_COUNTER = 99_999


class Write(NamedTuple):
    """One live write: a key, its string value and its timestamp."""

    key: str
    value: str
    ts: str

    def wire(self) -> dict[str, Any]:
        """The write in its wire form, as an ``ops`` entry."""
        return {"key": self.key, "ts": self.ts, "value": self.value}


def key_for(index: int) -> str:
    """The key numbered ``index``: 10 bytes for every index below 10 million."""
    return f"key{index:07d}"


class Clock:
    """Timestamps that only go up, as one replica's Hybrid Logical Clock issues them.

    The wall field stays put while the counter runs, so timestamps are fixed-width and
    far from any real clock check (the benchmark passes no ``now_ms``).
    """

    def __init__(self, node: str = NODE) -> None:
        self._node = node
        self._wall = _START_WALL_MS
        self._counter = -1

    def next(self) -> str:
        """A timestamp greater than every one issued before."""
        self._counter += 1
        if self._counter > _MAX_COUNTER:
            self._wall += 1
            self._counter = 0
        return f"{self._wall:013d}-{self._counter:05d}-{self._node}"


class Workload:
    """Deterministic writes over a document of ``size`` keys (``key0000000`` upward)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self._rng = random.Random(seed)
        self._clock = Clock()
        self._next_new = size

    def _value(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def initial(self, chunk: int) -> Iterator[list[Write]]:
        """The writes that fill the document with keys ``0 .. size - 1``, in chunks."""
        for start in range(0, self.size, chunk):
            stop = min(start + chunk, self.size)
            yield [Write(key_for(i), self._value(), self._clock.next()) for i in range(start, stop)]

    def existing(self, count: int) -> list[Write]:
        """New writes (newer timestamps) to ``count`` distinct keys the document holds."""
        indexes = self._rng.sample(range(self.size), min(count, self.size))
        return [Write(key_for(i), self._value(), self._clock.next()) for i in indexes]

    def mixed(self, count: int, new_share: float) -> list[Write]:
        """``count`` writes to distinct keys: ``new_share`` of them new keys, the rest existing
        ones, shuffled together."""
        new = round(count * new_share)
        first = self._next_new
        self._next_new += new
        indexes = [*self._rng.sample(range(self.size), count - new), *range(first, first + new)]
        self._rng.shuffle(indexes)
        return [Write(key_for(i), self._value(), self._clock.next()) for i in indexes]

    def lookups(self, count: int) -> list[str]:
        """``count`` keys the document holds, drawn at random (with repeats)."""
        return [key_for(self._rng.randrange(self.size)) for _ in range(count)]


def chunked(writes: Sequence[Write], size: int) -> Iterator[Sequence[Write]]:
    """``writes`` in consecutive slices of at most ``size``."""
    for start in range(0, len(writes), size):
        yield writes[start : start + size]
