"""The load generator's crowd (``bench/server/crowd.py``) against a real ``syncd serve``.

One crowd process, spawned as ``bench.server.connections`` spawns them and on the
same event loop (uvloop), joins a few hundred clients to one document; a writer
(this process) then sets a few keys. Every client gets to ``synced`` and every one
of the window's writes reaches every client, by the crowd's own count; the parent's
messages, among them the send times (as large as a full run's, larger than the
pipe's buffer), arrive whole. Correctness only: the timings are
``bench.server.connections``'s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from array import array
from typing import Any, Final

import pytest
from conftest import ProcessFactory
from servers import FACTOR

from bench.server.clients import SyncdWriter, open_client
from bench.server.crowd import CrowdSpec, CrowdTally, Joined, crowd_process

CLIENTS: Final = 300
WRITES: Final = 5
DOC: Final = "crowd"
TIMEOUT: Final = 60.0 * FACTOR
LARGE: Final = 1 << 20
"""Bytes of send times the parent sends: more than a socket pair holds at once."""


@pytest.mark.timeout(300)
async def test_a_crowd_process_syncs_every_client_and_counts_every_write(
    server_process: ProcessFactory,
) -> None:
    server = server_process(None)
    await server.start()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    nodes = tuple(f"conn-{i:04d}" for i in range(CLIENTS))
    spec = CrowdSpec("127.0.0.1", server.port, "/ws", DOC, nodes, 16, TIMEOUT)
    process = context.Process(target=crowd_process, args=(theirs, spec), daemon=True)
    process.start()
    theirs.close()
    loop = asyncio.get_running_loop()

    async def expect(kind: str) -> tuple[Any, ...]:
        """The crowd's next message other than its progress, which must be ``kind``."""
        for _ in range(100_000):
            message = await asyncio.wait_for(loop.run_in_executor(None, ours.recv), TIMEOUT)
            if message[0] != "progress":
                assert message[0] == kind, message
                return tuple(message[1:])
        raise AssertionError("the crowd sent nothing but progress")

    try:
        assert await expect("ready") == ()
        ours.send(("go", 0))
        (joined,) = await expect("synced")
        assert isinstance(joined, Joined)
        synced = array("q")
        synced.frombytes(joined.synced_ns)
        assert (joined.failures, joined.first_failures) == (0, [])
        assert len(synced) == CLIENTS and all(synced)

        writer = SyncdWriter(DOC, "writer")
        writer.expect(LARGE // 8)
        connection = await open_client(
            "127.0.0.1", server.port, "/ws", writer.handshake(), lambda *_: None, TIMEOUT
        )
        ours.send(("measure", 0, WRITES))
        assert await expect("measuring") == ()
        connection.send_many(writer.encode(i) for i in range(WRITES))
        ours.send(("sent", writer.sent_ns.tobytes(), 0))
        (tally,) = await expect("done")
        assert isinstance(tally, CrowdTally)
        assert sum(tally.counts.values()) == CLIENTS * WRITES
        assert (tally.missing, tally.lost, tally.join_counts) == (0, 0, {})
        ours.send(("close",))
        connection.abort()
        await asyncio.wait_for(loop.run_in_executor(None, process.join), TIMEOUT)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join()
