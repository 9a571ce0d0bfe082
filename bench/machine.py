"""A description of the machine and of the versions under test, for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

__all__ = ["Machine", "describe", "load_average", "machine_rows"]

_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Machine:
    """Where and with what a run was made."""

    cpus: int
    cpu_model: str
    memory: str
    system: str
    python: str
    rustc: str
    syncd: str
    pycrdt: str
    commit: str
    load: str
    """The load averages (1, 5, 15 min) when the run started: other work skews timings."""
    load_1min: float


def _first(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _command(*argv: str) -> str | None:
    try:
        done = subprocess.run(argv, cwd=_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def _commit() -> str:
    head = _command("git", "rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    dirty = _command("git", "status", "--porcelain", "--untracked-files=no")
    return f"{head} (with uncommitted changes)" if dirty else head


def _cpus() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 0


def describe() -> Machine:
    """The machine this process runs on."""
    total = _first("/proc/meminfo", "MemTotal")
    return Machine(
        cpus=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 0,
        cpu_model=_first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        memory=f"{int(total.split()[0]) // 1024:,} MiB" if total else "unknown",
        system=platform.platform(),
        python=platform.python_version(),
        rustc=_command("rustc", "--version") or "unknown",
        syncd=version("syncd"),
        pycrdt=version("pycrdt"),
        commit=_commit(),
        load=load_average(),
        load_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    try:
        return ", ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "unknown"


def machine_rows(machine: Machine, load_after: str) -> list[list[str]]:
    """The rows every report's machine table starts with (reports add their versions)."""
    return [
        ["CPUs (nproc)", str(machine.cpus)],
        ["CPU model", machine.cpu_model],
        ["memory", machine.memory],
        ["system", machine.system],
        ["Python", machine.python],
        ["syncd", f"{machine.syncd}, commit {machine.commit}"],
        ["load average (1, 5, 15 min)", f"{machine.load} at the start, {load_after} at the end"],
    ]
