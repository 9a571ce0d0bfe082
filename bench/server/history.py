"""The history's benchmark (issue #13): one key's history in a large document, acknowledged
writes/s with the history on against off, and the history's disk use.

``python -m bench.server.history [--keys 1000000] [--versions 10] [--writes 100000]``

1. **Lookup.** A history file of ``keys × versions`` rows is built with the server's own
   writer (:class:`syncd.history.History`, fed entries as a commit feeds it, 1000 at a
   time), then the history of random keys is read as the server reads it
   (:func:`syncd.history.read_versions`, a fresh read-only connection each): median and
   p99 in ms, and the file's size.
2. **Writes.** ``syncd serve`` processes on 127.0.0.1, one with ``--history-retention 0``
   and one with the default, alternately (two rounds each), each taking ``writes`` new
   keys from one client in ``ops`` messages of 1000 entries, 8 in flight; acknowledged
   writes/s, the best round of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.server.servers import HOST, _free_port
from syncd.client import Client
from syncd.crdt import Document, format_timestamp, wall_clock_ms
from syncd.history import History, history_bytes, read_versions

__all__ = ["main"]

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


async def acked_writes_per_second(retention: str, writes: int, folder: Path) -> float:
    """Acknowledged writes/s of one client into a fresh ``syncd serve``."""
    port = _free_port()
    data = folder / f"data-{retention}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "syncd", "serve", "--host", HOST, "--port", str(port)]
    command += ["--data", str(data), "--rate-limit", "0", "--history-retention", retention]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"ws://{HOST}:{port}/ws"
        client = Client(url, "bench", node="bench", timeout=60)
        for _ in range(300):  # the server starts within 30 s
            try:
                await client.connect()
                break
            except Exception:
                await asyncio.sleep(0.1)
        started = time.perf_counter()
        for n in range(writes):
            await client.set(f"key-{n:07d}", n, wait=False)
        await client.flush(timeout=600)
        elapsed = time.perf_counter() - started
        await client.close()
        return writes / elapsed
    finally:
        server.terminate()
        server.wait(30)


async def run(keys: int, versions: int, writes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="syncd-history-bench-") as temp:
        folder = Path(temp)
        path, build_s = build_history(folder, keys, versions)
        median_ms, p99_ms = time_lookups(path, keys)
        disk = history_bytes(path.parent)
        rates: dict[str, list[float]] = {"0": [], "30": []}
        for _ in range(2):
            for retention in rates:
                rates[retention].append(await acked_writes_per_second(retention, writes, folder))
    off, on = max(rates["0"]), max(rates["30"])
    return {
        "keys": keys,
        "versions": versions,
        "build_s": round(build_s, 1),
        "lookup_median_ms": round(median_ms, 3),
        "lookup_p99_ms": round(p99_ms, 3),
        "disk_mib": round(disk / 2**20, 1),
        "bytes_per_version": round(disk / (keys * versions), 1),
        "writes": writes,
        "acked_writes_per_s_history_off": round(off),
        "acked_writes_per_s_history_on": round(on),
        "on_over_off": round(on / off, 3),
    }


def main() -> None:
    """Run the benchmark and print its results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--writes", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.keys, args.versions, args.writes)), indent=2))


if __name__ == "__main__":
    main()
