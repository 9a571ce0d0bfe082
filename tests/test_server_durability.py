"""Durability against real servers (contract §7): restarts, kill -9, corrupt files, SIGTERM."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

from conftest import ClientFactory, ProcessFactory, ServerFactory
from faults import Ledger
from servers import TIMEOUT, Frame, RawClient, ServerProcess, Stamps
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from syncd.crdt import parse_timestamp, wall_clock_ms


async def pipeline(client: RawClient, messages: list[list[Frame]], window: int) -> list[Frame]:
    """Send ``messages`` with at most ``window`` unacknowledged; every answer, by id order."""
    answers: list[Frame] = []
    sent = 0
    async with asyncio.timeout(6 * TIMEOUT):
        for _ in range(10 * len(messages) + 10):
            while sent < len(messages) and sent - len(answers) < window:
                await client.send({"type": "ops", "id": sent, "ops": messages[sent]})
                sent += 1
            frame = await client.recv()
            if frame["type"] in ("ack", "error"):
                assert frame["id"] == len(answers), frame
                answers.append(frame)
                if len(answers) == len(messages):
                    return answers
    raise AssertionError("too many frames")


async def test_writes_past_the_fold_threshold_are_all_acked_and_kept(
    make_server: ServerFactory, connect: ClientFactory, tmp_path: Path
) -> None:
    data = tmp_path / "fold-data"
    server = await make_server(data=data)
    writer = await connect(server.url, "w")
    epoch = (await writer.hello()).welcome["epoch"]
    # About 10 MB of log: past the 4 MB at which the log is folded into the file.
    messages = [[writer.stamps.set(f"k{i % 50}", f"{i}:" + "v" * 60_000)] for i in range(170)]
    answers = await pipeline(writer, messages, window=16)
    assert [a["type"] for a in answers] == ["ack"] * len(messages), [
        a for a in answers if a["type"] != "ack"
    ][:1]
    assert answers[-1]["seq"] == len(messages)
    await server.stop()
    again = await make_server(data=data)
    reader = await connect(again.url, "r")
    handshake = await reader.hello()
    assert (handshake.welcome["epoch"], handshake.welcome["seq"]) == (epoch, len(messages))
    assert handshake.state == {m[0]["key"]: m[0] for m in messages}


async def test_a_clean_restart_continues_epoch_and_seq(
    make_server: ServerFactory, connect: ClientFactory, tmp_path: Path
) -> None:
    data = tmp_path / "restart-data"
    server = await make_server(data=data)
    writer = await connect(server.url, "w")
    epoch = (await writer.hello(doc="notes")).welcome["epoch"]
    first = [writer.stamps.set("a", 1), writer.stamps.delete("b"), writer.stamps.set("c", [1])]
    assert (await writer.write(first))["seq"] == 3
    await server.stop()
    again = await make_server(data=data)
    client = await connect(again.url, "w")
    handshake = await client.hello(doc="notes", since={"epoch": epoch, "seq": 1})
    assert handshake.welcome["epoch"] == epoch
    assert handshake.welcome["full"] is False, "a restart keeps the lineage: a delta"
    assert handshake.entries == first[1:]
    later = client.stamps.set("d", None)
    assert (await client.write([later]))["seq"] == 4


async def write_until_killed(
    client: RawClient,
    process: ServerProcess,
    ledger: Ledger,
    rng: random.Random,
    keys: list[str],
) -> int:
    """Pipeline writes until the server dies; ``kill -9`` it after a random delay.

    Returns how many messages were acknowledged.
    """
    window, pending, next_id, acks = 32, dict[int, list[Frame]](), 0, 0

    async def kill_later() -> None:
        await asyncio.sleep(rng.uniform(0.05, 0.4))  # a random moment, not an event
        process.signal(signal.SIGKILL)

    killer = asyncio.create_task(kill_later())
    try:
        async with asyncio.timeout(6 * TIMEOUT):
            for _ in range(100_000):
                while len(pending) < window:
                    ops = [
                        client.stamps.delete(key)
                        if rng.random() < 0.3
                        else client.stamps.set(
                            key, {"n": next_id, "pad": "p" * rng.randint(0, 2000)}
                        )
                        for key in rng.sample(keys, rng.randint(1, 4))
                    ]
                    ledger.record(ops)
                    pending[next_id] = ops
                    await client.send({"type": "ops", "id": next_id, "ops": ops})
                    next_id += 1
                frame = await client.recv()
                if frame["type"] != "ack":
                    continue
                assert frame["seq"] >= ledger.last_seq
                ledger.ack(pending.pop(frame["id"]), frame["seq"])
                acks += 1
    except ConnectionClosed:
        pass
    finally:
        await killer
    return acks


async def test_kill_9_during_writes_loses_no_acknowledged_write(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    process = server_process()
    await process.start()
    keys = [f"key-{i}" for i in range(40)]
    ledger = Ledger()
    writer_stamps: Stamps | None = None
    epoch: str | None = None
    total_acks = 0
    for round in range(3):
        context = f"seed {seed}, round {round}"
        writer = await connect(process.url, "writer")
        if writer_stamps is not None:
            writer.stamps = writer_stamps  # one replica: its clock goes on
        writer_stamps = writer.stamps
        since = {"epoch": epoch, "seq": ledger.last_seq} if epoch else None
        handshake = await writer.hello(**({"since": since} if since else {}))
        if epoch is None:
            epoch = handshake.welcome["epoch"]
        else:
            # After kill -9: a new epoch (the crash may have lost writes that readers
            # saw, and their seqs are given again), so a snapshot; the head at or past
            # every ack.
            assert handshake.welcome["epoch"] != epoch, context
            assert handshake.welcome["seq"] >= ledger.last_seq, context
            assert handshake.welcome["full"] is True, context
            for entry in handshake.entries:
                assert ledger.sent.get(entry["ts"]) == entry, context
            epoch = handshake.welcome["epoch"]
        total_acks += await write_until_killed(writer, process, ledger, rng, keys)
        await process.wait()
        await process.start()
        judge = await connect(process.url, "judge")
        state = (await judge.hello()).state
        ledger.check(state, context)
        await judge.close()
    assert total_acks > 0, f"seed {seed}: nothing was acknowledged before the kills"

    # A late write older than a delete does not bring the key back.
    judge = await connect(process.url, "judge")
    before = await judge.hello()
    deleted = [e for e in before.state.values() if e.get("deleted")]
    assert deleted, f"seed {seed}: no tombstone to test"
    tomb = deleted[0]
    wall, _, _ = parse_timestamp(tomb["ts"])
    older = {"key": tomb["key"], "ts": f"{wall - 1:013d}-00000-late", "value": "zombie"}
    late = await connect(process.url, "late")
    await late.hello()
    ack = await late.write([older])
    assert (ack["applied"], ack["ignored"], ack["seq"]) == (0, 1, before.welcome["seq"])
    # And the seq goes on from the head.
    fresh = late.stamps.set("after-the-kills", True)
    assert (await late.write([fresh]))["seq"] == before.welcome["seq"] + 1
    final = await (await connect(process.url, "judge2")).hello()
    assert final.state[tomb["key"]] == tomb
    assert final.welcome["epoch"] == before.welcome["epoch"], "no crash since"


async def test_sigterm_acks_what_is_in_flight_then_closes_with_1001(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    process = server_process()
    await process.start()
    writer = await connect(process.url, "writer")
    epoch = (await writer.hello()).welcome["epoch"]
    bystander = await connect(process.url, "bystander")
    await bystander.hello()
    assert (await writer.recv())["type"] == "presence"
    total = 300
    entries = [writer.stamps.set(f"k{i}", i) for i in range(total)]
    for i, entry in enumerate(entries):
        await writer.send({"type": "ops", "id": i, "ops": [entry]})
    # The pong is sent once every earlier frame was read; most acks are still to come.
    frames = await writer.ping()
    process.signal(signal.SIGTERM)
    code, rest = await writer.closed()
    frames += rest
    assert code == CloseCode.GOING_AWAY
    acks = [f for f in frames if f["type"] == "ack"]
    assert [(a["id"], a["seq"]) for a in acks] == [(i, i + 1) for i in range(total)]
    code, seen = await bystander.closed()
    assert code == CloseCode.GOING_AWAY
    assert [e for f in seen if f["type"] == "ops" for e in f["ops"]] == entries
    assert await process.wait() == 0
    await process.start()
    handshake = await (await connect(process.url, "judge")).hello()
    assert (handshake.welcome["epoch"], handshake.welcome["seq"]) == (epoch, total)
    assert handshake.entries == entries


async def test_a_torn_last_log_line_is_skipped(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    process = server_process()
    await process.start()
    writer = await connect(process.url, "writer")
    epoch = (await writer.hello()).welcome["epoch"]
    entries = [writer.stamps.set(f"k{i}", i) for i in range(5)]
    for entry in entries:
        assert (await writer.write([entry]))["applied"] == 1
    await process.kill()
    segments = sorted(
        (process.data / "docs").glob("default.*.log"), key=lambda p: int(p.name.split(".")[1])
    )
    torn = b'{"seq":6,"ops":[{"key":"k9","ts":"17'
    with open(segments[-1], "ab") as log:
        log.write(torn)
    await process.start()
    assert segments[-1].name in process.stderr, "the skipped line is reported"
    client = await connect(process.url, "writer")
    handshake = await client.hello(since={"epoch": epoch, "seq": 2})
    # A new epoch after kill -9: a snapshot, of the five complete lines.
    assert handshake.welcome["epoch"] != epoch and handshake.welcome["full"] is True
    assert handshake.welcome["seq"] == 5
    assert sorted(handshake.entries, key=lambda e: e["key"]) == entries
    assert (await client.write([client.stamps.set("k9", 9)]))["seq"] == 6


async def test_purged_tombstones_raise_the_horizon_below_which_resumes_get_a_snapshot(
    make_server: ServerFactory, connect: ClientFactory, tmp_path: Path
) -> None:
    data = tmp_path / "horizon-data"
    server = await make_server(data=data, tombstone_retention=1.0)
    writer = await connect(server.url, "w")
    epoch = (await writer.hello()).welcome["epoch"]
    two_days_ago = wall_clock_ms() - 2 * 24 * 3600 * 1000
    old = {"key": "old", "ts": f"{two_days_ago:013d}-00000-w", "deleted": True}
    assert (await writer.write([old]))["seq"] == 1
    recent = writer.stamps.delete("recent")
    assert (await writer.write([recent]))["seq"] == 2
    # About 5 MB of log: past the 4 MB at which it is folded, which purges.
    filler = [[writer.stamps.set(f"k{i % 10}", "v" * 60_000)] for i in range(90)]
    answers = await pipeline(writer, filler, window=16)
    assert answers[-1] == {"type": "ack", "id": 89, "seq": 92, "applied": 1, "ignored": 0}
    await server.stop()  # it waits for the fold
    again = await make_server(data=data)
    below = await (await connect(again.url, "r1")).hello(since={"epoch": epoch, "seq": 0})
    assert below.welcome["full"] is True, "below the horizon: a snapshot"
    assert "old" not in below.state and below.state["recent"] == recent
    at = await (await connect(again.url, "r2")).hello(since={"epoch": epoch, "seq": 1})
    assert at.welcome["full"] is False, "at the horizon: a delta"
    assert [e["key"] for e in at.entries[:1]] == ["recent"]
