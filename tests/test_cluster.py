"""Several ``syncd serve`` nodes sharing documents through a real ``redis-server``.

Every node is a separate process; every wait polls real state (handshakes,
``/metrics``) up to a bounded deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faults import StraceDisk
from servers import (
    REPO,
    START_TIMEOUT,
    TIMEOUT,
    Frame,
    RawClient,
    ServerProcess,
    free_port,
    http_get,
    metrics,
)

from bench.cluster_redis import RedisProcess, TcpProxy
from syncd.cluster.state import parse_id
from syncd.crdt import wall_clock_ms

CONVERGE_TIMEOUT = 6 * TIMEOUT
"""How long nodes may take to agree (replication, repair)."""


@dataclass
class Cluster:
    """One redis-server and the nodes started on it."""

    root: Path
    redis: RedisProcess
    nodes: list[ServerProcess] = field(default_factory=list)
    clients: list[RawClient] = field(default_factory=list)

    def node(self, *args: str, url: str | None = None) -> ServerProcess:
        """A node (not started yet) of this cluster, with its own data folder."""
        number = len(self.nodes) + 1
        process = ServerProcess(
            self.root / f"n{number}",
            self.root / f"logs{number}",
            args=("--cluster", url or self.redis.url, *args),
        )
        self.nodes.append(process)
        return process

    async def start(self, count: int, *args: str) -> list[ServerProcess]:
        """Start ``count`` nodes."""
        started = [self.node(*args) for _ in range(count)]
        await asyncio.gather(*(node.start() for node in started))
        return started

    async def client(self, node: ServerProcess, name: str, doc: str = "notes") -> RawClient:
        """A client that said hello to ``doc`` on ``node``."""
        client = await RawClient.connect(node.url, name)
        self.clients.append(client)
        await client.hello(doc=doc)
        return client


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A started redis-server; nodes are added by the test. Everything stops afterwards."""
    redis = RedisProcess(tmp_path / "redis")
    await redis.start()
    made = Cluster(tmp_path, redis)
    try:
        yield made
    finally:
        for client in made.clients:
            await client.connection.close()
        for node in made.nodes:
            node.cleanup()
        redis.cleanup()


async def state(node: ServerProcess, doc: str = "notes") -> dict[str, Frame]:
    """Every entry of ``doc`` on ``node`` (live and tombstones), from a fresh handshake."""
    client = await RawClient.connect(node.url, "inspector")
    try:
        return (await client.hello(doc=doc)).state
    finally:
        await client.close()


async def stream(redis: RedisProcess) -> list[tuple[str, str]]:
    """The cluster's stream: (id, ops JSON) of each entry."""
    client = redis.client()
    try:
        raw: Any = await client.xrange("syncd:log")
    finally:
        await client.aclose()
    return [(str(entry_id), str(fields["ops"])) for entry_id, fields in raw]


async def welcome(node: ServerProcess, doc: str = "notes") -> Frame:
    """The ``welcome`` a new client of ``doc`` gets from ``node``."""
    client = await RawClient.connect(node.url, "greeted")
    try:
        return (await client.hello(doc=doc)).welcome
    finally:
        await client.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, for at most :data:`CONVERGE_TIMEOUT` seconds."""
    deadline = asyncio.get_running_loop().time() + CONVERGE_TIMEOUT
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {CONVERGE_TIMEOUT:g} s: {what}")
        await asyncio.sleep(0.1)  # replication has no event a test can await: poll


async def converged(nodes: list[ServerProcess], doc: str = "notes", **expected: object) -> None:
    """Wait until every node holds the same entries of ``doc``, with these live values."""

    async def agree() -> bool:
        states = [await state(node, doc) for node in nodes]
        values = {k: e.get("value") for k, e in states[0].items() if not e.get("deleted")}
        return all(s == states[0] for s in states) and all(
            values.get(k) == v for k, v in expected.items()
        )

    await eventually(agree, f"{len(nodes)} nodes agree on {doc} with {expected}")


async def write(client: RawClient, key: str, value: Any) -> Frame:
    """Set ``key`` and return the ack."""
    answer = await client.write([client.stamps.set(key, value)])
    assert answer["type"] == "ack", answer
    return answer


# -- replication ---------------------------------------------------------------------------


async def test_three_nodes_share_writes_with_their_origin(cluster: Cluster) -> None:
    n1, n2, n3 = await cluster.start(3)
    watcher = await cluster.client(n1, "watcher")
    writers = [await cluster.client(node, f"writer{i}") for i, node in enumerate((n1, n2, n3))]
    for i, writer in enumerate(writers):
        await write(writer, f"k{i}", i)
    broadcast = await watcher.recv_until(
        lambda f: f["type"] == "ops" and any(e["key"] == "k2" for e in f["ops"])
    )
    assert broadcast[-1]["origin"] == "writer2", "the origin is the client's node on node 3"
    await converged([n1, n2, n3], k0=0, k1=1, k2=2)
    welcomes = [await welcome(n) for n in (n1, n2, n3)]
    clusters = {w.get("cluster") for w in welcomes}
    assert len(clusters) == 1 and None not in clusters, welcomes


async def test_a_killed_node_catches_up_on_restart(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2)
    writer = await cluster.client(n1, "writer")
    await write(writer, "before", 1)
    await converged([n1, n2], before=1)
    await n2.kill()
    for i in range(20):
        await write(writer, f"while{i}", i)
    await n2.start()
    await converged([n1, n2], before=1, while19=19)


async def test_a_write_acknowledged_before_a_crash_is_published_on_restart(
    cluster: Cluster,
) -> None:
    n1, n2 = await cluster.start(2)
    writer = await cluster.client(n1, "writer")
    await write(writer, "a", 1)
    await converged([n1, n2], a=1)
    await n2.kill()
    # Redis goes away for a moment: n1 acknowledges from its disk and cannot publish.
    await cluster.redis.kill()
    await write(writer, "b", 2)
    await n1.kill()
    await cluster.redis.start()
    await asyncio.gather(n1.start(), n2.start())
    await converged([n1, n2], a=1, b=2)


async def test_a_node_cut_from_redis_keeps_serving_and_converges_after(
    cluster: Cluster,
) -> None:
    proxy = TcpProxy(cluster.redis.port)
    await proxy.start()
    try:
        n1 = cluster.node()
        n2 = cluster.node(url=proxy.url)
        await asyncio.gather(n1.start(), n2.start())
        assert (await http_get(n2.port, "/healthz?cluster")).status == 200
        await proxy.cut()
        local = await cluster.client(n2, "local")
        other = await cluster.client(n2, "other")
        await write(local, "cut-off", 1)  # acknowledged from n2's disk while cut off
        seen = await other.recv_until(lambda f: f["type"] == "ops")
        assert seen[-1]["ops"][0]["key"] == "cut-off", "its own clients still sync"
        await write(await cluster.client(n1, "far"), "meanwhile", 2)

        async def unhealthy() -> bool:
            return (await http_get(n2.port, "/healthz?cluster")).status == 503

        await eventually(unhealthy, "n2 says it is cut off from the cluster")
        assert (await http_get(n2.port, "/healthz")).body == b"ok\n", "still serving"
        await proxy.heal()
        await converged([n1, n2], "notes", **{"cut-off": 1, "meanwhile": 2})
        assert (await http_get(n2.port, "/healthz?cluster")).status == 200
    finally:
        await proxy.close()


async def test_redis_killed_and_restarted_from_its_append_only_file(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2)
    writer = await cluster.client(n1, "writer")
    await write(writer, "a", 1)
    await converged([n1, n2], a=1)
    await cluster.redis.kill()
    await write(writer, "b", 2)
    await cluster.redis.start()
    await write(writer, "c", 3)
    await converged([n1, n2], a=1, b=2, c=3)


async def test_redis_restarted_empty(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2)
    await write(await cluster.client(n1, "writer"), "a", 1)
    await converged([n1, n2], a=1)
    cluster_id = (await welcome(n1))["cluster"]
    await n2.kill()
    await cluster.redis.kill()
    cluster.redis.wipe()
    await cluster.redis.start()
    await write(await cluster.client(n1, "writer2"), "b", 2)
    await n2.start()
    await converged([n1, n2], a=1, b=2)
    assert (await welcome(n2))["cluster"] == cluster_id, "the nodes give the cluster its id back"

    async def counted() -> bool:
        # Counted once every document is pulled, which may be just after the values agree.
        gaps = await metrics(n2.port)
        return gaps.get('syncd_cluster_gaps_repaired_total{reason="redis_reset"}', 0) >= 1

    await eventually(counted, "the reset is counted as repaired")


async def test_a_node_behind_a_trimmed_stream_resyncs_by_snapshot(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2, "--cluster-retention", "5")
    writer = await cluster.client(n1, "writer")
    await write(writer, "first", 0)
    await converged([n1, n2], first=0)
    n2.signal(signal.SIGTERM)
    assert await n2.wait() == 0
    for i in range(30):
        await write(writer, f"k{i}", i)
    redis = cluster.redis.client()
    try:

        async def trimmed() -> bool:
            return int(await redis.xlen("syncd:log")) <= 5

        await eventually(trimmed, "the stream is trimmed to the retention")
    finally:
        await redis.aclose()
    await n2.start()
    await converged([n1, n2], first=0, k0=0, k29=29)

    async def counted() -> bool:
        # Counted once every document is pulled, which may be just after the values agree.
        gaps = await metrics(n2.port)
        return gaps.get('syncd_cluster_gaps_repaired_total{reason="trimmed"}', 0) >= 1

    await eventually(counted, "the trimmed gap is counted as repaired")


async def _heartbeat(cluster: Cluster, node: ServerProcess) -> Frame:
    """``node``'s latest heartbeat in Redis (its cursor, its time)."""
    server = (await welcome(node))["node"]
    client = cluster.redis.client()
    try:
        text: Any = await client.hget("syncd:nodes", server)
    finally:
        await client.aclose()
    heartbeat: Frame = json.loads(text)
    return heartbeat


async def test_a_node_whose_disk_refuses_entries_keeps_its_cursor_before_them(
    cluster: Cluster,
) -> None:
    # The replicator reads on while entries commit; its cursor still never passes an
    # entry that is not on the node's disk, so a crash then loses nothing.
    n1, n2 = await cluster.start(2)
    writer = await cluster.client(n1, "writer")
    await write(writer, "a", 1)
    await converged([n1, n2], a=1)
    disk = StraceDisk(n2.data, cluster.root / "strace.txt")
    try:
        await disk.fill(n2)
        await write(writer, "b", 2)
        (entry_id, _), *_ = [e for e in await stream(cluster.redis) if '"b"' in e[1]]

        async def merged_in_memory() -> bool:
            return "b" in await state(n2)

        await eventually(merged_in_memory, "node 2 merges b (its disk refuses to store it)")
        seen_ms = wall_clock_ms()

        async def beat_since() -> bool:
            return int((await _heartbeat(cluster, n2))["time"]) > seen_ms + 1000

        await eventually(beat_since, "node 2 beats a second after merging b")
        cursor = (await _heartbeat(cluster, n2))["cursor"]
        assert parse_id(cursor) < parse_id(entry_id), (cursor, entry_id)
        await n2.kill()
    finally:
        disk.close()
    await n2.start()
    await converged([n1, n2], a=1, b=2)


# -- acknowledging through Redis -------------------------------------------------------------


async def test_redis_ack_mode_answers_internal_while_redis_is_down(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis", args=("--appendfsync", "always"))
    await redis.start()
    node = ServerProcess(
        tmp_path / "n1", tmp_path / "logs", args=("--cluster", redis.url, "--cluster-ack", "redis")
    )
    try:
        await node.start()
        client = await RawClient.connect(node.url, "writer")
        await client.hello(doc="notes")
        await write(client, "a", 1)
        await redis.kill()
        entry = client.stamps.set("b", 2)
        answer = await client.write([entry])
        assert answer["type"] == "error" and answer["code"] == "internal", answer
        await redis.start()

        async def acknowledged() -> bool:
            answer = await client.write([entry])  # the client's resend
            return bool(answer["type"] == "ack")

        await eventually(acknowledged, "the resent write is acknowledged once Redis is back")
        published = await stream(redis)
        assert any('"b"' in ops for _, ops in published), published
        await client.close()
    finally:
        node.cleanup()
        redis.cleanup()


# -- refusing to start ---------------------------------------------------------------------


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``syncd serve`` that is expected to refuse to start (bounded)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "serve",
            "--port",
            "0",
            "--data",
            str(tmp_path / "d"),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://h:port/0"])
def test_a_bad_cluster_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    done = serve(tmp_path, "--cluster", url)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--cluster" in lines[0], done.stderr


def test_redis_down_at_start_is_refused(tmp_path: Path) -> None:
    done = serve(tmp_path, "--cluster", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use Redis" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("redis_args", "node_args", "says"),
    [
        (("--maxmemory-policy", "allkeys-lru"), (), "noeviction"),
        (("--appendfsync", "everysec"), ("--cluster-ack", "redis"), "appendfsync always"),
    ],
)
async def test_a_redis_it_cannot_use_is_refused(
    tmp_path: Path, redis_args: tuple[str, ...], node_args: tuple[str, ...], says: str
) -> None:
    redis = RedisProcess(tmp_path / "redis", args=redis_args)
    await redis.start()
    try:
        done = await asyncio.to_thread(serve, tmp_path, "--cluster", redis.url, *node_args)
    finally:
        redis.cleanup()
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


async def test_a_node_with_other_limits_is_refused(cluster: Cluster) -> None:
    await cluster.start(1)
    done = await asyncio.to_thread(
        serve, cluster.root, "--cluster", cluster.redis.url, "--max-value-bytes", "100"
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--max-value-bytes" in lines[0], done.stderr


# -- presence, tombstones, anti-entropy, metrics --------------------------------------------


async def test_presence_spans_the_nodes(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2)
    alice = await cluster.client(n1, "alice")
    bob = await RawClient.connect(n2.url, "bob")
    cluster.clients.append(bob)
    await bob.hello(doc="notes")
    joined = await alice.recv_until(
        lambda f: f["type"] == "presence" and "bob" in f.get("joined", [])
    )
    assert joined

    async def carol_sees_both() -> bool:
        return {"alice", "bob"} <= set((await welcome(n2))["peers"])

    await eventually(carol_sees_both, "a client of n2 is told of alice on n1")
    await bob.ping()  # reads the presence frames the probes caused, so the close completes
    await bob.close()
    await alice.recv_until(lambda f: f["type"] == "presence" and "bob" in f.get("left", []))


async def test_a_tombstone_is_kept_while_a_node_lags(cluster: Cluster) -> None:
    # Tombstones expire after ~1 ms and every commit folds: only the cluster keeps them.
    fast = ("--tombstone-retention", "0.00000001", "--fold-min-bytes", "1")
    n1, n2 = await cluster.start(2, *fast)
    writer = await cluster.client(n1, "writer")
    await write(writer, "gone", 1)
    await converged([n1, n2], gone=1)
    await n2.kill()
    answer = await writer.write([writer.stamps.delete("gone")])
    assert answer["type"] == "ack"
    for i in range(5):  # commits, each folding the log
        await write(writer, f"k{i}", i)
    assert (await state(n1)).get("gone", {}).get("deleted"), "kept: n2 has not seen it"
    await n2.start()
    await converged([n1, n2], k4=4)

    async def purged() -> bool:
        await write(writer, "tick", wall_clock_ms())  # a commit, so a fold
        return "gone" not in await state(n1)

    await eventually(purged, "purged once every node is past it")


async def test_anti_entropy_repairs_an_entry_the_stream_lost(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2, "--cluster-check-interval", "0.3")
    writer = await cluster.client(n1, "writer")
    await write(writer, "a", 1)
    await converged([n1, n2], a=1)
    n2.signal(signal.SIGTERM)
    assert await n2.wait() == 0
    await write(writer, "b", 2)

    async def published() -> bool:
        return any('"b"' in ops for _, ops in await stream(cluster.redis))

    await eventually(published, "n1 publishes b")
    last_id = (await stream(cluster.redis))[-1][0]
    # n2 comes back believing it read b: nothing in the stream tells it otherwise.
    state_file = n2.data / "cluster.json"
    saved = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**saved, "cursor": last_id}))
    await n2.start()
    await converged([n1, n2], a=1, b=2)

    async def counted() -> bool:
        # Counted once the document is pulled, which may be just after the values agree.
        found = await metrics(n2.port)
        return found.get('syncd_cluster_gaps_repaired_total{reason="digest_mismatch"}', 0) >= 1

    await eventually(counted, "the mismatch is counted as repaired")


async def test_metrics_show_each_peer(cluster: Cluster) -> None:
    n1, n2 = await cluster.start(2)
    await write(await cluster.client(n1, "writer"), "a", 1)
    await converged([n1, n2], a=1)
    first = await metrics(n1.port)
    assert first["syncd_cluster_connected"] == 1
    assert first["syncd_cluster_entries_published_total"] >= 1

    async def applied() -> bool:
        found = await metrics(n2.port)
        return any(k.startswith("syncd_cluster_entries_applied_total") for k in found)

    await eventually(applied, "n2 counts what it applied")
    found = await metrics(n2.port)
    assert any(k.startswith("syncd_cluster_peer_lag_entries{") for k in found), found
