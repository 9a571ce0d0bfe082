"""Clients given several server URLs: moving between servers, and local files by place.

Real ``syncd serve`` processes on 127.0.0.1 (killed with ``kill -9``), a real
``redis-server`` for the cluster, the real CLI as subprocesses and the TUI's
own store file. Every wait is bounded; events are awaited, and replication
between nodes (which has no event a test can await) is polled up to a deadline.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import ProcessFactory
from servers import REPO, TIMEOUT, RawClient, ServerProcess, free_port

from bench.cluster_redis import RedisProcess
from syncd.client import Backoff, Client
from syncd.client_store import store_file
from syncd.crdt import JSONValue
from syncd.events import Moved
from syncd.places import place_of
from syncd.tui.app import store_path
from syncd.urls import parse_urls

KEYS = 1_000
CONVERGE_TIMEOUT = 6 * TIMEOUT
"""How long nodes of a cluster may take to agree."""


async def syncd(*args: str) -> tuple[int, str, str]:
    """Run the ``syncd`` CLI (bounded); its exit code, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "SYNCD_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncd",
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(4 * TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    assert "Traceback" not in err.decode()
    return process.returncode, out.decode(), err.decode()


async def keys_on(url: str, doc: str) -> dict[str, object]:
    """The live values of ``doc`` on the server at ``url``, from a fresh handshake."""
    client = await RawClient.connect(url, "inspector")
    try:
        state = (await client.hello(doc=doc)).state
    finally:
        await client.close()
    return {k: e.get("value") for k, e in state.items() if not e.get("deleted")}


def dead_url() -> str:
    """The URL of a port nothing listens on."""
    return f"ws://127.0.0.1:{free_port()}/ws"


# -- URLs ----------------------------------------------------------------------------


def test_parse_urls_takes_a_comma_separated_string_or_a_list() -> None:
    assert parse_urls("127.0.0.1:1, http://h:2/,,") == ["ws://127.0.0.1:1/ws", "ws://h:2/ws"]
    assert parse_urls(["h:1", "ws://h:1/ws", "h:3"]) == ["ws://h:1/ws", "ws://h:3/ws"]
    with pytest.raises(ValueError, match="no server URL"):
        parse_urls(" , ")
    with pytest.raises(ValueError, match="'ws://h:x/ws'"):
        parse_urls("h:1,ws://h:x/ws")


async def test_a_bad_url_in_the_list_is_a_usage_error(home: Path) -> None:
    code, _, err = await syncd("get", "k", "--url", f"{dead_url()},ftp://nowhere")
    assert code == 2
    assert "invalid server URL 'ftp://nowhere'" in err


# -- two servers alone ---------------------------------------------------------------


async def test_a_client_moves_to_the_next_server_and_resends_its_pending_writes(
    home: Path, server_process: ProcessFactory
) -> None:
    first, second = server_process(), server_process()
    await asyncio.gather(first.start(), second.start())
    # A slow backoff: the move must not wait for it (only a whole failed round does).
    client = Client(
        [first.url, second.url], "notes", node="mover", timeout=TIMEOUT, backoff=Backoff(60, 60)
    )
    async with client:
        assert (client.server_url, client.cluster) == (first.url, None)
        await client.set("before", 1)
        with client.subscribe(Moved) as moves:
            await first.kill()
            await client.update({f"k{i}": i for i in range(20)}, wait=False)
            moved = await moves.get(timeout=TIMEOUT)
        assert (moved.url, moved.cluster) == (second.url, None)
        assert client.server_url == second.url
        await client.flush(timeout=TIMEOUT)
        assert await keys_on(second.url, "notes") == {f"k{i}": i for i in range(20)}


async def test_cli_commands_fall_through_to_a_live_url(
    home: Path, server_process: ProcessFactory
) -> None:
    live = server_process()
    await live.start()
    urls = f"{dead_url()},{live.url}"
    assert (await syncd("set", "colour", "blue", "--url", urls))[0] == 0
    assert (await syncd("get", "colour", "--url", urls))[:2] == (0, "blue\n")
    code, _, err = await syncd("get", "colour", "--url", f"{dead_url()},{dead_url()}")
    assert code == 3
    assert err.count("connection refused") == 2, err


# -- two nodes of a cluster ----------------------------------------------------------


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    """A redis-server and two started nodes of its cluster; all stopped afterwards."""
    redis = RedisProcess(tmp_path / "redis")
    await redis.start()
    started = [
        ServerProcess(tmp_path / f"n{i}", tmp_path / f"logs{i}", args=("--cluster", redis.url))
        for i in (1, 2)
    ]
    try:
        await asyncio.gather(*(node.start() for node in started))
        yield started
    finally:
        for node in started:
            node.cleanup()
        redis.cleanup()


async def replicated(url: str, doc: str, expected: dict[str, JSONValue]) -> None:
    """Wait (bounded) until the node at ``url`` holds ``expected``."""
    async with asyncio.timeout(CONVERGE_TIMEOUT):
        while await keys_on(url, doc) != expected:
            await asyncio.sleep(0.1)  # replication has no event a test can await: poll


async def test_a_client_moves_between_nodes_of_a_cluster_and_keeps_its_files(
    home: Path, nodes: list[ServerProcess]
) -> None:
    one, two = nodes
    urls = [one.url, two.url]
    data: dict[str, JSONValue] = {f"key{i:04}": i for i in range(KEYS)}

    def tui_store() -> Path:
        return store_file(place_of(urls), lambda key: store_path(key, "notes"))

    # First run: the cluster is not known yet, so the TUI's file is kept by URL.
    by_url = tui_store()
    assert by_url == store_path(one.url, "notes")
    async with Client(urls, "notes", node="tui-a", store=by_url, timeout=TIMEOUT) as client:
        await client.update(data)
        cluster = client.cluster
        assert cluster is not None and client.server_node is not None
    assert place_of([two.url]).key == two.url  # node 2 not reached yet: not known

    # Next run: the file moves to the cluster's place, once, and keeps the replica.
    by_cluster = tui_store()
    assert by_cluster == store_path(f"cluster:{cluster}", "notes") != by_url
    assert by_cluster.exists() and not by_url.exists()
    client = Client(urls, "notes", node="tui-a", store=by_cluster, timeout=TIMEOUT)
    assert client.to_dict() == data  # read from the file, before any connection
    await replicated(two.url, "notes", data)  # so that node 2 can serve every key
    try:
        await client.connect()
        assert client.server_url == one.url
        with client.subscribe(Moved) as moves:
            await one.kill()
            moved = await moves.get(timeout=CONVERGE_TIMEOUT)
        assert (moved.url, moved.cluster) == (two.url, cluster)
        assert moved.node is not None and moved.node == client.server_node
        await client.wait_synced(timeout=TIMEOUT)
        assert client.to_dict() == data
        await client.set("after-the-move", "yes")
        data["after-the-move"] = "yes"
    finally:
        await client.close()

    # The CLI, aimed at the dead node 1 only, keeps its write in the cluster's outbox...
    code, _, err = await syncd("set", "offline", "kept", "--url", one.url, "--timeout", "2")
    assert code == 3 and "saved" in err
    # ...and a command on node 2 (now known as the same cluster) delivers it.
    assert place_of([two.url]).key == f"cluster:{cluster}"
    assert (await syncd("get", "offline", "--url", two.url))[:2] == (0, "kept\n")

    # The TUI's file of node 2 alone is the cluster's, with what was written there.
    assert store_file(place_of([two.url]), lambda key: store_path(key, "notes")) == by_cluster
    again = Client(two.url, "notes", node="tui-a", store=by_cluster, timeout=TIMEOUT)
    try:
        assert again.to_dict() == data
    finally:
        await again.close()
