"""Writing against a real server (contract §5, §6): acks, broadcasts, order, ping, convergence."""

from __future__ import annotations

import asyncio
import json
import random

from conftest import ClientFactory, ServerFactory
from servers import TIMEOUT, Frame, RawClient, Stamps

from syncd.crdt import parse_timestamp
from syncd.server import SyncServer


async def joined(server: SyncServer, connect: ClientFactory, *nodes: str) -> list[RawClient]:
    """Clients that said hello, each having seen the others' presence."""
    clients = []
    for node in nodes:
        client = await connect(server.url, node)
        await client.hello()
        clients.append(client)
    for client in clients:
        frames = await client.until_peers(*(c.node for c in clients if c is not client))
        assert all(f["type"] == "presence" for f in frames), frames
    return clients


async def test_ack_counts_applied_and_ignored_and_carries_the_head(
    server: SyncServer, connect: ClientFactory
) -> None:
    (writer,) = await joined(server, connect, "w")
    a, b = writer.stamps.set("a", 1), writer.stamps.set("b", 2)
    assert await writer.write([a, b], id=17) == {
        "type": "ack",
        "id": 17,
        "seq": 2,
        "applied": 2,
        "ignored": 0,
    }
    older = {"key": "a", "ts": "0000000000001-00000-w", "value": "old"}
    newer = writer.stamps.set("c", 3)
    assert await writer.write([older, newer], id=0) == {
        "type": "ack",
        "id": 0,
        "seq": 3,
        "applied": 1,
        "ignored": 1,
    }
    # All ignored (a resend is harmless): the ack repeats the head.
    assert await writer.write([a, b, newer], id=2**53 - 1) == {
        "type": "ack",
        "id": 2**53 - 1,
        "seq": 3,
        "applied": 0,
        "ignored": 3,
    }


async def test_broadcast_goes_to_the_others_only(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer, r1, r2 = await joined(server, connect, "w", "r1", "r2")
    entry, tomb = writer.stamps.set("title", {"text": "hi"}), writer.stamps.delete("gone")
    stale = {"key": "title", "ts": "0000000000001-00000-w", "value": "stale"}
    ack = await writer.write([entry, stale, tomb])
    assert (ack["applied"], ack["ignored"], ack["seq"]) == (2, 1, 2)
    for reader in (r1, r2):
        broadcast = await reader.recv()
        assert broadcast == {"type": "ops", "seq": 2, "origin": "w", "ops": [entry, tomb]}
    # The writer's next frame after its ack is the pong: no broadcast of its own.
    assert [f["type"] for f in await writer.ping()] == ["pong"]


async def test_a_message_that_applied_nothing_is_not_broadcast(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer, reader = await joined(server, connect, "w", "r")
    entry = writer.stamps.set("k", 1)
    assert (await writer.write([entry]))["seq"] == 1
    assert (await reader.recv())["seq"] == 1
    assert (await writer.write([entry]))["applied"] == 0
    second = writer.stamps.set("k", 2)
    assert (await writer.write([second]))["seq"] == 2
    assert await reader.recv() == {"type": "ops", "seq": 2, "origin": "w", "ops": [second]}


async def test_pipelined_writes_arrive_in_seq_order_maybe_coalesced(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer, reader = await joined(server, connect, "w", "r")
    total = 400
    entries = [writer.stamps.set(f"k{i}", i) for i in range(total)]
    for i, entry in enumerate(entries):
        await writer.send({"type": "ops", "id": i, "ops": [entry]})
    acks = await writer.recv_until(lambda f: f["id"] == total - 1)
    assert [a["type"] for a in acks] == ["ack"] * total
    assert [a["id"] for a in acks] == list(range(total))
    assert [a["seq"] for a in acks] == list(range(1, total + 1))
    received: list[Frame] = []
    seq = 0
    frames = await reader.recv_until(lambda f: f["seq"] == total)
    for frame in frames:
        assert frame["type"] == "ops" and frame["origin"] == "w"
        assert len(frame["ops"]) == frame["seq"] - seq, "a frame's seq is its last entry's"
        seq = frame["seq"]
        received.extend(frame["ops"])
    assert received == entries


async def test_each_connection_sees_acks_and_broadcasts_each_in_seq_order(
    server: SyncServer, connect: ClientFactory
) -> None:
    """Broadcasts go out at merge and acks after the fsync, so each kind is in seq
    order but an ack may follow broadcasts of greater seq (docs/protocol.md)."""
    clients = await joined(server, connect, "a", "b", "c")
    per_client = 150

    async def run(client: RawClient) -> list[Frame]:
        for i in range(per_client):
            entry = client.stamps.set(f"{client.node}{i % 7}", i)
            await client.send({"type": "ops", "id": i, "ops": [entry]})
            if i % 10 == 0:
                await asyncio.sleep(0)  # let the others interleave
        # Everyone's writes apply (distinct keys per client): the head ends at 3 * 150.
        seen = {"acks": 0, "head": 0}

        def done(frame: Frame) -> bool:
            if frame["type"] == "ack":
                seen["acks"] += 1
            if frame["type"] in ("ack", "ops"):
                seen["head"] = max(seen["head"], frame["seq"])
            return seen["acks"] == per_client and seen["head"] == 3 * per_client

        return await client.recv_until(done)

    results = await asyncio.gather(*(run(c) for c in clients))
    for client, frames in zip(clients, results, strict=True):
        own = [f for f in frames if f["type"] == "ack"]
        others = [f for f in frames if f["type"] == "ops"]
        assert [f["seq"] for f in own] == sorted(f["seq"] for f in own), client.node
        assert [f["seq"] for f in others] == sorted(f["seq"] for f in others), client.node
        assert len(own) == per_client
        assert all(f["origin"] != client.node for f in others)
        # Every seq is accounted for exactly once: own acks plus others' broadcasts.
        covered = {f["seq"] for f in own}
        for frame in others:
            covered.update(range(frame["seq"] - len(frame["ops"]) + 1, frame["seq"] + 1))
        assert covered == set(range(1, 3 * per_client + 1))


async def test_ping_pong_with_and_without_id(server: SyncServer, connect: ClientFactory) -> None:
    client = await connect(server.url, "p")
    welcome = (await client.hello()).welcome
    await client.send({"type": "ping", "id": 3})
    pong = await client.recv()
    assert set(pong) == {"type", "id", "time"} and pong["id"] == 3
    await client.send({"type": "ping"})
    bare = await client.recv()
    assert set(bare) == {"type", "time"} and bare["type"] == "pong"
    times = [welcome["time"], pong["time"], bare["time"]]
    assert [parse_timestamp(t)[2] for t in times] == [welcome["node"]] * 3
    assert times == sorted(times) and len(set(times)) == 3, "the server's clock moves forward"


async def test_three_clients_converge(server: SyncServer, connect: ClientFactory) -> None:
    clients = await joined(server, connect, "ann", "bob", "cy")
    rng = random.Random(20251125)
    keys = [f"key{i}" for i in range(12)]
    rounds = 60
    # Each client keeps its own replica: its writes, then what the server sends it.
    replicas: dict[str, dict[str, Frame]] = {c.node: {} for c in clients}
    plans: dict[str, list[list[Frame]]] = {}
    for client in clients:
        plan = []
        for _ in range(rounds):
            batch = []
            for key in rng.sample(keys, rng.randint(1, 3)):
                entry = (
                    client.stamps.delete(key)
                    if rng.random() < 0.2
                    else client.stamps.set(key, {"by": client.node, "n": rng.randint(0, 999)})
                )
                batch.append(entry)
            plan.append(batch)
        plans[client.node] = plan

    def merge(replica: dict[str, Frame], entry: Frame) -> None:
        held = replica.get(entry["key"])
        if held is None or entry["ts"] > held["ts"]:  # distinct ts: no tie to break
            replica[entry["key"]] = entry

    # Acks and broadcasts are each in seq order (an ack may trail broadcasts).
    seen = {(c.node, kind): 0 for c in clients for kind in ("ack", "ops")}

    def receive(client: RawClient, frame: Frame) -> None:
        if frame["type"] in ("ack", "ops"):
            assert frame["seq"] >= seen[client.node, frame["type"]]
            seen[client.node, frame["type"]] = frame["seq"]
        if frame["type"] == "ops":
            for entry in frame["ops"]:
                merge(replicas[client.node], entry)

    async def write(client: RawClient) -> None:
        for i, batch in enumerate(plans[client.node]):
            for entry in batch:
                merge(replicas[client.node], entry)
            await client.send({"type": "ops", "id": i, "ops": batch})
        async with asyncio.timeout(10):
            for _ in range(10 * rounds * len(clients)):
                frame = await client.recv()
                receive(client, frame)
                if frame["type"] == "ack" and frame["id"] == rounds - 1:
                    return
        raise AssertionError("too many frames")

    async def catch_up(client: RawClient, head: int) -> None:
        async with asyncio.timeout(10):
            for _ in range(10 * rounds * len(clients)):
                if max(seen[client.node, "ack"], seen[client.node, "ops"]) >= head:
                    return
                receive(client, await client.recv())
        raise AssertionError("too many frames")

    await asyncio.gather(*(write(c) for c in clients))
    head = (await (await connect(server.url, "judge")).hello()).welcome["seq"]
    await asyncio.gather(*(catch_up(c, head) for c in clients))
    truth = (await (await connect(server.url, "judge2")).hello()).state
    for node, replica in replicas.items():
        assert replica == truth, node
    assert any(e.get("deleted") for e in truth.values())
    assert any("value" in e for e in truth.values())


async def test_a_late_older_write_does_not_resurrect(
    server: SyncServer, connect: ClientFactory
) -> None:
    writer, reader = await joined(server, connect, "w", "r")
    early = Stamps("offline").set("k", "from before the delete")
    await writer.write([writer.stamps.set("k", "v")])
    delete = writer.stamps.delete("k")
    assert (await writer.write([delete]))["applied"] == 1
    late = await connect(server.url, "offline")
    await late.hello()
    ack = await late.write([early])
    assert (ack["applied"], ack["ignored"]) == (0, 1)
    assert (await (await connect(server.url, "judge")).hello()).state == {"k": delete}
    frames = await reader.recv_until(lambda f: f["type"] == "presence" and "joined" in f)
    assert [f["seq"] for f in frames if f["type"] == "ops"] == [1, 2]


async def test_coalesced_broadcasts_stay_within_the_frame_limit(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    limit = 16 * 1024
    server = await make_server(max_frame_bytes=limit)
    writer = await connect(server.url, "w")
    await writer.hello()
    # The reader accepts frames of any size, to see what the server sends.
    reader = await connect(server.url, "r", max_size=None)
    await reader.hello()
    assert (await writer.recv())["type"] == "presence"
    total = 200
    entries = [writer.stamps.set(f"k{i}", "x" * 5000) for i in range(total)]
    for i, entry in enumerate(entries):
        await writer.send({"type": "ops", "id": i, "ops": [entry]})
    received: list[Frame] = []
    async with asyncio.timeout(TIMEOUT):
        for _ in range(total):
            text = await reader.connection.recv()
            assert isinstance(text, str)
            assert len(text.encode()) <= limit, "a broadcast over the frame limit"
            frame = json.loads(text)
            received.extend(frame["ops"])
            if frame["seq"] == total:
                break
    assert received == entries
