"""The history's benchmark (issue #13): one key's history in a large document, the
writes with the history on against off, and the history's disk use.

``python -m bench.server.history [--keys 1000000] [--versions 10] [--writes 20000]
[--rounds 3] [--no-lookup]``

1. **Lookup.** A history file of ``keys × versions`` rows is built with the server's own
   writer (:class:`syncd.history.History`, fed entries as a commit feeds it, 1000 at a
   time), then the history of random keys is read as the server reads it
   (:func:`syncd.history.read_versions`, a fresh read-only connection each): median and
   p99 in ms, and the file's size.
2. **Writes.** The writes users make: the fan-out cases of ``make bench-server``
   (:mod:`bench.server.fanout`: one set per message from one writer, on a fresh
   ``syncd serve`` per case), 1 reader as fast as acknowledgements allow and 50 readers
   paced, each with ``--history-retention 0`` and with the default, interleaved, for
   ``rounds`` rounds: the medians of acknowledged writes/s, broadcast and ack p99, and
   the server's CPU per 1,000 acknowledged writes. (It used to time one Python client
   sending 1,000 entries a message, 8 messages in flight: the client was the
   bottleneck and each commit held thousands of entries, so the history's cost per
   commit, most of it, never showed.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.server.config import ServerConfig
from bench.server.fanout import FanoutCase, FanoutResult, run_case
from bench.server.servers import SYNCD
from syncd.crdt import Document, format_timestamp, wall_clock_ms
from syncd.history import History, history_bytes, read_versions

__all__ = ["WriteComparison", "compare_writes", "main"]

log = logging.getLogger(__name__)

LINE_ENTRIES = 1000


def build_history(folder: Path, keys: int, versions: int) -> tuple[Path, float]:
    """A history file of ``keys × versions`` rows; its path and the seconds it took."""
    path = folder / "history" / "bench.sqlite"
    history = History(path, retention_ms=365 * 24 * 3600 * 1000)
    history.open(Document(), "e-bench", [])
    started = time.perf_counter()
    base = wall_clock_ms() - versions * 1000
    seq = 0
    for version in range(versions):
        ts = format_timestamp(base + version * 1000, 0, "bench")
        for first in range(0, keys, LINE_ENTRIES):
            count = min(LINE_ENTRIES, keys - first)
            ops = ",".join(
                f'{{"key":"key-{n:07d}","ts":"{ts}","value":{version}}}'
                for n in range(first, first + count)
            )
            seq += count
            history.record([ops], seq, [])
    history.close()
    return path, time.perf_counter() - started


def time_lookups(path: Path, keys: int, samples: int = 500) -> tuple[float, float]:
    """Median and p99 ms of reading one random key's whole history."""
    timings = []
    for _ in range(samples):
        key = f"key-{random.randrange(keys):07d}"
        started = time.perf_counter()
        rows = read_versions(path, key, 101, None)
        timings.append((time.perf_counter() - started) * 1000)
        assert rows, key
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


HISTORY: dict[str, tuple[str, ...]] = {"off": ("--history-retention", "0"), "on": ()}
"""The two servers compared: no history, and the default retention."""


@dataclass(frozen=True)
class WriteComparison:
    """One fan-out case with the history off and on: the medians over the rounds."""

    readers: int
    mode: str
    acked_per_s: dict[str, float]
    broadcast_p99_ms: dict[str, float]
    ack_p99_ms: dict[str, float]
    cpu_ms_per_1000: dict[str, float]
    """Server CPU per 1,000 acknowledged writes."""
    rounds: dict[str, list[float]]
    """Acknowledged writes/s of each round."""

    @property
    def on_over_off(self) -> float:
        """Acknowledged writes/s with the history on ÷ off."""
        return self.acked_per_s["on"] / self.acked_per_s["off"]


def _median(results: list[FanoutResult], value: str) -> float:
    values = {
        "acked": [r.write.acked_per_second for r in results],
        "p99": [r.latency_ms["p99"] for r in results],
        "ack_p99": [r.write.ack_ms["p99"] for r in results],
        "cpu": [r.server_cpu_per_1000_ms for r in results],
    }[value]
    return round(statistics.median(values), 2)


async def compare_writes(config: ServerConfig, writes: int, rounds: int) -> list[WriteComparison]:
    """The fan-out cases with the history off and on, interleaved round by round, the
    order alternating (off on, on off, …): the second run of a pair starts while the
    machine still writes back the first one's files, and ran slower."""
    cases = ((1, writes, None), (50, config.paced_writes, config.paced_rate))
    found: dict[tuple[int, str], list[FanoutResult]] = {}
    for round_number in range(rounds):
        for readers, count, rate in cases:
            variants = list(HISTORY.items())
            for label, options in variants if round_number % 2 == 0 else reversed(variants):
                case = FanoutCase(SYNCD, readers, count, rate, options=options)
                result = await run_case(case, config)
                found.setdefault((readers, label), []).append(result)
                log.info(
                    "round %d, %d readers, %s, history %s: %s acked/s, p99 %.1f ms",
                    round_number + 1,
                    readers,
                    case.mode,
                    label,
                    f"{result.write.acked_per_second:,.0f}",
                    result.latency_ms["p99"],
                )
    comparisons = []
    for readers, count, rate in cases:
        runs = {label: found[(readers, label)] for label in HISTORY}
        comparisons.append(
            WriteComparison(
                readers,
                FanoutCase(SYNCD, readers, count, rate).mode,
                {label: _median(r, "acked") for label, r in runs.items()},
                {label: _median(r, "p99") for label, r in runs.items()},
                {label: _median(r, "ack_p99") for label, r in runs.items()},
                {label: _median(r, "cpu") for label, r in runs.items()},
                {label: [round(x.write.acked_per_second) for x in r] for label, r in runs.items()},
            )
        )
    return comparisons


async def run(
    keys: int, versions: int, writes: int, rounds: int, lookup: bool
) -> dict[str, object]:
    """Every part of the benchmark; its figures."""
    found: dict[str, object] = {}
    if lookup:
        with tempfile.TemporaryDirectory(prefix="syncd-history-bench-") as temp:
            path, build_s = build_history(Path(temp), keys, versions)
            median_ms, p99_ms = time_lookups(path, keys)
            disk = history_bytes(path.parent)
        found |= {
            "keys": keys,
            "versions": versions,
            "build_s": round(build_s, 1),
            "lookup_median_ms": round(median_ms, 3),
            "lookup_p99_ms": round(p99_ms, 3),
            "disk_mib": round(disk / 2**20, 1),
            "bytes_per_version": round(disk / (keys * versions), 1),
        }
    comparisons = await compare_writes(ServerConfig(), writes, rounds)
    found["writes"] = [
        {**asdict(comparison), "on_over_off": round(comparison.on_over_off, 3)}
        for comparison in comparisons
    ]
    return found


def main() -> None:
    """Run the benchmark and print its results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--writes", type=int, default=ServerConfig().writes)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-lookup", action="store_true", help="only the writes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lookup = not args.no_lookup
    figures = asyncio.run(run(args.keys, args.versions, args.writes, args.rounds, lookup))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
