"""A burst of small messages crosses a cluster as a few stream entries, within the limits.

A node merges the consecutive messages of one client in a commit into one
stream entry while the entries fit the document's ``max_ops`` and a broadcast
frame's ``max_frame_bytes`` (docs/cluster.md). Real nodes on a real
``redis-server``; the stream is read back from Redis.
"""

from __future__ import annotations

import asyncio
import json

from servers import TIMEOUT, Frame
from test_cluster import Cluster, cluster, converged, stream

__all__ = ["cluster"]

MAX_OPS = 5
MAX_FRAME_BYTES = 4096
SMALL = 40
BIG = 20
BIG_VALUE = "x" * 600


async def test_a_burst_is_merged_into_entries_that_respect_the_limits(cluster: Cluster) -> None:
    limits = ("--max-ops", str(MAX_OPS), "--max-frame-bytes", str(MAX_FRAME_BYTES))
    n1, n2 = await cluster.start(2, *limits)
    writer = await cluster.client(n1, "writer")
    reader = await cluster.client(n2, "reader")
    ids = []
    # Sent back to back, without waiting for acks: the node commits them in few commits.
    for i in range(SMALL + BIG):
        value = i if i < SMALL else BIG_VALUE
        ids.append(writer.next_id())
        await writer.send(
            {"type": "ops", "id": ids[-1], "ops": [writer.stamps.set(f"k{i:02d}", value)]}
        )
    acked: set[int] = set()
    async with asyncio.timeout(TIMEOUT):
        while len(acked) < len(ids):
            frame = await writer.recv()
            assert frame["type"] != "error", frame
            if frame["type"] == "ack":
                acked.add(frame["id"])

    broadcasts: list[Frame] = []
    keys: set[str] = set()
    async with asyncio.timeout(6 * TIMEOUT):
        while len(keys) < SMALL + BIG:
            text = await reader.connection.recv()
            assert isinstance(text, str)
            assert len(text.encode()) <= MAX_FRAME_BYTES, "a broadcast over the frame limit"
            frame = json.loads(text)
            if frame["type"] == "ops":
                broadcasts.append(frame)
                keys.update(entry["key"] for entry in frame["ops"])
    assert {b["origin"] for b in broadcasts} == {"writer"}

    entries = await stream(cluster.redis)
    ops = [json.loads(text) for _, text in entries]
    assert sorted(e["key"] for entry in ops for e in entry) == [f"k{i:02d}" for i in range(60)]
    assert all(len(entry) <= MAX_OPS for entry in ops), [len(entry) for entry in ops]
    assert all(len(text.encode()) <= MAX_FRAME_BYTES for _, text in entries)
    assert len(entries) < SMALL + BIG, "consecutive messages of one client were merged"
    await converged([n1, n2], k00=0, k59=BIG_VALUE)
