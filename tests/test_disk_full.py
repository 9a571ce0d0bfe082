"""A full disk under a running server (contract §5, §6, §7): refused writes, no damage.

While the disk is full, each write is answered with an ``error`` of code
``internal`` carrying the message's ``id`` — never an ack — and the connection
stays open; the server keeps serving reads (snapshots of what was acknowledged,
``/healthz``) and does not exit. Once space frees, writes are acknowledged again
without a restart. After a kill -9 and a restart, every acknowledged write is
there, no refused one appears, and every data file parses. The product client
(:class:`syncd.client.Client`) sends refused writes again and delivers them once
space frees.

Both ways to fill a disk run (see :mod:`faults`): a small tmpfs holding the data
(``mount`` as root; where that is not permitted, that case falls back to the
other way) and strace attached to the server failing its writes with ENOSPC.
"""

from __future__ import annotations

import asyncio
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


async def test_a_full_disk_refuses_writes_keeps_serving_and_resumes_when_space_frees(
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
        # A document's first write creates its file: refused too, until space frees.
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
        # A new client gets what was acknowledged, and none of the refused writes.
        welcome, state = await snapshot(process.url, node="reader")
        assert welcome["seq"] == ledger.last_seq, welcome
        ledger.check(state, f"{disk.how}, while full")
        assert not [e for e in refused if state.get(e["key"]) == e]
        # Nothing refused was broadcast either.
        frames = (await watcher.ping())[:-1]
        assert not [f for f in frames if f["type"] == "ops"], frames

        await disk.free(process)
        resent = refused[-2:]  # the last refused message, sent again with its timestamps
        for ops in (resent, [writer.stamps.set("after", BIG), writer.stamps.delete("k0")]):
            ledger.record(ops)
            answer = await writer.write(ops)
            assert answer["type"] == "ack", f"{disk.how}: no ack once space freed: {answer}"
            assert answer["seq"] == ledger.last_seq + 2, answer
            ledger.ack(ops, answer["seq"])
        answer = await newcomer.write(first, id=2)
        assert (answer["type"], answer["seq"]) == ("ack", 1), answer
        seen = await watcher.recv_until(
            lambda f: f["type"] == "ops" and f["seq"] == ledger.last_seq
        )
        assert [e for f in seen if f["type"] == "ops" for e in f["ops"]][-4:-2] == resent

        await process.kill()
        check_data_files(disk.data / "docs", f"{disk.how}, after kill -9")
        await process.start()
        welcome, state = await snapshot(process.url, node="judge")
        assert (welcome["epoch"], welcome["seq"]) == (epoch, ledger.last_seq), welcome
        ledger.check(state, f"{disk.how}, after the restart")
        never = [e for e in refused if e not in resent]
        assert not [e for e in never if state.get(e["key"]) == e], "a refused write came back"
        _, fresh = await snapshot(process.url, doc="fresh", node="judge")
        assert fresh == {"first": first[0]}
        process.signal(signal.SIGTERM)
        assert await process.wait() == 0, process.stderr
        check_data_files(disk.data / "docs", f"{disk.how}, after a clean stop", staged=False)
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
        await disk.fill(process)
        await process.kill()
        await process.start()  # on the full disk
        await disk.fill(process)  # (strace: attach again, to the new process)
        welcome, state = await snapshot(process.url, node="reader")
        assert welcome["seq"] == ledger.last_seq
        ledger.check(state, f"{disk.how}, restarted while full")
        stamps = writer.stamps  # one replica: its clock goes on
        writer = await RawClient.connect(process.url, "writer")
        writer.stamps = stamps
        await writer.hello()
        ops = [writer.stamps.set("k0", BIG)]
        answer = await writer.write(ops, id=7)
        assert (answer["type"], answer["code"], answer["id"]) == ("error", "internal", 7), answer
        await disk.free(process)
        answer = await writer.write(ops, id=8)
        assert (answer["type"], answer["seq"]) == ("ack", ledger.last_seq + 1), answer
    finally:
        process.cleanup()


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
    tmpfs = Tmpfs(tmp_path / "tmpfs", 4 << 20)
    why = tmpfs.mount()
    if why is not None:
        pytest.skip(f"needs a tmpfs ({why}); the other tests cover a full disk without one")
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
        # No new fold for a while: on a full disk it would take the room the appends need,
        # even once a refused write has made the document reload (and count its log anew).
        too_big = await write("bigger-than-the-room-left", tmpfs.available() + 4096)
        assert too_big["type"] == "error" and too_big["code"] == "internal", too_big
        for i in range(10):
            answer = await write(f"after-the-failed-fold-{i}", 1000)
            assert answer["type"] == "ack", answer
        await asyncio.sleep(0.2)  # awaiting what must not happen: a second fold's failure
        failures = re.findall(r"fold\S* failed", process.stderr)
        assert len(failures) == 1, f"{len(failures)} folds failed: one was retried at once"
        await process.kill()
        await process.start()
        _, state = await snapshot(process.url)
        ledger.check(state, "after the failed fold")
    finally:
        process.cleanup()
        tmpfs.unmount()
