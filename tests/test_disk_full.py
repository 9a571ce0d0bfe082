"""A full disk under a running server (contract §5, §6, §7): refused writes, no damage.

While the disk is full, each write is answered with an ``error`` of code
``internal`` carrying the message's ``id`` — never an ack — and every connection
stays open; the server keeps serving reads (``/healthz``, snapshots) and does not
exit. Readers saw each refused write at its merge, so it stays merged in memory
(in snapshots too) and is stored by the next append that succeeds: once space
frees, by itself within a second, or with the next write. A refused message sent
again is a duplicate, acknowledged once its original is stored. Every
acknowledged write survives a kill -9, and every data file parses. The product
client (:class:`syncd.client.Client`) sends refused writes again and delivers
them once space frees.

Both ways to fill a disk run (see :mod:`faults`): a small tmpfs holding the data
(``mount`` as root; where that is not permitted, that case falls back to the
other way) and strace attached to the server failing its writes with ENOSPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faults import (
    STRACE,
    FullDisk,
    Ledger,
    StraceDisk,
    Tmpfs,
    TmpfsDisk,
    check_data_files,
    snapshot,
)
from servers import TIMEOUT, Frame, RawClient, ServerProcess, http_get

from syncd.client import Client
from syncd.events import Rejected

ARGS = ("--fold-min-bytes", "20000")
BIG = "x" * 9000
"""More than a page: a write of it needs new blocks, even after a partly filled one."""


def _strace_usable() -> bool:
    return Path(STRACE).exists()


def _mounted_tmpfs(tmp_path: Path) -> Tmpfs:
    """A small tmpfs mounted for a test that needs a real full disk, or the test skipped."""
    tmpfs = Tmpfs(tmp_path / "tmpfs", 4 << 20)
    why = tmpfs.mount()
    if why is not None:
        pytest.skip(f"needs a tmpfs ({why}); the other tests cover a full disk without one")
    return tmpfs


@pytest.fixture(params=["tmpfs", "strace"])
async def disk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FullDisk]:
    """A disk to fill under the server: a tmpfs, or strace's injected ENOSPC."""
    full: FullDisk | None = None
    if request.param == "tmpfs":
        tmpfs = Tmpfs(tmp_path / "tmpfs", 4 << 20)
        why = tmpfs.mount()
        if why is None:
            full = TmpfsDisk(tmpfs)
        elif _strace_usable():
            print(f"cannot mount a tmpfs ({why}): injecting ENOSPC with strace instead")
        else:
            pytest.fail(
                f"cannot fill a disk: mounting a tmpfs failed ({why}) and {STRACE} is missing"
            )
    elif not _strace_usable():
        pytest.fail(f"cannot inject ENOSPC: {STRACE} is missing (make test-python installs it)")
    if full is None:
        full = StraceDisk(tmp_path / "data", tmp_path / "strace.txt")
    try:
        yield full
    finally:
        full.close()


async def _start(disk: FullDisk, tmp_path: Path) -> ServerProcess:
    process = ServerProcess(data=disk.data, logs=tmp_path / "logs", args=ARGS)
    await process.start()
    return process


def _stored(docs: Path, entries: list[Frame]) -> bool:
    """Whether every one of ``entries`` is in the document's files (its log, or its
    TinyDB file once a fold took the log in)."""
    stored = ""
    for path in docs.glob("default.*"):
        with contextlib.suppress(FileNotFoundError):  # a fold deletes the segments it covered
            stored += path.read_text(encoding="utf-8")
    return all(f'"ts":"{e["ts"]}"' in stored for e in entries)


async def test_a_full_disk_refuses_writes_disturbs_nobody_and_stores_them_once_space_frees(
    disk: FullDisk, tmp_path: Path
) -> None:
    process = await _start(disk, tmp_path)
    try:
        writer = await RawClient.connect(process.url, "writer")
        epoch = (await writer.hello()).welcome["epoch"]
        ledger = Ledger()
        for i in range(30):
            ops = [writer.stamps.set(f"k{i % 7}", {"i": i, "pad": "p" * 800})]
            ledger.record(ops)
            answer = await writer.write(ops)
            assert answer["type"] == "ack", answer
            ledger.ack(ops, answer["seq"])
        watcher = await RawClient.connect(process.url, "watcher")
        await watcher.hello()

        await disk.fill(process)
        # A document's first write also creates its file: refused like any other.
        newcomer = await RawClient.connect(process.url, "newcomer")
        await newcomer.hello(doc="fresh")
        first = [newcomer.stamps.set("first", BIG)]
        answer = await newcomer.write(first, id=1)
        assert (answer["type"], answer["code"], answer["id"]) == ("error", "internal", 1), answer
        refused: list[Frame] = []
        for i in range(6):
            ops = [writer.stamps.set(f"k{i % 7}", BIG), writer.stamps.set(f"new{i}", BIG)]
            ledger.record(ops)
            id = writer.next_id()
            answer = await writer.write(ops, id=id)
            assert answer["type"] == "error", f"{disk.how}: {answer}"
            assert (answer["code"], answer["id"]) == ("internal", id), answer
            refused += ops
            # The connection stays open and answers.
            assert (await writer.ping())[-1]["type"] == "pong"
        assert process.process is not None and process.process.poll() is None, "it exited"
        assert (await http_get(process.port, "/healthz")).status == 200
        # Readers saw the refused writes at their merge: they stay merged in memory, for
        # the next append that succeeds, and a new client's snapshot holds them too.
        seen = await watcher.recv_until(
            lambda f: f["type"] == "ops" and f["seq"] == ledger.last_seq + len(refused)
        )
        assert [e for f in seen if f["type"] == "ops" for e in f["ops"]] == refused
        welcome, state = await snapshot(process.url, node="reader")
        assert welcome["seq"] == ledger.last_seq + len(refused), welcome
        ledger.check(state, f"{disk.how}, while full")
        assert [e for e in refused if state.get(e["key"]) != e] == []

        await disk.free(process)
        # Nobody writes: the server tries the disk again by itself, and stores them.
        docs = disk.data / "docs"
        async with asyncio.timeout(TIMEOUT):
            while not _stored(docs, refused):
                await asyncio.sleep(0.05)  # bounded by the timeout: a retry is due within 1 s
        # A refused message sent again is a duplicate: acknowledged, nothing applied.
        answer = await writer.write(refused[-2:])
        assert (answer["type"], answer["applied"], answer["ignored"]) == ("ack", 0, 2), answer
        assert answer["seq"] == ledger.last_seq + len(refused), answer
        ops = [writer.stamps.set("after", BIG), writer.stamps.delete("k0")]
        ledger.record(ops)
        answer = await writer.write(ops)
        assert (answer["type"], answer["seq"]) == ("ack", ledger.last_seq + len(refused) + 2)
        ledger.ack(ops, answer["seq"])
        answer = await newcomer.write(first, id=2)
        assert (answer["type"], answer["seq"]) == ("ack", 1), answer
        # Every connection stayed open all along.
        for client in (writer, watcher, newcomer):
            assert (await client.ping())[-1]["type"] == "pong"

        await process.kill()
        check_data_files(docs, f"{disk.how}, after kill -9")
        await process.start()
        welcome, state = await snapshot(process.url, node="judge")
        assert welcome["seq"] == ledger.last_seq and welcome["epoch"] != epoch, welcome
        ledger.check(state, f"{disk.how}, after the restart")
        lost = [e for e in refused if e["key"] != "k0" and state.get(e["key"]) != e]
        assert lost == [], "a write stored once space freed was lost"
        _, fresh = await snapshot(process.url, doc="fresh", node="judge")
        assert fresh == {"first": first[0]}
        process.signal(signal.SIGTERM)
        assert await process.wait() == 0, process.stderr
        check_data_files(docs, f"{disk.how}, after a clean stop", staged=False)
    finally:
        process.cleanup()


async def test_a_server_restarted_on_a_full_disk_serves_reads_and_refuses_writes(
    disk: FullDisk, tmp_path: Path
) -> None:
    process = await _start(disk, tmp_path)
    try:
        writer = await RawClient.connect(process.url, "writer")
        await writer.hello()
        ledger = Ledger()
        for i in range(10):
            ops = [writer.stamps.set(f"k{i}", {"i": i, "pad": "p" * 800})]
            ledger.record(ops)
            answer = await writer.write(ops)
            assert answer["type"] == "ack", answer
            ledger.ack(ops, answer["seq"])
        epoch = (await snapshot(process.url, node="reader"))[0]["epoch"]
        await disk.fill(process)
        # Refused, and merged in memory only: the crash drops it (a new epoch).
        phantom = [writer.stamps.set("phantom", BIG)]
        answer = await writer.write(phantom)
        assert (answer["type"], answer["code"]) == ("error", "internal"), answer
        await process.kill()
        await process.start()  # on the full disk
        await disk.fill(process)  # (strace: attach again, to the new process)
        welcome, state = await snapshot(process.url, node="reader")
        assert welcome["seq"] == ledger.last_seq and welcome["epoch"] != epoch, welcome
        ledger.check(state, f"{disk.how}, restarted while full")
        assert "phantom" not in state
        stamps = writer.stamps  # one replica: its clock goes on
        writer = await RawClient.connect(process.url, "writer")
        writer.stamps = stamps
        await writer.hello()
        ops = [writer.stamps.set("k0", BIG)]
        answer = await writer.write(ops, id=7)
        assert (answer["type"], answer["code"], answer["id"]) == ("error", "internal", 7), answer
        await disk.free(process)
        answer = await writer.write(ops, id=8)  # a duplicate of the merged original
        assert (answer["type"], answer["seq"], answer["applied"]) == ("ack", ledger.last_seq + 1, 0)
        answer = await writer.write(phantom)  # sent again, it comes back
        assert (answer["type"], answer["applied"]) == ("ack", 1), answer
    finally:
        process.cleanup()


async def test_a_server_stopped_while_the_disk_refuses_writes_stops_and_takes_a_new_epoch(
    tmp_path: Path,
) -> None:
    # A tmpfs only: strace's injected ENOSPC fails every write(), the byte that wakes
    # the event loop for a signal included, so the SIGTERM would never be seen.
    tmpfs = _mounted_tmpfs(tmp_path)
    disk = TmpfsDisk(tmpfs)
    process = await _start(disk, tmp_path)
    try:
        writer = await RawClient.connect(process.url, "writer")
        epoch = (await writer.hello()).welcome["epoch"]
        kept = [writer.stamps.set("kept", "acknowledged")]
        assert (await writer.write(kept))["type"] == "ack"
        await disk.fill(process)
        refused = [writer.stamps.set("refused", BIG)]
        answer = await writer.write(refused)
        assert (answer["type"], answer["code"]) == ("error", "internal"), answer
        # The refused write is only in memory: the stop does not wait for the disk forever.
        process.signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            assert await process.wait() == 0, process.stderr
        await disk.free(process)
        await process.start()
        welcome, state = await snapshot(process.url, node="judge")
        assert welcome["epoch"] != epoch, "readers saw a write this start no longer has"
        assert state == {"kept": kept[0]}
    finally:
        process.cleanup()
        tmpfs.unmount()


async def test_the_client_sends_writes_refused_for_a_full_disk_again_once_space_frees(
    disk: FullDisk, tmp_path: Path
) -> None:
    process = await _start(disk, tmp_path)
    try:
        async with Client(process.url, "default", node="py-writer", timeout=TIMEOUT) as client:
            await client.set("before", 1)
            with client.subscribe(Rejected) as rejections:
                await disk.fill(process)
                changes = [
                    await client.set(f"k{i}", {"i": i, "v": BIG}, wait=False) for i in range(5)
                ]
                rejected: Rejected = await rejections.get(timeout=TIMEOUT)
            assert rejected.code == "internal", rejected
            assert rejected.retry_after is not None, "internal is worth another attempt"
            assert client.pending_count > 0
            await asyncio.sleep(1.5)  # at least one retry (after a pause of 1 s) while full
            assert client.pending_count > 0, "acknowledged while the disk was full"
            await disk.free(process)
            await client.flush(timeout=3 * TIMEOUT)
        _, state = await snapshot(process.url, node="judge")
        assert state["before"]["value"] == 1
        for change in changes:
            assert (state[change.key]["ts"], state[change.key]["value"]) == (
                change.ts,
                change.value,
            )
    finally:
        process.cleanup()


async def test_a_fold_the_full_disk_refuses_gives_back_the_space_and_waits(
    tmp_path: Path,
) -> None:
    # The log has grown as large as the file, so a commit starts a fold, which needs
    # room for a whole new file: there is room for the log, not for the file. The
    # failed fold must delete its partial file, or the next append finds no room.
    tmpfs = _mounted_tmpfs(tmp_path)
    disk = TmpfsDisk(tmpfs)
    # No history: its rows would take some of the room measured out for the fold below.
    args = ("--fold-min-bytes", "2000", "--history-retention", "0")
    process = ServerProcess(data=disk.data, logs=tmp_path / "logs", args=args)
    docs = disk.data / "docs"
    try:
        await process.start()
        writer = await RawClient.connect(process.url, "writer")
        await writer.hello()
        ledger = Ledger()

        async def write(key: str, size: int) -> Frame:
            ops = [writer.stamps.set(key, "v" * size)]
            ledger.record(ops)
            answer = await writer.write(ops)
            if answer["type"] == "ack":
                ledger.ack(ops, answer["seq"])
            return answer

        async def fold_failed() -> bool:
            for _ in range(20):  # a fold runs in the background: look for its end, briefly
                if re.search(r"fold\S* failed", process.stderr):  # its log line
                    return True
                await asyncio.sleep(0.02)
            return False

        for i in range(40):  # a file of about 85 kB
            assert (await write(f"k{i}", 2000))["type"] == "ack"
        await asyncio.sleep(0.5)  # let the last fold finish
        file_bytes = (docs / "default.json").stat().st_size
        for i in range(200):  # the log up to about 10 kB below the file's size
            if sum(p.stat().st_size for p in docs.glob("*.log")) > file_bytes - 10_000:
                break
            assert (await write(f"k{i % 40}", 1000))["type"] == "ack"
        tmpfs.fill()
        with open(tmpfs.filler, "r+b") as filler:  # leave room for half a file
            filler.truncate(filler.seek(0, 2) - file_bytes // 2)
        for i in range(30):
            assert (await write(f"k{i % 40}", 1000))["type"] == "ack", "refused before the fold"
            log_bytes = sum(p.stat().st_size for p in docs.glob("*.log"))
            if log_bytes > file_bytes and await fold_failed():
                break
        else:
            raise AssertionError("no fold ran out of room")
        staged = [(p.name, p.stat().st_size) for p in docs.glob("*.tmp")]
        assert not staged, f"the failed fold left {staged}; {tmpfs.available()} bytes free"
        assert tmpfs.available() > 8192
        # No new fold for a while: on a full disk it would take the room the appends need.
        for i in range(10):
            answer = await write(f"after-the-failed-fold-{i}", 1000)
            assert answer["type"] == "ack", answer
        await asyncio.sleep(0.2)  # awaiting what must not happen: a second fold's failure
        failures = re.findall(r"fold\S* failed", process.stderr)
        assert len(failures) == 1, f"{len(failures)} folds failed: one was retried at once"
        # A write bigger than the room left is refused but stays merged (readers saw it),
        # so the writes after it wait for it: they are refused too until there is room.
        size = tmpfs.available() + 4096
        too_big = await write("bigger-than-the-room-left", size)
        assert too_big["type"] == "error" and too_big["code"] == "internal", too_big
        behind = await write("behind-the-big-one", 10)
        assert behind["type"] == "error" and behind["code"] == "internal", behind
        with open(tmpfs.filler, "r+b") as filler:  # room for it, and for another fold
            filler.truncate(max(filler.seek(0, 2) - 2 * size - 2 * file_bytes, 0))
        answer = await write("behind-the-big-one", 10)
        assert answer["type"] == "ack", answer
        await process.kill()
        await process.start()
        _, state = await snapshot(process.url)
        ledger.check(state, "after the failed fold")
        assert state["bigger-than-the-room-left"]["value"] == "v" * size, "stored once room came"
    finally:
        process.cleanup()
        tmpfs.unmount()
