"""Resident memory per entry, each implementation built in a fresh process.

The parent runs ``python -m bench.memory NAME SIZE`` once per subject. The child reads
its resident set size (``VmRSS``), loads ``SIZE`` live entries (10-byte keys, 16-byte
string values) in chunks of 1000 so that the input's garbage stays small, collects
garbage, reads it again and prints both as JSON.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.subjects import Subject, make_subject
from bench.workload import RAW_ENTRY_BYTES, Workload

__all__ = ["MemoryResult", "measure_memory", "rss_bytes"]

_ROOT = Path(__file__).resolve().parent.parent
_CHUNK = 1000


def rss_bytes() -> int:
    """This process's resident set size now (``VmRSS``), or its peak where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class MemoryResult:
    """Resident memory before and after loading ``size`` entries into one subject."""

    subject: str
    size: int
    before: int
    after: int
    raw: int
    """The raw key and value bytes of one entry."""

    @property
    def per_entry(self) -> float:
        """Resident bytes gained per entry."""
        return (self.after - self.before) / self.size

    @property
    def above_raw(self) -> float:
        """Bytes per entry above the raw key and value bytes."""
        return self.per_entry - self.raw


def measure_memory(subject: str, size: int, seed: int) -> MemoryResult:
    """Load ``size`` entries into a new ``subject`` in a fresh process and measure its RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", subject, str(size), str(seed)],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring {subject}'s memory failed:\n{done.stderr.strip()}")
    measured = json.loads(done.stdout)
    return MemoryResult(
        subject, size, int(measured["before"]), int(measured["after"]), int(measured["raw"])
    )


def _load(subject: Subject, workload: Workload) -> None:
    for chunk in workload.initial(_CHUNK):
        subject.load(chunk)


def _child(subject_name: str, size: int, seed: int) -> None:
    workload = Workload(size, seed)
    subject = make_subject(subject_name)
    gc.collect()
    before = rss_bytes()
    _load(subject, workload)
    gc.collect()
    after = rss_bytes()
    if subject.size() != size:
        raise SystemExit(f"{subject_name} holds {subject.size()} entries, not {size}")
    print(json.dumps({"before": before, "after": after, "raw": RAW_ENTRY_BYTES}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
