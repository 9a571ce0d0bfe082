"""A node publishes a write at its merge, while its fsync runs (issue #12).

Real nodes on a real ``redis-server``, node 1 under ``strace``: its log's fsyncs
held up (a slow disk), or held up and then killed on entry to a log write (a
crash after the write was published, before it reached node 1's disk). A reader
on node 2 gets the write before node 1's writer gets its ack, which still waits
for node 1's fsync (and in ``--cluster-ack redis`` mode for Redis too). After the
crash node 1 starts with a new crash generation and takes the write back from
the cluster: it is another node's view now; nothing converges away.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faults import STRACE, TracedServer, injected_kill, snapshot
from servers import TIMEOUT, Frame, RawClient, ServerProcess

from bench.cluster_redis import RedisProcess

HELD_FOR = 1.5
"""Seconds each held-up log call of node 1 waits."""
HELD = f"delay_enter={int(HELD_FOR * 1_000_000)}"
WRITES = ("write", "pwrite64")
STATS = "fstat,newfstatat"
"""How ``os.fstat`` reaches the kernel, by libc version."""
DOC = "notes"
LOG = f"docs/{DOC}.1.log"
"""The document's first log segment, where every append of these tests goes."""

pytestmark = pytest.mark.skipif(
    not Path(STRACE).exists(), reason="needs strace (make test-python installs it)"
)


def _log_faults(data: Path, trace: Path, *faults: tuple[str, str]) -> list[str]:
    """strace's prefix: each (syscalls, fault) injected into node 1's log calls only."""
    traced = ",".join(syscalls for syscalls, _ in faults)
    prefix = [STRACE, "-f", "-o", str(trace), "-e", f"trace={traced}", "-P", str(data / LOG)]
    for syscalls, fault in faults:
        prefix += ["-e", f"inject={syscalls}:{fault}"]
    return [*prefix, "--"]


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A redis-server that fsyncs every write (as ``--cluster-ack redis`` requires)."""
    process = RedisProcess(tmp_path / "redis", args=("--appendfsync", "always"))
    await process.start()
    try:
        yield process
    finally:
        process.cleanup()


async def _state(url: str) -> dict[str, Frame]:
    return (await snapshot(url, DOC))[1]


async def _until_state(url: str, expected: dict[str, Frame]) -> None:
    """Wait (bounded) until the node at ``url`` holds ``expected``."""
    async with asyncio.timeout(6 * TIMEOUT):
        while await _state(url) != expected:
            await asyncio.sleep(0.1)  # replication has no event a test can await: poll


@pytest.mark.parametrize("ack", ["local", "redis"])
async def test_another_nodes_reader_gets_a_write_while_its_fsync_is_held_up(
    ack: str, redis: RedisProcess, tmp_path: Path
) -> None:
    data = tmp_path / "n1"
    args = ("--cluster", redis.url, "--cluster-ack", ack)
    one = TracedServer(data=data, logs=tmp_path / "logs1", args=args)
    one.prefix = _log_faults(data, tmp_path / "strace.txt", ("fsync,fdatasync", HELD))
    two = ServerProcess(tmp_path / "n2", tmp_path / "logs2", args=args)
    try:
        await asyncio.gather(one.start(), two.start())
        writer = await RawClient.connect(one.url, "writer")
        await writer.hello(doc=DOC)
        reader = await RawClient.connect(two.url, "reader")
        await reader.hello(doc=DOC)
        # The first write creates the document's files; the second is the one timed.
        first = writer.stamps.set("created", True)
        assert (await writer.write([first], id=1))["type"] == "ack"
        await reader.recv_until(lambda f: f["type"] == "ops")
        entry = writer.stamps.set("colour", "blue")
        sent = time.monotonic()
        await writer.send({"type": "ops", "id": 2, "ops": [entry]})
        # Both wait at once: each arrival is timed as it happens.
        (ack_frame, acked_at), (broadcast, received_at) = await asyncio.gather(
            writer.arrival("ack"), reader.arrival("ops")
        )
        assert ack_frame["id"] == 2 and ack_frame["applied"] == 1
        assert acked_at - sent >= HELD_FOR * 0.9, "the ack did not wait for node 1's fsync"
        assert broadcast["ops"] == [entry] and broadcast["origin"] == "writer"
        # Before node 1's fsync could end (in redis mode the ack's other wait, for Redis,
        # may end first: only the fsync sets the ack apart from the broadcast).
        assert received_at - sent < HELD_FOR, "node 2's reader waited for node 1's fsync"
        assert received_at < acked_at
    finally:
        one.cleanup()
        two.cleanup()


async def test_a_write_published_then_lost_by_a_crash_comes_back_to_its_node(
    redis: RedisProcess, tmp_path: Path
) -> None:
    data, trace = tmp_path / "n1", tmp_path / "strace.txt"
    one = TracedServer(data=data, logs=tmp_path / "logs1", args=("--cluster", redis.url))
    # Each append is held up at its fstat (strace delivers no signal to a delayed call),
    # and the second is killed as it writes: published by then, never written (a write
    # in the page cache would survive kill -9).
    one.prefix = _log_faults(data, trace, (STATS, HELD), (",".join(WRITES), "signal=KILL:when=2"))
    two = ServerProcess(tmp_path / "n2", tmp_path / "logs2", args=("--cluster", redis.url))
    try:
        await asyncio.gather(one.start(), two.start())
        writer = await RawClient.connect(one.url, "writer")
        await writer.hello(doc=DOC)
        reader = await RawClient.connect(two.url, "reader")
        await reader.hello(doc=DOC)
        kept = writer.stamps.set("kept", "acknowledged")
        assert (await writer.write([kept], id=1))["type"] == "ack"
        await reader.recv_until(lambda f: f["type"] == "ops")
        epoch = (await snapshot(one.url, DOC))[0]["epoch"]
        phantom = writer.stamps.set("phantom", "published, never on node 1's disk")
        await writer.send({"type": "ops", "id": 2, "ops": [phantom]})
        frames = await reader.recv_until(lambda f: f["type"] == "ops")
        assert frames[-1]["ops"] == [phantom]
        assert one.process is not None and one.process.poll() is None, (
            "node 2's reader got the write only after node 1's append"
        )
        assert await one.wait() == -signal.SIGKILL
        injected_kill(trace, WRITES)
        # What node 1 remembers as published never passes what its disk holds.
        published = json.loads((data / "cluster.json").read_text())["published"]
        assert published.get(DOC, ["", 0])[1] <= 1, published

        one.prefix = []
        await one.start()
        head, state = await snapshot(one.url, DOC)
        assert head["epoch"] != epoch, "a new epoch after the crash"
        assert state["kept"] == kept, "an acknowledged write was lost"
        everything = {"kept": kept, "phantom": phantom}
        await _until_state(one.url, everything)
        await _until_state(two.url, everything)
    finally:
        one.cleanup()
        two.cleanup()
