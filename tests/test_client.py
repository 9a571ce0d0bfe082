"""``syncd.client`` against real servers on 127.0.0.1 (contract §2, §4–§6).

Most tests run a :class:`~syncd.server.SyncServer` in the test's event loop
(``make_server``), which they can stop and start again on the same port and
data; one kills a ``syncd serve`` process with SIGKILL. Every wait is bounded
(:data:`servers.TIMEOUT`); reconnection delays are shortened with a fast
:class:`~syncd.client.Backoff`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
from conftest import ProcessFactory, ServerFactory
from servers import TIMEOUT, free_port

import syncd
from syncd.client import Backoff, Client, normalize_url
from syncd.client_store import ClientStore
from syncd.crdt import CrdtError, JSONValue, parse_timestamp, wall_clock_ms
from syncd.errors import (
    AuthError,
    ConnectionFailed,
    ReadOnlyError,
    ServerError,
    StoreFileError,
    SyncdTimeoutError,
)
from syncd.events import Change, Overridden, Presence, Rejected, State, Status, Synced
from syncd.identity import default_node
from syncd.places import Place
from syncd.server import SyncServer

FAST: Final = Backoff(initial=0.05, maximum=0.2, factor=2.0, jitter=0.5)
"""Reconnect quickly: the tests restart servers within a second."""
NEVER: Final = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
"""Reconnect only when told to (``reconnect_now``)."""

ClientMaker = Callable[..., Awaitable[Client]]


pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture
async def client() -> AsyncIterator[ClientMaker]:
    """Make clients: ``await client(url, "node-a", connect=False, store=...)``; all closed."""
    made: list[Client] = []

    async def make(
        url: str, node: str = "alice", *, connect: bool = True, **options: Any
    ) -> Client:
        options.setdefault("backoff", FAST)
        options.setdefault("timeout", TIMEOUT)
        made.append(Client(url, options.pop("doc", "notes"), node=node, **options))
        if connect:
            await made[-1].connect()
        return made[-1]

    yield make
    for each in made:
        await each.close()


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds; the client's events do not say when."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.01)
    assert predicate(), what


async def status(client: Client, state: State) -> Status:
    """Wait (bounded) for the client to reach ``state``."""
    async with asyncio.timeout(TIMEOUT), client.subscribe(Status) as statuses:
        while client.status.state is not state:
            await statuses.get()
    return client.status


async def restart(make_server: ServerFactory, server: SyncServer, **options: Any) -> SyncServer:
    """Stop ``server`` and start a new one on its port and data."""
    port, data = server.port, server.config.data
    await server.stop()
    return await make_server(port=port, data=data, **options)


# -- handshake and live changes ------------------------------------------------------


async def test_a_new_client_gets_the_snapshot_then_live_changes(
    server: SyncServer, client: ClientMaker
) -> None:
    alice = await client(server.url, "alice")
    await alice.set("title", "hello")
    values: dict[str, JSONValue] = {"a": 1, "b": {"nested": [True, None]}}
    await alice.update(values)
    await alice.delete("a")

    bob = await client(server.url, "bob")
    assert bob.to_dict() == {"title": "hello", "b": {"nested": [True, None]}}
    assert bob.entry("a") is not None and bob.entry("a").deleted  # type: ignore[union-attr]

    async with bob.changes() as changes:
        written = await alice.set("title", "world")
        change = await changes.get(TIMEOUT)
    assert (change.key, change.value, change.ts, change.origin) == (
        "title",
        "world",
        written.ts,
        "alice",
    )
    assert not change.local and change.seq == bob.replica.seq
    assert bob.get("title") == "world"


async def test_changes_report_local_writes_too(server: SyncServer, client: ClientMaker) -> None:
    alice = await client(server.url)
    async with alice.changes() as changes:
        await alice.set("k", 1, wait=False)
        change = await changes.get(TIMEOUT)
    assert change.local and change.origin == "alice" and change.seq is None


async def test_presence_and_peers(server: SyncServer, client: ClientMaker) -> None:
    alice = await client(server.url, "alice")
    async with alice.subscribe(Presence) as presence:
        bob = await client(server.url, "bob")
        assert bob.peers == {"alice"}
        assert await presence.get(TIMEOUT) == Presence(frozenset({"bob"}), ("bob",), ())
        await bob.close()
        assert await presence.get(TIMEOUT) == Presence(frozenset(), (), ("bob",))
    assert alice.peers == frozenset()


async def test_a_store_resumes_with_a_delta(
    server: SyncServer, client: ClientMaker, tmp_path: Path
) -> None:
    store = tmp_path / "bob.db"
    alice = await client(server.url, "alice")
    await alice.update({f"k{i}": i for i in range(50)})
    bob = await client(server.url, "bob", store=store)
    assert len(bob) == 50
    await bob.close()

    await alice.set("k0", "changed")
    await alice.delete("k1")
    again = await client(server.url, "bob", store=store, connect=False)
    assert len(again) == 50, "the saved replica is there before connecting"
    with again.subscribe(Synced, Change) as events:
        await again.connect()
        seen = [await events.get(TIMEOUT) for _ in range(3)]
    assert [(e.key, e.deleted) for e in seen if isinstance(e, Change)] == [
        ("k0", False),
        ("k1", True),
    ]
    synced = seen[-1]
    assert isinstance(synced, Synced) and not synced.full, "a delta, not a snapshot"
    assert again.get("k0") == "changed" and "k1" not in again


# -- offline writes ------------------------------------------------------------------


async def test_pending_writes_survive_a_server_restart(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server()
    alice = await client(server.url, "alice")
    await alice.set("before", 0)
    port, data = server.port, server.config.data
    await server.stop()
    await status(alice, State.OFFLINE)
    assert "retrying in" in str(alice.status)

    written = [await alice.set(f"k{i}", i, wait=False) for i in range(3)]
    assert alice.pending_count == 3 and alice.get("k2") == 2, "applied locally at once"
    server = await make_server(port=port, data=data)
    await alice.flush()

    bob = await client(server.url, "bob")
    for change in written:
        entry = bob.entry(change.key)
        assert entry is not None and entry.ts == change.ts, "sent with the original timestamp"


async def test_a_client_that_quits_offline_delivers_its_writes_next_time(
    make_server: ServerFactory, client: ClientMaker, tmp_path: Path
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    store = tmp_path / "alice.db"
    alice = await client(url, "alice", store=store, connect=False)
    await alice.connect(wait=False)
    written = await alice.set("offline", {"note": "written with no server"}, wait=False)
    deleted = await alice.delete("gone", wait=False)
    await alice.close()  # quits while offline

    server = await make_server(port=port)
    again = await client(url, "alice", store=store)
    assert again.pending_count == 2
    await again.flush()
    bob = await client(server.url, "bob")
    assert bob.get("offline") == {"note": "written with no server"}
    assert bob.entry("offline").ts == written.ts  # type: ignore[union-attr]
    assert bob.entry("gone").ts == deleted.ts  # type: ignore[union-attr]


async def test_acknowledged_writes_survive_kill_9_and_the_rest_are_resent(
    server_process: ProcessFactory, client: ClientMaker
) -> None:
    process = server_process()
    await process.start()
    alice = await client(process.url, "alice")
    data = {f"k{i:05d}": i for i in range(20_000)}
    await alice.update(data, wait=False)
    await until(lambda: alice.pending_count < len(data), "a first ack")
    await process.kill()  # mid-stream: some messages acked, the others not even sent
    assert 0 < alice.pending_count < len(data)
    await process.start()
    await alice.flush()
    bob = await client(process.url, "bob")
    assert bob.to_dict() == data


async def test_a_pending_write_overridden_by_a_newer_one_is_reported(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server()
    alice = await client(server.url, "alice", backoff=NEVER)
    server = await restart(make_server, server)  # alice is now offline for a minute
    await status(alice, State.OFFLINE)
    mine = await alice.set("k", "alice's", wait=False)
    await asyncio.sleep(0.005)  # a later wall clock: bob's write is newer
    bob = await client(server.url, "bob")
    theirs = await bob.set("k", "bob's")

    with alice.subscribe(Overridden) as overridden:
        alice.reconnect_now()
        event = await overridden.get(TIMEOUT)
    assert event.write.ts == mine.ts and event.winner.ts == theirs.ts
    assert alice.get("k") == "bob's" and alice.pending_count == 0


async def test_update_checks_every_value_before_writing_any(
    server: SyncServer, client: ClientMaker
) -> None:
    alice = await client(server.url)
    with pytest.raises(CrdtError, match="over the limit"):
        await alice.update({"a": 1, "b": 2, "c": "x" * 70_000})
    assert alice.to_dict() == {} and alice.pending_count == 0, "nothing written"
    await alice.update({"a": 1, "b": 2})
    bob = await client(server.url, "bob")
    assert bob.to_dict() == {"a": 1, "b": 2}


async def test_a_value_over_the_servers_limit_is_rolled_back_and_reported(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server(max_value_bytes=100)
    alice = await client(server.url)
    await alice.set("k", "small")
    with alice.subscribe(Rejected, Change) as events:
        with pytest.raises(ServerError) as refused:
            await alice.set("k", "x" * 200)  # within the client's limit, over the server's
        assert refused.value.code == "too_large"
        assert isinstance(await events.get(TIMEOUT), Change), "the local write"
        rejected = await events.get(TIMEOUT)
        assert isinstance(rejected, Rejected) and rejected.retry_after is None
        rolled_back = await events.get(TIMEOUT)
    assert isinstance(rolled_back, Change) and rolled_back.value == "small"
    assert alice.get("k") == "small" and alice.pending_count == 0
    bob = await client(server.url, "bob")
    assert bob.get("k") == "small"


async def test_too_many_ops_for_the_server_are_split(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server(max_ops=4)
    alice = await client(server.url)
    await alice.update({f"k{i}": i for i in range(10)})
    bob = await client(server.url, "bob")
    assert len(bob) == 10


async def test_frames_over_the_server_limit_are_made_smaller(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server(max_frame_bytes=64 * 1024)
    alice = await client(server.url)
    values: dict[str, JSONValue] = {f"k{i}": "x" * 10_000 for i in range(30)}
    await alice.update(values)  # 300 KB: closed with 1009 until the batches fit
    assert alice.replica.max_frame_bytes <= 64 * 1024
    bob = await client(server.url, "bob")
    assert bob.to_dict() == values


# -- reconnecting --------------------------------------------------------------------


def test_backoff_grows_exponentially_to_a_cap_with_jitter() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5)
    assert [backoff.delay(n, rand=lambda: 0.0) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    assert [backoff.delay(n, rand=lambda: 1.0) for n in range(3)] == [0.5, 1, 2]
    assert backoff.delay(10_000) <= 8.0


async def test_a_client_retries_with_backoff_until_the_server_comes(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    port = free_port()
    steady = Backoff(initial=0.05, maximum=0.4, factor=2.0, jitter=0.0)
    alice = await client(f"ws://127.0.0.1:{port}/ws", connect=False, backoff=steady)
    delays: list[float | None] = []
    with alice.subscribe(Status) as statuses:
        await alice.connect(wait=False)
        async with asyncio.timeout(TIMEOUT):
            while len(delays) < 4:
                event = await statuses.get()
                if event.state is State.OFFLINE:
                    assert event.error == "connection refused"
                    delays.append(event.retry_in)
    assert delays == [0.05, 0.1, 0.2, 0.4]
    await make_server(port=port)
    await alice.wait_synced(TIMEOUT)
    assert str(alice.status) == "synced"


async def test_a_client_gives_up_after_its_limit(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server()
    alice = await client(server.url, give_up_after=0.3)
    await server.stop()
    failed = await status(alice, State.FAILED)
    assert isinstance(alice.error, ConnectionFailed)
    assert "for over 0.3 s" in str(failed)
    with pytest.raises(ConnectionFailed):
        await alice.set("k", 1)


async def test_waiting_for_an_ack_while_offline_times_out(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server()
    alice = await client(server.url, backoff=NEVER)
    await server.stop()
    await status(alice, State.OFFLINE)
    with pytest.raises(SyncdTimeoutError, match="stays pending"):
        await alice.set("k", 1, timeout=0.2)
    assert alice.pending_count == 1
    with pytest.raises(SyncdTimeoutError):
        await alice.flush(timeout=0.1)


# -- access and failures -------------------------------------------------------------


async def test_a_read_only_client_reads_but_cannot_write(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server(token="write", read_token="read")
    writer = await client(server.url, "writer", token="write")
    await writer.set("k", "v")
    reader = await client(server.url, "reader", token="read")
    assert reader.readonly and str(reader.status) == "synced (read-only)"
    assert reader.get("k") == "v"
    with pytest.raises(ReadOnlyError):
        await reader.set("k", "mine")


async def test_a_wrong_or_missing_token_is_an_auth_error(
    make_server: ServerFactory, client: ClientMaker
) -> None:
    server = await make_server(token="s3cret")
    with pytest.raises(AuthError, match="unauthorized: wrong token"):
        await client(server.url, token="guess")
    with pytest.raises(AuthError, match="unauthorized: a valid token is required"):
        await client(server.url)


async def test_an_unreachable_server_is_a_clear_connection_failure(
    server: SyncServer, client: ClientMaker
) -> None:
    port = free_port()
    with pytest.raises(ConnectionFailed, match=f"cannot connect to .*:{port}.*connection refused"):
        await client(f"ws://127.0.0.1:{port}/ws")
    with pytest.raises(ConnectionFailed, match="HTTP 404"):
        await client(server.url.replace("/ws", "/not-ws"))


async def test_a_wrong_wall_clock_still_writes_accepted_timestamps(
    server: SyncServer, client: ClientMaker
) -> None:
    ten_minutes = 10 * 60 * 1000
    ahead = await client(server.url, "ahead", wall=lambda: wall_clock_ms() + ten_minutes)
    behind = await client(server.url, "behind", wall=lambda: wall_clock_ms() - ten_minutes)
    first = await ahead.set("k", "ahead")  # the server allows 60 s of skew
    second = await behind.set("k", "behind")
    assert abs(parse_timestamp(first.ts)[0] - wall_clock_ms()) < 5_000
    assert second.ts > first.ts, "a later write wins even from a clock ten minutes behind"
    await until(lambda: ahead.get("k") == "behind", "the later write won everywhere")


# -- the synchronous facade, the store, the node id ----------------------------------


async def test_the_synchronous_facade(server: SyncServer, client: ClientMaker) -> None:
    def script() -> dict[str, Any]:
        with syncd.connect(server.url, "notes", node="script") as doc:
            doc["greeting"] = "hello"
            doc["gone"] = 1
            del doc["gone"]
            doc.set("list", [1, 2], wait=True)
            with pytest.raises(KeyError):
                doc["missing"]
            assert "greeting" in doc and doc.get("missing", 0) == 0
            return dict(doc.items())

    seen = await asyncio.to_thread(script)
    assert seen == {"greeting": "hello", "list": [1, 2]}
    bob = await client(server.url, "bob")
    assert bob.to_dict() == seen, "leaving the block delivered every write"


async def test_a_store_is_used_by_one_client_at_a_time(
    server: SyncServer, client: ClientMaker, tmp_path: Path
) -> None:
    await client(server.url, "alice", store=tmp_path / "shared.db")
    with pytest.raises(StoreFileError, match="in use"):
        await client(server.url, "bob", store=tmp_path / "shared.db")


async def test_a_client_made_again_from_its_store_stamps_after_its_earlier_writes(
    server: SyncServer, client: ClientMaker, tmp_path: Path
) -> None:
    """Found by the chaos harness (seed 101, 8 clients, 12 keys, 300 steps): a client
    restarted from a store without a replica issued timestamps below its own earlier
    ones, so its new write lost to the old one it meant to replace (contract §2)."""
    store = tmp_path / "alice.db"

    def behind() -> int:
        return wall_clock_ms() - 600_000  # ten minutes slow: the welcome's offset hides it

    alice = await client(server.url, "alice", store=store, keep_replica=False, wall=behind)
    first = await alice.set("k", "first")
    await alice.close()
    again = await client(
        server.url, "alice", store=store, keep_replica=False, wall=behind, connect=False
    )
    second = await again.set("k", "second", wait=False)  # no welcome yet: no offset
    assert second.ts > first.ts, "the clock went back across the restart"
    await again.connect()
    await again.flush()
    bob = await client(server.url, "bob")
    assert again.get("k") == bob.get("k") == "second"


async def test_closing_waits_for_the_replica_being_saved_and_saves_one_at_a_time(
    client: ClientMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos soak (``make soak``, seed 160804359): ``close()`` cancelled the
    periodic save while its thread was still writing the replica, then saved again in a
    second thread: both staged the same ``.tmp`` file (one rename failed, or the file
    mixed both), and the thread could still be writing once the store was unlocked."""
    lock, active, seen = threading.Lock(), [0], [0]
    entered, gate = threading.Event(), threading.Event()
    original = ClientStore.write_replica

    def slow(store: ClientStore, text: str) -> None:
        with lock:
            active[0] += 1
            seen[0] = max(seen[0], active[0])
        entered.set()
        gate.wait(TIMEOUT)
        try:
            original(store, text)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(ClientStore, "write_replica", slow)
    url = f"ws://127.0.0.1:{free_port()}/ws"  # no server: the client works offline
    alice = await client(url, "alice", store=tmp_path / "a.db", connect=False, save_interval=0.01)
    await alice.connect(wait=False)
    await alice.set("k", 1, wait=False)
    assert await asyncio.to_thread(entered.wait, TIMEOUT), "the periodic save began"
    closing = asyncio.create_task(alice.close())
    await asyncio.sleep(0.2)  # close() now waits for that save, or races it
    gate.set()
    await closing
    assert seen[0] == 1, "two threads wrote the replica at once"
    assert active[0] == 0, "the replica was still being written after close()"
    again = await client(url, "alice", store=tmp_path / "a.db", connect=False)
    assert again.get("k") == 1


def test_the_store_keeps_the_clock_with_the_pending_writes(tmp_path: Path) -> None:
    store = ClientStore(
        tmp_path / "a.db", doc="notes", place=Place("ws://h:1/ws", None, ("ws://h:1/ws",))
    )
    store.save_pending([], "1764028800123-00042-alice")
    assert store.load().clock == "1764028800123-00042-alice"
    store.unlock()
    store.pending_path.write_text('{"pending": {}}')  # written before the clock was kept
    assert store.load().clock is None
    store.unlock()
    store.pending_path.write_text('{"pending": {}, "clock": {"1": {"last": "yesterday"}}}')
    with pytest.raises(StoreFileError, match="unreadable"):
        store.load()
    store.unlock()


def test_the_node_id_is_kept_across_runs(home: Path) -> None:
    node = default_node("cli")
    assert node.startswith("cli-") and default_node("cli") == node
    assert default_node("tui") == "tui-" + node.removeprefix("cli-")
    assert (home / "node").read_text().strip() == node.removeprefix("cli-")


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("127.0.0.1:8765", "ws://127.0.0.1:8765/ws"),
        ("http://example.org", "ws://example.org/ws"),
        ("https://example.org/sync/ws", "wss://example.org/sync/ws"),
        ("ws://h:1/ws", "ws://h:1/ws"),
    ],
)
def test_urls_are_normalized(typed: str, url: str) -> None:
    assert normalize_url(typed) == url


def test_a_bad_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid server URL"):
        normalize_url("ftp://example.org")
