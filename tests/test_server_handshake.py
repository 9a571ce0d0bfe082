"""The handshake against a real server (contract §4): welcome, snapshots, deltas, peers."""

from __future__ import annotations

import asyncio
import re

from conftest import ClientFactory, ServerFactory
from servers import Frame, RawClient

from syncd.crdt import parse_timestamp, wall_clock_ms
from syncd.server import SyncServer

TS = re.compile(r"[0-9]{13}-[0-9]{5}-[A-Za-z0-9_-]{1,64}")
NODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def fill(client: RawClient, count: int, prefix: str = "k") -> list[tuple[Frame, int]]:
    """Write ``count`` keys one message at a time; each entry with the seq its ack gave."""
    written = []
    for i in range(count):
        entry = client.stamps.set(f"{prefix}{i}", {"n": i})
        ack = await client.write([entry])
        assert ack["type"] == "ack" and ack["applied"] == 1, ack
        written.append((entry, ack["seq"]))
    return written


async def test_welcome_has_every_field(server: SyncServer, connect: ClientFactory) -> None:
    client = await connect(server.url, "tui-3f9a")
    before = wall_clock_ms()
    handshake = await client.hello(doc="notes")
    welcome = handshake.welcome
    assert set(welcome) >= {"type", "v", "doc", "node", "epoch", "seq", "time", "full"}
    assert welcome["v"] == 1
    assert welcome["doc"] == "notes"
    assert NODE.fullmatch(welcome["node"]) and welcome["node"] != "tui-3f9a"
    assert isinstance(welcome["epoch"], str) and welcome["epoch"]
    assert welcome["seq"] == 0 and handshake.synced == {"type": "synced", "seq": 0}
    assert TS.fullmatch(welcome["time"])
    wall, _, node = parse_timestamp(welcome["time"])
    assert node == welcome["node"], "welcome.time is the server's own timestamp"
    assert before - 1000 <= wall <= wall_clock_ms() + 1000
    assert welcome["full"] is True, "no since: a snapshot"
    assert welcome["readonly"] is False
    assert welcome["peers"] == []
    assert handshake.entries == []


async def test_doc_defaults_to_default(server: SyncServer, connect: ClientFactory) -> None:
    writer = await connect(server.url, "w")
    assert (await writer.hello()).welcome["doc"] == "default"
    entry = writer.stamps.set("title", "hello")
    assert (await writer.write([entry]))["applied"] == 1
    reader = await connect(server.url, "r")
    handshake = await reader.hello(doc="default")
    assert handshake.entries == [entry]


async def test_documents_are_separate(server: SyncServer, connect: ClientFactory) -> None:
    a = await connect(server.url, "a")
    await a.hello(doc="alpha")
    b = await connect(server.url, "b")
    hb = await b.hello(doc="beta")
    assert hb.welcome["peers"] == [], "peers are of the same document only"
    assert (await a.write([a.stamps.set("only-alpha", 1)]))["seq"] == 1
    # b sees neither a's presence nor its write; its own ping proves the order.
    assert [f["type"] for f in await b.ping()] == ["pong"]
    beta = await connect(server.url, "c")
    assert (await beta.hello(doc="beta")).entries == []
    alpha = await connect(server.url, "d")
    assert [e["key"] for e in (await alpha.hello(doc="alpha")).entries] == ["only-alpha"]


async def test_snapshot_then_synced_holds_everything(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    await writer.hello()
    written = await fill(writer, 5)
    tombstone = writer.stamps.delete("k1")
    assert (await writer.write([tombstone]))["seq"] == 6
    reader = await connect(server.url, "r")
    handshake = await reader.hello()
    assert handshake.welcome["full"] is True and handshake.welcome["seq"] == 6
    assert [f["type"] for f in handshake.frames[1:-1]] == ["entries"] * (len(handshake.frames) - 2)
    assert handshake.synced["seq"] == 6
    expected = {e["key"]: e for e, _ in written} | {"k1": tombstone}
    assert handshake.state == expected, "a snapshot has every live entry and the tombstones"
    assert len(handshake.entries) == 5


async def test_delta_holds_exactly_the_entries_after_since(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    epoch = (await writer.hello()).welcome["epoch"]
    written = await fill(writer, 6)
    tombstone = writer.stamps.delete("k2")
    assert (await writer.write([tombstone]))["seq"] == 7
    written.append((tombstone, 7))
    for since in (0, 1, 3, 6, 7):
        reader = await connect(server.url, f"r{since}")
        handshake = await reader.hello(since={"epoch": epoch, "seq": since})
        assert handshake.welcome["full"] is False, since
        assert handshake.welcome["seq"] == 7 and handshake.synced["seq"] == 7
        expected = [entry for entry, seq in written if seq > since and entry["key"] != "k2"]
        if since < 7:
            expected.append(tombstone)  # k2's winning entry now has seq 7
        assert handshake.entries == expected, f"since {since}"


async def test_since_above_head_or_wrong_epoch_gets_a_snapshot(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    epoch = (await writer.hello()).welcome["epoch"]
    written = await fill(writer, 3)
    everything = [entry for entry, _ in written]
    for since in (
        {"epoch": epoch, "seq": 4},
        {"epoch": "e-other", "seq": 1},
        {"epoch": "", "seq": 0},
    ):
        reader = await connect(server.url, "r")
        handshake = await reader.hello(since=since)
        assert handshake.welcome["full"] is True, since
        assert handshake.entries == everything, since
        assert handshake.welcome["epoch"] == epoch
        await reader.close()


async def test_a_snapshot_is_split_into_frames_within_the_limit(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    limit = 4096
    server = await make_server(max_frame_bytes=limit)
    writer = await connect(server.url, "w")
    await writer.hello()
    entries = [writer.stamps.set(f"key-{i:03d}", "x" * 300) for i in range(40)]
    for start in range(0, 40, 10):
        assert (await writer.write(entries[start : start + 10]))["applied"] == 10
    reader = await connect(server.url, "r")
    handshake = await reader.hello()
    bodies = [f for f in handshake.frames if f["type"] == "entries"]
    assert len(bodies) > 1
    for frame in bodies:
        assert len(frame["entries"]) >= 1
    assert sorted(handshake.entries, key=lambda e: e["key"]) == entries
    # The frames as sent: re-read the raw sizes from a second connection.
    raw = await connect(server.url, "raw")
    await raw.send({"type": "hello", "v": 1, "node": "raw"})
    sizes = []
    async with asyncio.timeout(5):
        for _ in range(100):
            text = await raw.connection.recv()
            assert isinstance(text, str)
            if '"type":"synced"' in text:
                break
            sizes.append(len(text.encode()))
    assert max(sizes) <= limit


async def test_changes_during_the_handshake_follow_synced_in_order(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer = await connect(server.url, "w")
    await writer.hello()
    total = 300
    entries = [writer.stamps.set(f"k{i % 50}", i) for i in range(total)]

    async def write_all() -> list[Frame]:
        for i, entry in enumerate(entries):
            await writer.send({"type": "ops", "id": i, "ops": [entry]})
        return await writer.recv_until(lambda f: f["type"] == "ack" and f["id"] == total - 1)

    writing = asyncio.create_task(write_all())
    readers = []
    for n in range(5):
        await asyncio.sleep(0)
        reader = await connect(server.url, f"r{n}")
        readers.append((reader, await reader.hello()))
    await writing
    final = await (await connect(server.url, "last")).hello()
    for reader, handshake in readers:
        between = handshake.frames[1:-1]
        assert all(f["type"] == "entries" for f in between)
        state = handshake.state
        seq = handshake.synced["seq"]
        while seq < total:
            frame = (await reader.recv_until(lambda f: f["type"] == "ops"))[-1]
            assert frame["seq"] > seq, "changes after the snapshot come in order"
            assert len(frame["ops"]) == frame["seq"] - seq, "no gap, no repeat"
            seq = frame["seq"]
            state.update((e["key"], e) for e in frame["ops"])
        assert state == final.state


async def test_peers_and_presence(server: SyncServer, connect: ClientFactory) -> None:
    a = await connect(server.url, "node-a")
    assert (await a.hello()).welcome["peers"] == []
    b = await connect(server.url, "node-b")
    assert (await b.hello()).welcome["peers"] == ["node-a"]
    assert await a.recv() == {"type": "presence", "joined": ["node-b"]}
    c = await connect(server.url, "node-c")
    assert sorted((await c.hello()).welcome["peers"]) == ["node-a", "node-b"]
    for other in (a, b):
        assert await other.recv() == {"type": "presence", "joined": ["node-c"]}
    await b.close()
    for other in (a, c):
        assert await other.recv() == {"type": "presence", "left": ["node-b"]}
    # Nothing else was sent to c: its own ping answers first.
    assert [f["type"] for f in await c.ping()] == ["pong"]


async def test_a_readonly_client_is_told_so(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await make_server(token="rw-secret", read_token="ro-secret")
    reader = await connect(server.url, "reader")
    assert (await reader.hello(token="ro-secret")).welcome["readonly"] is True
    writer = await connect(server.url, "writer")
    assert (await writer.hello(token="rw-secret")).welcome["readonly"] is False
