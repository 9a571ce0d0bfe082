"""``make bench-cluster``'s failure measurements: failover, and convergence after a cut.

Each runs on a fresh two-node cluster (one ``redis-server``) in a temporary folder:

- **failover**: a ``syncd.Client`` given both nodes' URLs holds a document of
  1,000 keys on node 1; node 1 is killed with ``kill -9``; the time from the
  kill to the client's ``Synced`` on node 2 (after its ``Moved``).
- **convergence**: node 2 reaches Redis through a TCP proxy, which is cut for
  30 s while a writer on node 1 makes 10,000 sets (one key a message, paced over
  the cut); the time from healing the proxy until a client of node 2 holds all
  10,000 keys.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from bench.cluster_redis import RedisProcess, TcpProxy
from bench.server.clients import SyncdWriter, open_client
from bench.server.fanout import DOC, WriterState, run_writer
from bench.server.servers import HOST, SYNCD, RunningServer, start_server, wait_listening
from syncd.client import Backoff, Client
from syncd.events import Moved, Synced

__all__ = ["CUT_SECONDS", "CUT_WRITES", "FAILOVER_KEYS", "converge_after_cut", "failover"]

FAILOVER_KEYS: Final = 1_000
CUT_SECONDS: Final = 30.0
CUT_WRITES: Final = 10_000
TIMEOUT: Final = 60.0
"""Bound on every wait of a measurement."""


def _ws(server: RunningServer) -> str:
    return f"ws://{HOST}:{server.port}/ws"


@asynccontextmanager
async def _two_nodes(
    root: Path, second_through_proxy: bool
) -> AsyncIterator[tuple[RunningServer, RunningServer, TcpProxy | None]]:
    redis = RedisProcess(root / "redis")
    proxy: TcpProxy | None = None
    servers: list[RunningServer] = []
    try:
        await redis.start()
        second_url = redis.url
        if second_through_proxy:
            proxy = TcpProxy(redis.port)
            await proxy.start()
            second_url = proxy.url
        for name, url in (("n1", redis.url), ("n2", second_url)):
            servers.append(start_server(SYNCD, root / name, extra=("--cluster", url)))
        for server in servers:
            await wait_listening(server)
        yield servers[0], servers[1], proxy
    finally:
        for server in servers:
            server.stop()
        if proxy is not None:
            await proxy.close()
        redis.cleanup()


async def _until_count(client: Client, count: int, timeout: float) -> None:
    """Wait until ``client``'s replica holds ``count`` keys."""
    async with asyncio.timeout(timeout):
        with client.changes() as changes:
            while len(client) < count:
                await changes.get()


async def failover() -> float:
    """One failover on a fresh cluster: seconds from ``kill -9`` to ``Synced`` elsewhere."""
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        async with _two_nodes(Path(tmp), second_through_proxy=False) as (first, second, _):
            keys = {f"key{i:04d}": i for i in range(FAILOVER_KEYS)}
            async with Client(_ws(first), DOC, node="loader", timeout=TIMEOUT) as loader:
                await loader.update(keys)
            async with Client(_ws(second), DOC, node="replica-check", timeout=TIMEOUT) as check:
                await _until_count(check, FAILOVER_KEYS, TIMEOUT)
            client = Client(
                [_ws(first), _ws(second)],
                DOC,
                node="mover",
                timeout=TIMEOUT,
                backoff=Backoff(0.05, 0.5),
            )
            async with client:
                with client.subscribe(Moved, Synced) as events:
                    killed = time.monotonic()
                    first.kill()
                    moved = False
                    async with asyncio.timeout(TIMEOUT):
                        while True:
                            event = await events.get()
                            if isinstance(event, Moved):
                                moved = event.url == _ws(second)
                            elif moved:
                                break
                elapsed = time.monotonic() - killed
                if len(client) != FAILOVER_KEYS:
                    raise RuntimeError(f"after failover the client holds {len(client)} keys")
                return elapsed


async def converge_after_cut(
    cut_seconds: float = CUT_SECONDS,
    writes: int = CUT_WRITES,
    progress: Callable[[int], None] | None = None,
) -> float:
    """One cut on a fresh cluster: seconds from healing until node 2 has every write."""
    with tempfile.TemporaryDirectory(prefix="bench-cut-") as tmp:
        async with _two_nodes(Path(tmp), second_through_proxy=True) as (first, second, proxy):
            assert proxy is not None
            writer = SyncdWriter(DOC, "writer")
            writer.expect(writes)
            state = WriterState(writer, writes)
            connection = await open_client(HOST, first.port, "/ws", writer.handshake(), state)
            async with Client(_ws(second), DOC, node="watcher", timeout=TIMEOUT) as watcher:
                await proxy.cut()
                cut_at = time.monotonic()
                await run_writer(
                    connection,
                    state,
                    window=256,
                    burst=16,
                    rate=writes / (cut_seconds * 0.9),  # done a little before the heal
                    timeout=cut_seconds * 2,
                    progress=progress,
                )
                await connection.close()
                await asyncio.sleep(max(cut_seconds - (time.monotonic() - cut_at), 0.0))
                if len(watcher) != 0:
                    raise RuntimeError("node 2 received writes while cut off from Redis")
                await proxy.heal()
                healed = time.monotonic()
                await _until_count(watcher, writes, TIMEOUT)
                return time.monotonic() - healed
