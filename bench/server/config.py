"""What a server benchmark run measures: workloads, reader counts, document sizes, limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """The parameters of one run of ``python -m bench.server``."""

    writes: int = 20_000
    """Single-key sets of the as-fast-as-acks-allow run."""
    paced_writes: int = 5_000
    """Single-key sets of the paced run (10 s at 500/s)."""
    paced_rate: float = 500.0
    """Sets per second of the paced run."""
    readers: tuple[int, ...] = (1, 10, 50)
    window: int = 1_000
    """The most sets the writer keeps unacknowledged (the same for every server)."""
    burst: int = 64
    """The most sets the writer puts in one socket write when it may send several."""
    readers_per_process: int = 10
    min_processes: int = 2
    """Reader processes for 10 readers or more (fewer readers: one process)."""
    small_doc: int = 1_000
    big_doc: int = 1_000_000
    """Existing keys of the two documents the write cost is compared between."""
    growth_writes: int = 20_000
    """Sets per repetition into each of the two documents."""
    growth_repeats: int = 5
    load_frame: int = 1_000
    """Entries per ``ops`` frame when preloading a document (syncd's ``max_ops``)."""
    resume_gap: int = 1_000
    """Entries the reconnecting client has missed: its delta after the restart."""
    slow_disk_delay_ms: int = 40
    """The slow-disk case: how long each held-up ``fsync`` of syncd's process waits."""
    slow_disk_every: int = 4
    """The slow-disk case: one ``fsync`` in this many (per thread) is held up."""
    case_timeout: float = 180.0
    """Seconds one case's writer may take before the case fails."""
    ack_timeout: float = 60.0
    """Seconds the preloader waits for the next ``ack`` before it gives up."""
    seed: int = 20_251_125

    def processes(self, readers: int) -> int:
        """Reader processes for ``readers`` readers."""
        if readers < self.readers_per_process:
            return 1
        return max(self.min_processes, math.ceil(readers / self.readers_per_process))


FULL = ServerConfig()
QUICK = ServerConfig(
    writes=4_000,
    paced_writes=1_000,
    readers=(1, 10),
    big_doc=100_000,
    growth_writes=4_000,
    growth_repeats=2,
)
"""``--quick``: a smoke run of every case, smaller (not for the record)."""
