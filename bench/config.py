"""What a benchmark run measures: sizes, repetitions and the shape of each workload."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL_SIZES", "QUICK_SIZES", "Config"]

FULL_SIZES = (10_000, 100_000, 1_000_000)
"""Document sizes of a full run (``make bench``)."""

QUICK_SIZES = (10_000, 100_000)
"""Document sizes of ``--quick``."""


@dataclass(frozen=True)
class Config:
    """The parameters of one run."""

    sizes: tuple[int, ...] = FULL_SIZES
    """Entries each document holds before a size's cases run."""
    repeats: int = 25
    """Timed repetitions per case and implementation; the report gives their median."""
    warmup: int = 3
    """Untimed repetitions before the timed ones."""
    single_ops: int = 5_000
    """Calls timed together in one repetition of single set and single lookup."""
    batch_entries: int = 10_000
    """Entries merged by one batch merge."""
    frame_entries: int = 1_000
    """Entries in one ``ops`` frame (the protocol's default ``max_ops``)."""
    frame_new_share: float = 0.5
    """Share of a frame's entries that write new keys; the rest overwrite existing ones."""
    changes_fixed: int = 1_000
    """The fixed ``changes_since`` count compared between the smallest and largest size."""
    memory: bool = True
    """Whether to measure memory per entry (at the largest size)."""
    seed: int = 20_251_125
    """Seed of the workload's random choices, so that runs are comparable."""

    @property
    def memory_size(self) -> int:
        """Entries held when memory is measured: the largest size."""
        return max(self.sizes)

    def changes_counts(self, size: int) -> tuple[int, ...]:
        """How many latest changes ``changes_since`` asks for at ``size``, largest first.

        The last 1% of entries at every size, and ``changes_fixed`` at the smallest and the
        largest size, whose times are compared to show that no query scans the document.
        """
        counts = {max(1, size // 100)}
        if size in (min(self.sizes), max(self.sizes)):
            counts.add(self.changes_fixed)
        return tuple(sorted(counts, reverse=True))
