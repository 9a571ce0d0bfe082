"""The server's history (issue #13): versions, conflicts and ``state_at``.

Against real servers on 127.0.0.1 (in-process, or ``syncd serve`` processes for a
restart and ``kill -9``), real SQLite files and the real core; ``state_at`` is
checked against a replay of the log by the pure-Python model (``tests/model.py``).
"""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import ProcessFactory, ServerFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from model import LwwModel
from servers import TIMEOUT, RawClient, metrics

from syncd.client import Client
from syncd.crdt import Document, format_timestamp, wall_clock_ms
from syncd.history import PAGE_BYTES, History, read_state, read_versions
from syncd.server import SyncServer
from syncd.sqlite import sqlite3

DAY_MS = 24 * 3600 * 1000


async def hello(url: str, node: str, doc: str = "default", token: str | None = None) -> RawClient:
    """A raw connection past its handshake."""
    client = await RawClient.connect(url, node)
    frame: dict[str, Any] = {"type": "hello", "v": 1, "doc": doc, "node": node}
    if token is not None:
        frame["token"] = token
    await client.connection.send(json.dumps(frame))
    while json.loads(await client.connection.recv())["type"] != "synced":
        pass
    return client


async def ask(client: RawClient, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a frame and return the next one that is not a broadcast."""
    await client.connection.send(json.dumps(frame))
    for _ in range(100):
        answer: dict[str, Any] = json.loads(await client.connection.recv())
        if answer["type"] not in ("ops", "presence"):
            return answer
    raise AssertionError("no answer within 100 frames")


def ops(id: int, *entries: tuple[str, str, Any]) -> dict[str, Any]:
    """An ``ops`` frame of (key, ts, value) entries; a value of ``...`` deletes."""
    return {
        "type": "ops",
        "id": id,
        "ops": [
            {"key": k, "ts": ts, "deleted": True} if v is ... else {"key": k, "ts": ts, "value": v}
            for k, ts, v in entries
        ],
    }


async def values(client: Client, key: str) -> list[Any]:
    versions, _ = await client.history(key, limit=1000)
    return ["deleted" if v.deleted else v.value for v in versions]


# -- the requests --------------------------------------------------------------------


async def test_history_pages_newest_first_with_a_cursor(server: SyncServer) -> None:
    async with Client(server.url, node="alice", timeout=TIMEOUT) as client:
        for n in range(5):
            await client.set("k", n)
        await client.delete("k")
        assert await values(client, "k") == ["deleted", 4, 3, 2, 1, 0]
        first, cursor = await client.history("k", limit=4)
        assert [v.value for v in first] == [None, 4, 3, 2] and cursor == first[-1].ts
        rest, end = await client.history("k", limit=4, before=cursor)
        assert [v.value for v in rest] == [1, 0] and end is None
        assert all(v.node == "alice" for v in first + rest)
        assert await client.history("never-written") == ([], None)


async def test_a_page_is_cut_to_the_frame_limit(make_server: ServerFactory) -> None:
    server = await make_server(max_frame_bytes=64 << 10, max_value_bytes=20 << 10)
    async with Client(server.url, node="alice", timeout=TIMEOUT, max_frame_bytes=64 << 10) as c:
        for n in range(8):
            await c.set("big", f"{n}" * (15 << 10))
        versions, cursor = await c.history("big", limit=100)
        assert 1 <= len(versions) < 8 and cursor is not None
        rest, _ = await c.history("big", limit=100, before=cursor)
        assert len(versions) + len(rest) <= 8


async def test_bad_requests_get_the_contract_codes_with_their_id(server: SyncServer) -> None:
    client = await hello(server.url, "alice")
    try:
        cases = [
            ({"type": "history", "id": 1}, "bad_message"),
            ({"type": "history", "id": 2, "key": ""}, "bad_message"),
            ({"type": "history", "id": 3, "key": "k" * 2000}, "too_large"),
            ({"type": "history", "id": 4, "key": "k", "limit": 0}, "bad_message"),
            ({"type": "history", "id": 5, "key": "k", "limit": 5000}, "too_large"),
            ({"type": "conflicts", "id": 6, "node": "no spaces"}, "bad_message"),
            ({"type": "conflicts", "id": 7, "before": "x"}, "bad_message"),
            ({"type": "state_at", "id": 8}, "bad_message"),
            ({"type": "state_at", "id": 9, "at": -1}, "bad_message"),
            ({"type": "state_at", "id": 10, "at": 1, "limit": True}, "bad_message"),
        ]
        for frame, code in cases:
            answer = await ask(client, frame)
            assert answer["type"] == "error", frame
            assert (answer["code"], answer["id"]) == (code, frame["id"]), answer
        answer = await ask(client, {"type": "history", "key": "k"})
        assert answer["code"] == "bad_message" and "id" not in answer
        # The connection is still open and answers.
        answer = await ask(client, {"type": "history", "id": 11, "key": "k"})
        assert answer == {
            "type": "history_page",
            "id": 11,
            "key": "k",
            "versions": [],
            "next": None,
        }
    finally:
        await client.close()


async def test_read_only_tokens_may_read_the_history(make_server: ServerFactory) -> None:
    server = await make_server(token="rw", read_token="ro")
    async with Client(server.url, node="writer", token="rw", timeout=TIMEOUT) as writer:
        await writer.set("k", "v")
    async with Client(server.url, node="reader", token="ro", timeout=TIMEOUT) as reader:
        assert reader.readonly
        assert await values(reader, "k") == ["v"]
        assert await reader.conflicts() == ([], None)
        assert await reader.state_at(wall_clock_ms() + 1000) == {"k": "v"}


async def test_no_history_with_a_retention_of_zero(make_server: ServerFactory) -> None:
    server = await make_server(history_retention=0)
    async with Client(server.url, node="alice", timeout=TIMEOUT) as client:
        await client.set("k", "v")
        assert await client.history("k") == ([], None)
    assert not (server.config.data / "history").exists()


async def test_disk_use_is_in_the_metrics(server: SyncServer) -> None:
    async with Client(server.url, node="alice", timeout=TIMEOUT) as client:
        await client.set("k", "v" * 1000)
        await client.history("k")
    assert (await metrics(server.port))["syncd_history_bytes"] > 1000


# -- conflicts -----------------------------------------------------------------------


async def test_a_write_that_loses_is_recorded_with_its_winner(server: SyncServer) -> None:
    now = wall_clock_ms()
    alice, bob = await hello(server.url, "alice"), await hello(server.url, "bob")
    try:
        # Both wrote offline; bob's later write reaches the server first.
        alice_ts, bob_ts = format_timestamp(now - 2000, 0, "alice"), format_timestamp(now, 0, "bob")
        assert (await ask(bob, ops(1, ("k", bob_ts, "bob's"))))["applied"] == 1
        assert (await ask(alice, ops(1, ("k", alice_ts, "alice's"))))["ignored"] == 1
        # The same write sent again is no conflict.
        assert (await ask(bob, ops(2, ("k", bob_ts, "bob's"))))["ignored"] == 1
        page = await ask(bob, {"type": "conflicts", "id": 3})
        assert [(c["key"], c["lost"], c["winner"]) for c in page["conflicts"]] == [
            (
                "k",
                {"ts": alice_ts, "node": "alice", "value": "alice's"},
                {"ts": bob_ts, "node": "bob", "value": "bob's"},
            )
        ]
        only_bob = await ask(bob, {"type": "conflicts", "id": 4, "node": "bob"})
        assert only_bob["conflicts"] == []
    finally:
        await alice.close()
        await bob.close()


# -- durability ----------------------------------------------------------------------


async def test_history_survives_folds_and_a_restart(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "folding"
    server = await make_server(data=data, fold_min_bytes=2048)
    async with Client(server.url, node="alice", timeout=TIMEOUT) as client:
        for n in range(200):
            await client.set(f"k{n % 4}", n)
    await server.stop()
    assert len(list((data / "docs").glob("*.log"))) < 50, "the log was folded"
    again = await make_server(data=data, fold_min_bytes=2048)
    async with Client(again.url, node="alice", timeout=TIMEOUT) as client:
        assert await values(client, "k1") == list(range(197, 0, -4))


async def test_history_survives_kill_9_and_is_rebuilt_from_the_log(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "killed"
    process = server_process(data)
    await process.start()
    async with Client(process.url, node="alice", timeout=TIMEOUT) as client:
        for n in range(20):
            await client.set("k", n)
    await process.kill()
    await process.start()
    async with Client(process.url, node="alice", timeout=TIMEOUT) as client:
        assert await values(client, "k") == list(range(19, -1, -1))
    await process.kill()
    # A history that lost its last rows (as after a crash between the log's fsync and the
    # history's insert) is caught up from the log at the next load.
    shutil.rmtree(data / "history")
    await process.start()
    async with Client(process.url, node="alice", timeout=TIMEOUT) as client:
        assert await values(client, "k") == list(range(19, -1, -1))


async def test_versions_past_the_retention_expire_but_the_state_stays(
    make_server: ServerFactory,
) -> None:
    server = await make_server(history_retention=1)
    old = wall_clock_ms() - 3 * DAY_MS
    client = await hello(server.url, "alice")
    try:
        frame = ops(
            1,
            ("kept", format_timestamp(old, 0, "alice"), "v1"),
            ("kept", format_timestamp(old + 1, 0, "alice"), "v2"),
            ("gone", format_timestamp(old, 0, "alice"), "x"),
            ("gone", format_timestamp(old + 1, 0, "alice"), ...),
            ("new", format_timestamp(wall_clock_ms(), 0, "alice"), "n"),
        )
        assert (await ask(client, frame))["applied"] == 5
        # The first commit of a loaded document runs a pass of expiry.
        page = await ask(client, {"type": "history", "id": 2, "key": "kept"})
        assert [v["value"] for v in page["versions"]] == ["v2"]
        page = await ask(client, {"type": "history", "id": 3, "key": "gone"})
        assert page["versions"] == []
        page = await ask(client, {"type": "state_at", "id": 4, "at": wall_clock_ms()})
        assert {e["key"]: e["value"] for e in page["entries"]} == {"kept": "v2", "new": "n"}
    finally:
        await client.close()


# -- state_at against a replay of the log ----------------------------------------------

writes = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(1, 20),  # wall
        st.integers(0, 2),  # counter
        st.sampled_from(["n1", "n2"]),
        st.one_of(st.none(), st.integers(0, 9)),  # None deletes
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(writes, min_size=1, max_size=4), at=st.integers(0, 22))
def test_state_at_equals_a_replay_of_the_log_up_to_that_time(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[Any]], at: int
) -> None:
    path = tmp_path_factory.mktemp("state") / "doc.sqlite"
    base = wall_clock_ms() - 60_000  # recent: within the retention
    document = Document()
    history = History(path, retention_ms=DAY_MS)
    history.open(document, "e-1", [])
    log: list[dict[str, Any]] = []
    try:
        for id, batch in enumerate(batches):
            entries = [
                {"key": k, "ts": format_timestamp(base + w, c, n), "deleted": True}
                if v is None
                else {"key": k, "ts": format_timestamp(base + w, c, n), "value": v}
                for k, w, c, n, v in batch
            ]
            frame = json.dumps({"type": "ops", "id": id, "ops": entries})
            result = document.apply_frame(frame)
            line = result.log_line()
            history.record([result.ops_json] if result.applied else [], document.seq, result.lost)
            if line:
                log.extend(json.loads(line)["ops"])
    finally:
        history.close()
    model = LwwModel()
    for entry in log:
        if int(entry["ts"][:13]) <= base + at:
            value = None if entry.get("deleted") else json.dumps(entry["value"])
            model.merge(entry["key"], entry["ts"], value)
    state = {row.key: json.loads(row.value_json) for row in read_state(path, base + at, None, 1000)}
    assert state == model.to_dict()
    # And each key's history is its log entries, newest first.
    for key in "abc":
        logged = sorted({e["ts"] for e in log if e["key"] == key}, reverse=True)
        assert [v.ts for v in read_versions(path, key, 1000, None)] == logged


@pytest.mark.parametrize("existing_page_bytes", [None, 1024])
def test_a_new_file_takes_its_page_size_and_an_existing_file_keeps_its_own(
    tmp_path: Path, existing_page_bytes: int | None
) -> None:
    """A new file takes ``PAGE_BYTES`` pages; a file made with other pages (1 KiB, as
    new files had for a while) keeps those and records as before."""
    path = tmp_path / "doc.sqlite"
    if existing_page_bytes is not None:
        with closing(sqlite3.connect(path)) as db:
            db.execute(f"PRAGMA page_size={existing_page_bytes}")
            db.execute("PRAGMA journal_mode=WAL")
    document = Document()
    history = History(path, retention_ms=DAY_MS)
    history.open(document, "e-1", [])
    try:
        ts = format_timestamp(wall_clock_ms(), 0, "n1")
        result = document.apply_frame(
            json.dumps({"type": "ops", "id": 1, "ops": [{"key": "k", "ts": ts, "value": 1}]})
        )
        history.record([result.ops_json], document.seq, result.lost)
    finally:
        history.close()
    assert [row.value_json for row in read_versions(path, "k", 10, None)] == ["1"]
    with closing(sqlite3.connect(path)) as db:
        (page_bytes,) = db.execute("PRAGMA page_size").fetchone()
    assert page_bytes == (existing_page_bytes or PAGE_BYTES)
