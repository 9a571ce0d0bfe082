"""``python -m bench.server.memory``: a million keys in one ``syncd serve``, build against build.

For each build (this venv's ``syncd``, and with ``--baseline VENV`` another venv's, such
as the commit before a change, built beside it), alternating for ``--repeats`` rounds,
one fresh server and data directory:

1. load ``--keys`` keys (10-byte keys, 16-byte string values) through the protocol in
   ``ops`` frames of 1000 (the log folds into the file on the way): ``VmRSS`` after;
2. one writer sets ``--writes`` random existing keys, one per message (at most 1000
   unacknowledged), while one reader follows, joining with a full snapshot of the
   document: the acknowledged sets per second;
3. the server's peak RSS (``VmHWM``) over all of that, and its ``VmRSS`` at the end;
4. ``kill -9``, then the server is started again on the same data and a new client
   polls from the process's start until its ``hello`` is answered with ``synced`` (a
   full snapshot): the seconds until then, and that process's peak RSS.

Prints a Markdown table, one row per build and round, and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.display import start_run
from bench.server.clients import SyncdHandshake
from bench.server.config import FULL, ServerConfig
from bench.server.growth import BIG, load_document, measure_writes, poll_handshake
from bench.server.servers import SYNCD, start_server, wait_listening

__all__ = ["BuildRun", "main", "measure_build"]

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass(frozen=True)
class BuildRun:
    """What one round measured for one build."""

    build: str
    load_s: float
    rss_loaded: int
    writes_per_s: float
    peak_rss: int
    rss_end: int
    restart_synced_s: float
    restart_peak_rss: int


async def measure_build(
    build: str, venv: Path | None, keys: int, writes: int, seed: int
) -> BuildRun:
    """One round for one build, in a fresh data directory."""
    config = ServerConfig(big_doc=keys, growth_writes=writes)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        data = Path(tmp) / "data"
        server = start_server(SYNCD, data, venv=venv)
        try:
            await wait_listening(server)
            load_s = await load_document(server, BIG, keys, config)
            rss_loaded = server.rss()
            rate, _ = await measure_writes(server, BIG, keys, config, random.Random(seed))
            peak, rss_end = server.peak_rss(), server.rss()
        finally:
            server.kill()
        restarted = start_server(SYNCD, data, port=server.port, venv=venv)
        try:
            handshake = SyncdHandshake(BIG, "restart")
            _, synced = await poll_handshake(restarted, handshake, 60.0)
            if handshake.entry_count != keys:
                raise RuntimeError(f"{handshake.entry_count} of {keys} keys after the restart")
            restart_s = (synced - restarted.started_ns) / 1e9
            restart_peak = restarted.peak_rss()
        finally:
            restarted.kill()
    run = BuildRun(build, load_s, rss_loaded, rate, peak, rss_end, restart_s, restart_peak)
    log.info("%s", run)
    return run


def _row(run: BuildRun) -> str:
    return (
        f"| {run.build} | {run.load_s:.1f} | {run.rss_loaded / MIB:.0f} | "
        f"{run.writes_per_s:,.0f} | {run.peak_rss / MIB:.0f} | {run.rss_end / MIB:.0f} | "
        f"{run.restart_synced_s:.2f} | {run.restart_peak_rss / MIB:.0f} |"
    )


def render(runs: list[BuildRun], keys: int, command: str) -> str:
    """The Markdown report: every round, then each build's medians."""
    header = [
        f"Command: `{command}`; {keys:,} keys.",
        "",
        "| build | load (s) | RSS loaded (MiB) | acked sets/s | peak RSS (MiB) "
        "| RSS at end (MiB) | restart: synced (s) | restart peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [_row(run) for run in runs]
    medians = []
    for build in dict.fromkeys(run.build for run in runs):
        mine = [run for run in runs if run.build == build]

        def median(field: str, mine: list[BuildRun] = mine) -> float:
            return statistics.median(float(getattr(run, field)) for run in mine)

        medians.append(
            _row(
                BuildRun(
                    f"**{build}, median**",
                    median("load_s"),
                    int(median("rss_loaded")),
                    median("writes_per_s"),
                    int(median("peak_rss")),
                    int(median("rss_end")),
                    median("restart_synced_s"),
                    int(median("restart_peak_rss")),
                )
            )
        )
    return "\n".join([*header, *rows, *medians]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the rounds the command line asks for and print the report."""
    arguments = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.server.memory", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="the venv of the build to compare with")
    parser.add_argument("--seed", type=int, default=FULL.seed)
    args = parser.parse_args(arguments)
    _, command = start_run(
        verbose=False,
        module="bench.server.memory",
        target="bench-memory",
        arguments=arguments,
        from_shell=argv is None,
    )
    builds: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline is not None:
        builds.insert(0, ("baseline", args.baseline))
    runs = []
    for repeat in range(args.repeats):
        # Alternate which build goes first, so that neither always meets the same load.
        for build, venv in builds if repeat % 2 == 0 else builds[::-1]:
            runs.append(asyncio.run(measure_build(build, venv, args.keys, args.writes, args.seed)))
    print(render(runs, args.keys, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
