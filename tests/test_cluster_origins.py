"""A web page served by one node of a cluster may open a WebSocket to the others.

Real nodes on a real ``redis-server``: each node allows the browser ``Origin``
of every registered node's advertised URL (``ws://h:p/ws`` → ``http://h:p``,
``wss`` → ``https``), read from the registry at every heartbeat, and still
refuses any other site.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from attacks import http_exchange, upgrade_request
from servers import TIMEOUT, ServerProcess, free_port

from bench.cluster_redis import RedisProcess

CONVERGE_TIMEOUT = 6 * TIMEOUT


async def status(node: ServerProcess, origin: str) -> int | None:
    """The status of a WebSocket opening handshake to ``node`` from a page of ``origin``."""
    answer = await http_exchange(node.port, upgrade_request(node.port, {"Origin": origin}))
    return answer.status if answer else None


async def until_status(node: ServerProcess, origin: str, expected: int) -> None:
    """Wait (bounded) until ``node`` answers ``origin`` with ``expected``: heartbeats are 1 s."""
    deadline = asyncio.get_running_loop().time() + CONVERGE_TIMEOUT
    while (found := await status(node, origin)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{origin} on node {node.port}: {found}, not {expected}")
        await asyncio.sleep(0.1)  # the registry is read once a heartbeat: poll


async def test_pages_of_the_registered_nodes_may_connect_and_others_may_not(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(tmp_path / "redis")
    await redis.start()

    def node(number: int, *args: str) -> ServerProcess:
        return ServerProcess(
            tmp_path / f"n{number}", tmp_path / f"logs{number}", ("--cluster", redis.url, *args)
        )

    n1, n2 = node(1), node(2)
    # A node reached by name over TLS (in front of it, a proxy): its pages are https.
    n3 = node(3, "--cluster-advertise", "wss://Node3.Example/ws")
    nodes = [n1, n2, n3]
    try:
        await asyncio.gather(n1.start(), n2.start())
        stranger = f"http://127.0.0.1:{free_port()}"
        await until_status(n2, f"http://127.0.0.1:{n1.port}", 101)
        await until_status(n1, f"http://127.0.0.1:{n2.port}", 101)
        assert await status(n1, f"http://127.0.0.1:{n1.port}") == 101, "its own pages"
        for refused in (stranger, "http://evil.example", "null", f"https://127.0.0.1:{n2.port}"):
            assert await status(n1, refused) == 403, refused
        # A node that joins later is allowed once the others read its heartbeat.
        assert await status(n1, "https://node3.example") == 403
        await n3.start()
        await until_status(n1, "https://node3.example", 101)
        await until_status(n2, "https://node3.example:443", 101)
        assert await status(n1, "http://node3.example") == 403, "the scheme is the page's"
    finally:
        for each in nodes:
            each.cleanup()
        redis.cleanup()


async def test_a_node_alone_still_refuses_other_nodes_pages(tmp_path: Path) -> None:
    alone = ServerProcess(tmp_path / "alone", tmp_path / "logs")
    other = ServerProcess(tmp_path / "other", tmp_path / "logs-other")
    try:
        await asyncio.gather(alone.start(), other.start())
        assert await status(alone, f"http://127.0.0.1:{other.port}") == 403
        assert await status(alone, f"http://127.0.0.1:{alone.port}") == 101
    finally:
        alone.cleanup()
        other.cleanup()
