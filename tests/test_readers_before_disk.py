"""Readers see a write at its merge, its writer's ack waits for the fsync (issue #14, part 1).

Real servers under ``strace``: one whose fsyncs are held up (a slow disk), one
killed with SIGKILL on entry to a log write (a crash before a write that a reader
saw reached the disk). After the crash the server starts with a new epoch; a
reader (the real Python client) replaces its replica with the snapshot from the
same node, so the lost write vanishes there too, unless its writer sends it
again, and then it comes back everywhere. No acknowledged write is lost.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from faults import STRACE, TracedServer, injected_kill, snapshot
from servers import TIMEOUT, Frame, RawClient

from syncd.client import Backoff, Client
from syncd.events import Synced

FSYNCS = ("fsync", "fdatasync")
WRITES = ("write", "pwrite64")
HELD_FOR = 1.0
"""Seconds each fsync of the slow disk is held up."""

pytestmark = pytest.mark.skipif(
    not Path(STRACE).exists(), reason="needs strace (make test-python installs it)"
)


async def _arrival(client: RawClient, wanted: str) -> tuple[Frame, float]:
    """The first frame of type ``wanted`` and when (``time.monotonic()``) it came."""
    frames = await client.recv_until(lambda f: f["type"] == wanted)
    return frames[-1], time.monotonic()


async def test_readers_get_a_write_while_its_fsync_is_held_up_and_the_ack_waits(
    tmp_path: Path,
) -> None:
    delay_us = int(HELD_FOR * 1_000_000)
    process = TracedServer(data=tmp_path / "data", logs=tmp_path / "logs")
    process.prefix = [
        STRACE,
        "-f",
        "-o",
        str(tmp_path / "strace.txt"),
        "-e",
        f"trace={','.join(FSYNCS)}",
        "-e",
        f"inject={','.join(FSYNCS)}:delay_enter={delay_us}",
        "--",
    ]
    try:
        await process.start()
        writer = await RawClient.connect(process.url, "writer")
        await writer.hello()
        readers = [await RawClient.connect(process.url, f"reader-{i}") for i in range(3)]
        for reader in readers:
            await reader.hello()
        entry = writer.stamps.set("colour", "blue")
        sent = time.monotonic()
        await writer.send({"type": "ops", "id": 1, "ops": [entry]})
        # Every client waits at once: each arrival is timed as it happens.
        (ack, acked_at), *broadcasts = await asyncio.gather(
            _arrival(writer, "ack"), *(_arrival(r, "ops") for r in readers)
        )
        assert ack["id"] == 1 and ack["applied"] == 1
        assert acked_at - sent >= HELD_FOR * 0.9, "the ack did not wait for the fsync"
        for frame, received_at in broadcasts:
            assert frame["ops"] == [entry] and frame["seq"] == ack["seq"]
            assert received_at < acked_at, "a reader waited for the writer's fsync"
    finally:
        process.cleanup()


@pytest.mark.parametrize("resent", [False, True], ids=["vanishes", "comes-back"])
async def test_a_write_a_reader_saw_before_a_crash_vanishes_or_comes_back_everywhere(
    resent: bool, tmp_path: Path
) -> None:
    data, trace = tmp_path / "data", tmp_path / "strace.txt"
    process = TracedServer(data=data, logs=tmp_path / "logs")
    # The first append goes through; the second kills the server as it writes to the
    # log (before its fsync: a write that reached the page cache would survive kill -9).
    process.prefix = [
        STRACE,
        "-f",
        "-o",
        str(trace),
        "-e",
        f"trace={','.join(WRITES)}",
        "-P",
        str(data / "docs" / "default.1.log"),
        "-e",
        f"inject={','.join(WRITES)}:signal=KILL:when=2",
        "--",
    ]
    reader: Client | None = None
    try:
        await process.start()
        reader = Client(
            [process.url], "default", node="reader", timeout=TIMEOUT, backoff=Backoff(0.1, 0.5)
        )
        with reader.subscribe(Synced) as synced:
            await reader.connect()
            epoch = (await synced.get(timeout=TIMEOUT)).epoch
        writer = await RawClient.connect(process.url, "writer")
        await writer.hello()
        kept = writer.stamps.set("kept", "acknowledged")
        assert (await writer.write([kept]))["type"] == "ack"
        phantom = writer.stamps.set("phantom", "seen, never stored")
        with reader.changes() as changes:
            await writer.send({"type": "ops", "id": 2, "ops": [phantom]})
            async with asyncio.timeout(TIMEOUT):
                while (await changes.get()).key != "phantom":
                    pass
        assert reader.get("phantom") == "seen, never stored", "the reader saw the write"
        assert await process.wait() == -signal.SIGKILL
        injected_kill(trace, WRITES)

        process.prefix = []
        with reader.subscribe(Synced) as synced:
            await process.start()
            resync = await synced.get(timeout=TIMEOUT)
        assert resync.full and resync.epoch != epoch, "a new epoch after the crash"
        if resent:
            again = await RawClient.connect(process.url, "writer")
            await again.hello()
            assert (await again.write([phantom]))["applied"] == 1
        _, state = await snapshot(process.url)
        assert state["kept"] == kept, "an acknowledged write was lost"
        assert ("phantom" in state) is resent
        async with asyncio.timeout(TIMEOUT):
            while reader.to_dict() != {k: e["value"] for k, e in state.items()}:
                await asyncio.sleep(0.02)  # bounded by the timeout: the broadcast is on its way
        assert reader.entry("kept") is not None
    finally:
        if reader is not None:
            await reader.close()
        process.cleanup()
