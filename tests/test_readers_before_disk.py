"""Readers see a write at its merge, its writer's ack waits for the fsync (issue #14, part 1).

Real servers under ``strace``: one whose fsyncs are held up (a slow disk), one
killed with SIGKILL on entry to a log write (a crash before a write that a reader
saw reached the disk). After the crash the server starts with a new epoch; a
reader (the real Python client) replaces its replica with the snapshot from the
same node, so the lost write vanishes there too, unless its writer sends it
again, and then it comes back everywhere. In a cluster (a real ``redis-server``)
the reader moves to another node instead, whose snapshot lacks the lost write:
it merges the snapshot and relays the write, which then comes back everywhere.
No acknowledged write is lost.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from faults import STRACE, TracedServer, injected_kill, snapshot
from servers import TIMEOUT, Frame, RawClient, ServerProcess

from bench.cluster_redis import RedisProcess
from syncd.client import Backoff, Client
from syncd.events import Moved, Synced

FSYNCS = ("fsync", "fdatasync")
WRITES = ("write", "pwrite64")
HELD_FOR = 1.0
"""Seconds each fsync of the slow disk is held up."""

pytestmark = pytest.mark.skipif(
    not Path(STRACE).exists(), reason="needs strace (make test-python installs it)"
)


def _killed_at_second_log_write(data: Path, trace: Path) -> list[str]:
    """strace's prefix: the first append to the log goes through; the second kills the
    server as it writes (before its fsync: a write in the page cache survives kill -9)."""
    return [
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


async def _state_of(url: str) -> dict[str, Frame]:
    return (await snapshot(url))[1]


async def _until_state(url: str, expected: dict[str, Frame]) -> None:
    """Wait (bounded) until the node at ``url`` holds ``expected``."""
    async with asyncio.timeout(6 * TIMEOUT):
        while await _state_of(url) != expected:
            await asyncio.sleep(0.1)  # replication has no event a test can await: poll


def _held_fsyncs(trace: Path, delay_us: int) -> list[str]:
    """strace's prefix: each fsync is held up for ``delay_us`` microseconds (a slow disk)."""
    return [
        STRACE,
        "-f",
        "-o",
        str(trace),
        "-e",
        f"trace={','.join(FSYNCS)}",
        "-e",
        f"inject={','.join(FSYNCS)}:delay_enter={delay_us}",
        "--",
    ]


@asynccontextmanager
async def _slow_disk(tmp_path: Path, delay_us: int) -> AsyncIterator[TracedServer]:
    """A started server whose fsyncs are each held up for ``delay_us`` microseconds,
    killed on exit."""
    process = TracedServer(data=tmp_path / "data", logs=tmp_path / "logs")
    process.prefix = _held_fsyncs(tmp_path / "strace.txt", delay_us)
    try:
        await process.start()
        yield process
    finally:
        process.cleanup()


async def _greeted(url: str, *nodes: str) -> list[RawClient]:
    """A client for each of ``nodes``, each past its handshake."""
    clients = [await RawClient.connect(url, node) for node in nodes]
    for client in clients:
        await client.hello()
    return clients


async def _timed_until(client: RawClient, wanted: str) -> list[tuple[Frame, float]]:
    """Frames, each with its arrival time, up to the first of type ``wanted``."""
    timed: list[tuple[Frame, float]] = []
    while not timed or timed[-1][0]["type"] != wanted:
        timed.append((await client.recv(timeout=4 * TIMEOUT), time.monotonic()))
    return timed


async def test_readers_get_a_write_while_its_fsync_is_held_up_and_the_ack_waits(
    tmp_path: Path,
) -> None:
    async with _slow_disk(tmp_path, int(HELD_FOR * 1_000_000)) as process:
        writer, *readers = await _greeted(process.url, "writer", *(f"reader-{i}" for i in range(3)))
        entry = writer.stamps.set("colour", "blue")
        sent = time.monotonic()
        await writer.send({"type": "ops", "id": 1, "ops": [entry]})
        # Every client waits at once: each arrival is timed as it happens.
        (ack, acked_at), *broadcasts = await asyncio.gather(
            writer.arrival("ack"), *(r.arrival("ops") for r in readers)
        )
        assert ack["id"] == 1 and ack["applied"] == 1
        assert acked_at - sent >= HELD_FOR * 0.9, "the ack did not wait for the fsync"
        for frame, received_at in broadcasts:
            assert frame["ops"] == [entry] and frame["seq"] == ack["seq"]
            assert received_at < acked_at, "a reader waited for the writer's fsync"
            # The document's first write also creates its file (two fsyncs, then the
            # append's): readers need not wait for any of them.
            assert received_at - sent < HELD_FOR, "a reader waited for the file's creation"


async def test_a_reader_finds_a_write_it_was_sent_in_the_history_while_its_fsync_is_held_up(
    tmp_path: Path,
) -> None:
    # The broadcast comes before the fsync, the history's rows after it: the history
    # request must wait for the append, not answer without the write the reader holds.
    async with _slow_disk(tmp_path, int(HELD_FOR * 1_000_000)) as process:
        writer, reader = await _greeted(process.url, "writer", "reader")
        for id, value in enumerate(["first", "second"], start=1):
            entry = writer.stamps.set("colour", value)
            await writer.send({"type": "ops", "id": id, "ops": [entry]})
            broadcast, _ = await reader.arrival("ops")
            assert broadcast["ops"] == [entry]
            await reader.send({"type": "history", "id": id, "key": "colour"})
            page, _ = await reader.arrival("history_page")
            assert page["id"] == id
            assert page["versions"][0]["ts"] == entry["ts"], "the history lacks a write sent"
            await writer.arrival("ack")


async def _write_and_listen(
    writer: RawClient, writes: int, last_seq: asyncio.Future[int]
) -> list[Frame]:
    """Send ``writes`` messages at once, then read until this writer has every ack and
    every frame up to the last seq of all writers; return the acks and broadcasts."""
    ids = [writer.next_id() for _ in range(writes)]
    for id in ids:
        await writer.send({"type": "ops", "id": id, "ops": [writer.stamps.set(writer.node, id)]})
    frames = await writer.recv_until(lambda f: f["type"] == "ack" and f["id"] == ids[-1])
    seen = [f for f in frames if f["type"] in ("ack", "ops")]
    last = await last_seq
    if max(f["seq"] for f in seen) < last:
        frames = await writer.recv_until(lambda f: f["type"] == "ops" and f["seq"] >= last)
        seen += [f for f in frames if f["type"] in ("ack", "ops")]
    return seen


async def test_a_writer_receives_acks_and_broadcasts_in_seq_order_while_fsyncs_are_slow(
    tmp_path: Path,
) -> None:
    # Contract §5: a connection's resume point is the greatest seq it has seen, so a
    # broadcast merged after a writer's write must not overtake that write's ack.
    writers_count, writes = 4, 15
    async with _slow_disk(tmp_path, 50_000) as process:
        writers = await _greeted(process.url, *(f"writer-{i}" for i in range(writers_count)))
        last_seq: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        total = writers_count * writes
        tasks = [asyncio.create_task(_write_and_listen(w, writes, last_seq)) for w in writers]
        # Every write applies one entry: the last seq is the number of writes.
        last_seq.set_result(total)
        async with asyncio.timeout(4 * TIMEOUT):
            received = await asyncio.gather(*tasks)
        for writer, seen in zip(writers, received, strict=True):
            seqs = [f["seq"] for f in seen]
            assert seqs == sorted(seqs), f"{writer.node} got seqs out of order: {seqs}"
            acks = [f for f in seen if f["type"] == "ack"]
            assert len(acks) == writes and all(a["applied"] == 1 for a in acks)
            others = {e["key"] for f in seen if f["type"] == "ops" for e in f["ops"]}
            assert others == {w.node for w in writers} - {writer.node}, others


async def test_a_write_merged_while_another_waits_for_its_fsync_reaches_that_writer_after_its_ack(
    tmp_path: Path,
) -> None:
    # The case the burst above may or may not produce, made on purpose: B's write is
    # merged (seq n + 1) while A's (seq n) waits for its held fsync, and reaches A only
    # after A's ack, though B's readers have it at once.
    async with _slow_disk(tmp_path, int(HELD_FOR * 1_000_000)) as process:
        a, b, reader = await _greeted(process.url, "a", "b", "r")
        # A's frames, each with its arrival time, read as they come.
        a_frames = asyncio.create_task(_timed_until(a, "ops"))
        first = a.stamps.set("a", 1)
        await a.send({"type": "ops", "id": 1, "ops": [first]})
        merged_first, _ = await reader.arrival("ops")
        second = b.stamps.set("b", 1)
        await b.send({"type": "ops", "id": 1, "ops": [second]})
        merged_second, second_at = await reader.arrival("ops")
        assert [merged_first["ops"], merged_second["ops"]] == [[first], [second]]
        async with asyncio.timeout(4 * TIMEOUT):
            timed = [(f, at) for f, at in await a_frames if f["type"] in ("ack", "ops")]
        (ack, acked_at), (broadcast, _) = timed
        assert ack["type"] == "ack" and ack["seq"] == merged_first["seq"]
        assert broadcast["ops"] == [second] and broadcast["seq"] == merged_second["seq"]
        # The case happened: B's write was merged while A's fsync was held up.
        assert second_at < acked_at, "A's fsync ended before B's write was merged"


@pytest.mark.parametrize("resent", [False, True], ids=["vanishes", "comes-back"])
async def test_a_write_a_reader_saw_before_a_crash_vanishes_or_comes_back_everywhere(
    resent: bool, tmp_path: Path
) -> None:
    data, trace = tmp_path / "data", tmp_path / "strace.txt"
    process = TracedServer(data=data, logs=tmp_path / "logs")
    process.prefix = _killed_at_second_log_write(data, trace)
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


async def test_a_reader_moved_to_another_node_after_a_crash_relays_the_write_it_saw(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(tmp_path / "redis")
    data, trace = tmp_path / "n1", tmp_path / "strace.txt"
    one = TracedServer(data=data, logs=tmp_path / "logs1", args=("--cluster", redis.url))
    two = ServerProcess(tmp_path / "n2", tmp_path / "logs2", args=("--cluster", redis.url))
    one.prefix = _killed_at_second_log_write(data, trace)
    reader: Client | None = None
    try:
        await redis.start()
        await asyncio.gather(one.start(), two.start())
        reader = Client(
            [one.url, two.url], "default", node="reader", timeout=TIMEOUT, backoff=Backoff(0.1, 0.5)
        )
        await reader.connect()
        assert reader.server_url == one.url and reader.cluster is not None
        writer = await RawClient.connect(one.url, "writer")
        await writer.hello()
        kept = writer.stamps.set("kept", "acknowledged")
        assert (await writer.write([kept]))["type"] == "ack"
        await _until_state(two.url, {"kept": kept})
        phantom = writer.stamps.set("phantom", "seen on node 1, never stored there")
        with reader.subscribe(Moved) as moves, reader.changes() as changes:
            await writer.send({"type": "ops", "id": 2, "ops": [phantom]})
            async with asyncio.timeout(TIMEOUT):
                while (await changes.get()).key != "phantom":
                    pass
            assert await one.wait() == -signal.SIGKILL
            injected_kill(trace, WRITES)
            moved = await moves.get(timeout=6 * TIMEOUT)
        assert (moved.url, moved.cluster) == (two.url, reader.cluster)
        # Node 2 never had the phantom: the reader merged its snapshot (the values it
        # had do not flicker back) and relayed what the snapshot lacked.
        assert reader.get("phantom") == phantom["value"]
        everything = {"kept": kept, "phantom": phantom}
        await _until_state(two.url, everything)
        one.prefix = []
        await one.start()  # node 1 catches up from the cluster
        await _until_state(one.url, everything)
        assert reader.to_dict() == {k: e["value"] for k, e in everything.items()}
    finally:
        if reader is not None:
            await reader.close()
        one.cleanup()
        two.cleanup()
        redis.cleanup()


async def test_a_node_whose_disk_is_slow_passes_the_other_nodes_writes_on_to_its_readers_at_once(
    tmp_path: Path,
) -> None:
    # Node 2 commits each entry it is sent, but nobody waits for that: its disk must
    # not hold up what its readers get. (It did once more than 8 entries waited.)
    redis = RedisProcess(tmp_path / "redis")
    one = ServerProcess(tmp_path / "n1", tmp_path / "logs1", args=("--cluster", redis.url))
    two = TracedServer(data=tmp_path / "n2", logs=tmp_path / "logs2", args=("--cluster", redis.url))
    two.prefix = _held_fsyncs(tmp_path / "strace.txt", int(HELD_FOR * 1_000_000))
    try:
        await redis.start()
        await asyncio.gather(one.start(), two.start())
        (reader,) = await _greeted(two.url, "reader")
        (writer,) = await _greeted(one.url, "writer")
        keys = {f"key-{n}" for n in range(24)}
        for key in sorted(keys):
            assert (await writer.write([writer.stamps.set(key, "value")]))["type"] == "ack"
        acked_at = time.monotonic()
        missing = set(keys)

        def all_arrived(frame: Frame) -> bool:
            if frame["type"] == "ops":
                missing.difference_update(entry["key"] for entry in frame["ops"])
            return not missing

        frames = await reader.recv_until(all_arrived, timeout=4 * TIMEOUT)
        arrived_at = time.monotonic()
        assert all(f["origin"] == "writer" for f in frames if f["type"] == "ops")
        # Node 2's first commit alone takes three held fsyncs (the file, its folder, the log).
        assert arrived_at - acked_at < HELD_FOR, "node 2's readers waited for its disk"
    finally:
        one.cleanup()
        two.cleanup()
        redis.cleanup()
