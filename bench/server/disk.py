"""The disk's own fsync latency, measured beside the run: the floor under syncd's commits.

syncd acknowledges and broadcasts a write only after the ``fsync`` of its commit, so
a paced write's latency includes one fsync, and an fsync's tail is the latency's
tail. This appends 150-byte lines to a file in a temporary folder and fsyncs each,
for a few seconds with a short pause between, as syncd's log does at 500 writes/s.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

__all__ = ["FsyncProbe", "probe_fsync"]


@dataclass(frozen=True)
class FsyncProbe:
    """The distribution of ``write`` + ``fsync`` times of small appends, in ms."""

    count: int
    p50: float
    p99: float
    max: float
    over_10ms: int

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms, max {self.max:.1f} ms, "
            f"{self.over_10ms} of {self.count:,} over 10 ms"
        )


def probe_fsync(seconds: float = 3.0, pause: float = 0.002, limit: int = 5_000) -> FsyncProbe:
    """Append and fsync for ``seconds`` (at most ``limit`` times) in a temporary file."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-fsync-") as folder:
        fd = os.open(os.path.join(folder, "probe.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end and len(times) < limit:
                start = time.perf_counter()
                os.write(fd, b"x" * 149 + b"\n")
                os.fsync(fd)
                times.append((time.perf_counter() - start) * 1000)
                time.sleep(pause)
        finally:
            os.close(fd)
    times.sort()
    n = len(times)
    return FsyncProbe(
        n, times[n // 2], times[min(n - 1, n * 99 // 100)], times[-1], sum(t > 10 for t in times)
    )
