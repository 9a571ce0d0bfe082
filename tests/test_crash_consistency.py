"""Crash consistency of the store (contract §7 "Durability"): kill -9 anywhere in a
write or a fold, restart, and every acknowledged write is there.

Two complementary methods, both with ``--fold-min-bytes 2000`` so that folds
(write a new file, fsync, rename, delete the covered segments) run all the time:

- deterministic crash points: the server runs under ``strace``, which kills it
  with SIGKILL on entry to a chosen syscall of the store (the rename of the new
  file, an fsync, the deletion of a segment, the opening of a new one, a write,
  the cut-back after a failed write), proven by strace's log and the exit status;
- kill -9 at random moments under concurrent writers on two documents (seeded:
  ``SYNCD_CRASH_SEED`` replays a run).

After each crash the server is started again, without strace, on the same data:
it must start, every data file must parse, a fresh client's snapshot must hold
every acknowledged write (and nothing that was never sent), the epoch must be
new (a crash may lose writes that readers saw: no client may resume across
them), and writes must be acknowledged again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from faults import (
    STRACE,
    CrashPoint,
    Ledger,
    TracedServer,
    check_data_files,
    injected_kill,
    snapshot,
    write_until_closed,
)
from servers import START_TIMEOUT, TIMEOUT, RawClient, ServerProcess, Stamps, http_get

FOLD_ARGS = ("--fold-min-bytes", "2000")
KEYS = [f"key-{i}" for i in range(12)]

RENAME = ("rename", "renameat", "renameat2")
UNLINK = ("unlink", "unlinkat")
WRITE = ("write", "pwrite64")
TMP = "default.json.tmp"

CRASH_POINTS = [
    # The document's first file: written, fsync'd, renamed before the first append.
    CrashPoint("rename-first-file", RENAME, (TMP,), 1, acks_before=False),
    # Folds: between the new file written and fsync'd and its rename over the old one.
    CrashPoint("rename-new-file", RENAME, (TMP,), 2),
    CrashPoint("rename-new-file", RENAME, (TMP,), 3),
    CrashPoint("rename-new-file", RENAME, (TMP,), 5),
    CrashPoint("fsync-new-file", ("fsync", "fdatasync"), (TMP,), 2),
    CrashPoint("fsync-new-file", ("fsync", "fdatasync"), (TMP,), 4),
    CrashPoint("write-new-file", WRITE, (TMP,), 3),
    # After the rename: deleting the segments the new file covers.
    CrashPoint("unlink-covered-segment", UNLINK, ("default.1.log",), 1),
    CrashPoint("unlink-covered-segment", UNLINK, ("default.3.log",), 1),
    # Folder fsyncs: after a rename, after the deletions, after a new segment.
    CrashPoint("fsync-folder", ("fsync", "fdatasync"), (".",), 4),
    CrashPoint("fsync-folder", ("fsync", "fdatasync"), (".",), 7),
    # The log: opening a new segment after a fold, appending, fsyncing.
    CrashPoint("openat-new-segment", ("openat", "open"), ("default.2.log",), 1),
    CrashPoint("openat-new-segment", ("openat", "open"), ("default.4.log",), 1),
    CrashPoint("write-log", WRITE, ("default.1.log",), 1, acks_before=False),
    CrashPoint("write-log", WRITE, ("default.2.log",), 1),
    CrashPoint("write-log", WRITE, ("default.3.log",), 2),
    CrashPoint("fsync-log", ("fsync", "fdatasync"), ("default.1.log",), 1, acks_before=False),
    CrashPoint("fsync-log", ("fsync", "fdatasync"), ("default.2.log",), 2),
    CrashPoint("fsync-log", ("fsync", "fdatasync"), ("default.4.log",), 1),
    # A failed append is cut back: killed before the cut, the unacknowledged line stays.
    CrashPoint(
        "ftruncate-after-failed-fsync",
        ("ftruncate",),
        ("default.2.log",),
        1,
        faults=("fsync:error=EIO:when=1",),
    ),
    CrashPoint(
        "ftruncate-after-failed-write",
        ("ftruncate",),
        ("default.2.log",),
        1,
        faults=("write:error=ENOSPC:when=2",),
    ),
]

# More of the same at other moments: the sweep for `-m slow` runs.
MORE_CRASH_POINTS = [
    *(CrashPoint("rename-new-file", RENAME, (TMP,), n) for n in (4, 6, 8)),
    # The first of each is the document's first file, written before the first append.
    CrashPoint("fsync-new-file", ("fsync", "fdatasync"), (TMP,), 1, acks_before=False),
    *(CrashPoint("fsync-new-file", ("fsync", "fdatasync"), (TMP,), n) for n in (3, 6)),
    CrashPoint("write-new-file", WRITE, (TMP,), 1, acks_before=False),
    CrashPoint("write-new-file", WRITE, (TMP,), 5),
    *(CrashPoint("unlink-covered-segment", UNLINK, (f"default.{n}.log",), 1) for n in (2, 5)),
    *(
        CrashPoint("openat-new-segment", ("openat", "open"), (f"default.{n}.log",), 1)
        for n in (3, 6)
    ),
    *(CrashPoint("fsync-folder", ("fsync", "fdatasync"), (".",), n) for n in (3, 9, 12)),
    *(CrashPoint("fsync-log", ("fsync", "fdatasync"), (f"default.{n}.log",), 1) for n in (3, 5)),
    CrashPoint("write-log", WRITE, ("default.4.log",), 1),
    CrashPoint(
        "ftruncate-after-failed-write",
        ("ftruncate",),
        ("default.3.log",),
        1,
        faults=("write:error=ENOSPC:when=1",),
    ),
]
ALL_CRASH_POINTS = [
    *(pytest.param(p, id=p.id) for p in CRASH_POINTS),
    *(pytest.param(p, id=p.id, marks=pytest.mark.slow) for p in MORE_CRASH_POINTS),
]


def _seed() -> int:
    text = os.environ.get("SYNCD_CRASH_SEED")
    return int(text) if text else random.randrange(1 << 32)


async def _restart_and_check(
    process: ServerProcess, ledger: Ledger, epoch: str | None, stamps: Stamps, context: str
) -> dict[str, int]:
    """Start again without faults; check the snapshot, the epoch, a new write, a clean
    stop, and the files it leaves."""
    await process.start()
    assert (await http_get(process.port, "/healthz")).status == 200, context
    welcome, state = await snapshot(process.url)
    ledger.check(state, context)
    if epoch is not None:
        assert welcome["epoch"] != epoch, f"{context}: the same epoch after a crash"
    assert welcome["seq"] >= ledger.last_seq, f"{context}: the head went back"
    writer = await RawClient.connect(process.url, stamps.node)
    writer.stamps = stamps  # the same replica: its clock goes on
    await writer.hello()
    answer = await writer.write([stamps.set("after-the-crash", context)])
    assert answer["type"] == "ack", f"{context}: {answer}"
    assert answer["seq"] == welcome["seq"] + 1, f"{context}: {answer}"
    await writer.close()
    process.signal(signal.SIGTERM)  # a clean stop waits for a fold under way
    assert await process.wait() == 0, f"{context}: {process.stderr}"
    files = check_data_files(process.data / "docs", context, staged=False)
    return {"acks": ledger.acks, "keys": len(ledger.acked), "files": files}


@pytest.mark.skipif(not Path(STRACE).exists(), reason="needs strace (make test-python installs it)")
@pytest.mark.parametrize("point", ALL_CRASH_POINTS)
async def test_a_crash_at_a_store_syscall_loses_no_acknowledged_write(
    point: CrashPoint, tmp_path: Path
) -> None:
    started = time.monotonic()
    data, logs = tmp_path / "data", tmp_path / "logs"
    trace = tmp_path / "strace.txt"
    process = TracedServer(data=data, logs=logs, args=FOLD_ARGS)
    process.prefix = point.strace_prefix(data / "docs", trace)
    context = f"crash point {point.id}"
    try:
        await process.start()
        writer = await RawClient.connect(process.url, "writer")
        handshake = await writer.hello()
        epoch = handshake.welcome["epoch"]
        ledger = Ledger()
        rng = random.Random(point.id)
        # One message in flight: each append is then one message, smaller than a fold's
        # threshold, so every segment takes several appends whatever the machine's load
        # (pipelined writes are batched by load, and a large enough batch would fill a
        # segment in one append). Write until the point is reached, bounded in count and time.
        closed = await write_until_closed(writer, ledger, rng, KEYS, window=1, messages=5000)
        assert closed, f"{context}: never reached ({ledger.acks} writes acknowledged)"
        code = await process.wait()
        assert code == -signal.SIGKILL, f"{context}: strace exited with {code}"
        killed_in = injected_kill(trace, point.syscalls).replace(f"{data}/", "")
        if point.acks_before:
            assert ledger.acks > 0, f"{context}: killed before any acknowledgement"
        check_data_files(data / "docs", f"{context}, before the restart")
        process.prefix = ()
        figures = await _restart_and_check(process, ledger, epoch, writer.stamps, context)
        print(
            f"{context}: killed in {killed_in!r}; {figures['acks']} acked messages "
            f"({figures['keys']} keys) checked, 0 lost; {time.monotonic() - started:.2f} s"
        )
    finally:
        process.cleanup()


KILL_ROUNDS = 8
ROUND_SECONDS = 2 * START_TIMEOUT + 2 * TIMEOUT
"""The most one kill -9 round may take: two starts, the writes until the kill, the checks.
A bound per round, not for all of them: on a loaded machine each start takes seconds."""


@pytest.mark.slow
@pytest.mark.timeout(KILL_ROUNDS * ROUND_SECONDS)
async def test_kill_9_at_random_moments_while_folds_run_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    seed = _seed()
    print(f"SYNCD_CRASH_SEED={seed}")
    rng = random.Random(seed)
    process = ServerProcess(data=tmp_path / "data", logs=tmp_path / "logs", args=FOLD_ARGS)
    docs = {"default": Ledger(), "notes": Ledger()}
    writers = [("w1", "default"), ("w2", "default"), ("w3", "notes")]
    stamps = {node: Stamps(node) for node, _ in writers}
    epochs: dict[str, str] = {}
    in_fold, slowest = 0, 0.0
    try:
        for round_ in range(KILL_ROUNDS):
            context = f"seed {seed}, round {round_}"
            round_started = time.monotonic()
            await process.start()
            clients = []
            seen: dict[str, str] = {}  # this round's epochs: a new one after each kill
            for node, doc in writers:
                client = await RawClient.connect(process.url, node)
                client.stamps = stamps[node]
                welcome = (await client.hello(doc=doc)).welcome
                assert seen.setdefault(doc, welcome["epoch"]) == welcome["epoch"], context
                assert welcome["epoch"] != epochs.get(doc), f"{context}: an epoch kept"
                clients.append((client, doc))
            epochs.update(seen)

            async def kill_later(delay: float) -> None:
                await asyncio.sleep(delay)  # a random moment, not an event
                process.signal(signal.SIGKILL)

            killer = asyncio.create_task(kill_later(rng.uniform(0.1, 0.6)))
            closed = await asyncio.gather(
                *(
                    write_until_closed(
                        # More messages than any round can send: each writes until the kill.
                        client,
                        docs[doc],
                        random.Random(rng.random()),
                        KEYS,
                        window=8,
                        messages=1_000_000,
                    )
                    for client, doc in clients
                )
            )
            await killer
            assert await process.wait() == -signal.SIGKILL, context
            assert all(closed), f"{context}: a writer stopped before the kill"
            check_data_files(process.data / "docs", f"{context}, before the restart")
            # A fold was under way if its new file or the segments it covers remain.
            left = [p.name for p in (process.data / "docs").iterdir()]
            in_fold += any(n.endswith(".tmp") for n in left) or len(left) > 2 * len(docs)
            await process.start()
            for doc, ledger in docs.items():
                welcome, state = await snapshot(process.url, doc)
                ledger.check(state, f"{context}, {doc}")
                assert welcome["epoch"] != epochs[doc], f"{context}, {doc}: the epoch was kept"
                epochs[doc] = welcome["epoch"]
                assert welcome["seq"] >= ledger.last_seq, f"{context}, {doc}"
            check_data_files(process.data / "docs", f"{context}, after the restart", staged=False)
            await process.kill()
            took = time.monotonic() - round_started
            assert took < ROUND_SECONDS, f"{context}: the round took {took:.1f} s"
            slowest = max(slowest, took)
        acks = sum(ledger.acks for ledger in docs.values())
        assert all(ledger.acks for ledger in docs.values()), f"seed {seed}: nothing acknowledged"
        for doc in docs:
            folded = json.loads((process.data / "docs" / f"{doc}.json").read_text())
            assert folded["meta"]["1"]["seq"] > 0, f"seed {seed}: {doc} was never folded"
        print(
            f"seed {seed}: {KILL_ROUNDS} kill -9 rounds ({in_fold} during a fold, the "
            f"slowest {slowest:.1f} s), {acks} acked messages checked, 0 lost"
        )
    finally:
        process.cleanup()
        shutil.rmtree(process.data, ignore_errors=True)
