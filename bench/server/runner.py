"""Runs every fan-out case, then the growth and restart cases, with progress bars."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TaskID

from bench.display import progress_bar
from bench.machine import Machine, describe, load_average
from bench.server.config import ServerConfig
from bench.server.disk import FsyncProbe, probe_fsync
from bench.server.fanout import FanoutCase, FanoutResult, run_case
from bench.server.growth import GrowthResult, run_growth
from bench.server.servers import SERVERS, SYNCD, YJS_DIR, node_version

__all__ = ["ServerRunResults", "Versions", "cases", "run"]

log = logging.getLogger(__name__)

_BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Versions:
    """The versions of the servers under test, beside :class:`bench.machine.Machine`."""

    node: str
    pycrdt_websocket: str
    y_websocket_server: str
    yjs: str
    websockets: str


@dataclass
class ServerRunResults:
    """Everything one run measured."""

    config: ServerConfig
    command: str
    machine: Machine
    versions: Versions
    started: str
    fanout: list[FanoutResult] = field(default_factory=list)
    growth: GrowthResult | None = None
    seconds: float = 0.0
    load_after: str = ""
    fsync_before: FsyncProbe | None = None
    fsync_after: FsyncProbe | None = None


def _npm_version(package: str) -> str:
    manifest = YJS_DIR / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def _versions() -> Versions:
    return Versions(
        node=node_version(),
        pycrdt_websocket=version("pycrdt-websocket"),
        y_websocket_server=_npm_version("@y/websocket-server"),
        yjs=_npm_version("yjs"),
        websockets=version("websockets"),
    )


def cases(config: ServerConfig) -> list[FanoutCase]:
    """Every fan-out case, the servers interleaved so that slow moments fall on all alike."""
    found = []
    for rate, writes in ((None, config.writes), (config.paced_rate, config.paced_writes)):
        for readers in config.readers:
            for server in SERVERS:
                found.append(FanoutCase(server, readers, writes, rate))
    # Readers must not wait for the disk's tail (issue #14): syncd alone, its fsyncs slowed.
    slow_disk = (config.slow_disk_delay_ms, config.slow_disk_every)
    found.append(
        FanoutCase(
            SYNCD, max(config.readers), config.paced_writes, config.paced_rate, slow_disk=slow_disk
        )
    )
    return found


async def _run_all(
    config: ServerConfig,
    results: ServerRunResults,
    progress: Progress,
    growth: bool,
    profile: Path | None,
) -> None:
    all_cases = cases(config)
    overall = progress.add_task("server benchmark", total=len(all_cases) + int(growth))
    for case in all_cases:
        label = f"{case.server.name}, {case.readers} readers, {case.mode}"
        task = progress.add_task(label, total=case.writes)

        def advance(acked: int, task_id: TaskID = task) -> None:
            progress.update(task_id, completed=acked)

        profile_file = None
        if profile is not None and case.server is SYNCD:
            profile_file = profile / f"syncd-{case.readers}-{case.mode.replace('/', '')}.prof"
        results.fanout.append(await run_case(case, config, advance, profile_file))
        progress.remove_task(task)
        progress.advance(overall)
    if growth:

        def step(what: str) -> None:
            progress.update(overall, description=f"syncd growth: {what}")

        results.growth = await run_growth(config, step)
        progress.advance(overall)


def run(
    config: ServerConfig,
    command: str,
    console: Console,
    *,
    growth: bool = True,
    profile: Path | None = None,
) -> ServerRunResults:
    """Run every case; return what was measured."""
    start = time.perf_counter()
    results = ServerRunResults(
        config=config,
        command=command,
        machine=describe(),
        versions=_versions(),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    if results.machine.load_1min > _BUSY_LOAD:
        log.warning(
            "the machine is busy (load average %s): timings will be noisy", results.machine.load
        )
    results.fsync_before = probe_fsync()
    log.info("the disk's fsync before the run: %s", results.fsync_before.describe())
    with progress_bar(console) as progress:
        asyncio.run(_run_all(config, results, progress, growth, profile))
    results.fsync_after = probe_fsync()
    log.info("the disk's fsync after the run: %s", results.fsync_after.describe())
    results.seconds = time.perf_counter() - start
    results.load_after = load_average()
    log.info("run took %.0f s", results.seconds)
    return results
