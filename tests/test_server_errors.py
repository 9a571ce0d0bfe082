"""Bad input against a real server (contract §4, §6): every error code, and what follows it.

Each rejected frame is answered with its code; the offending connection stays
open (or is closed with 1008 / 1009, as the contract says), nothing is applied,
and a bystander on the same document notices nothing but the next valid write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import ClientFactory, ServerFactory
from servers import Frame, RawClient, metrics
from websockets.frames import CloseCode

from syncd.crdt import wall_clock_ms
from syncd.server import SyncServer

TS = "1764028800123-00000-off"


def entry(**fields: Any) -> Frame:
    """A valid live entry, with ``fields`` replacing (or, as ``None``, removing) its own."""
    base: Frame = {"key": "k", "ts": TS, "value": 1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def ops(*entries: Any, id: int = 9) -> str:
    return json.dumps({"type": "ops", "id": id, "ops": list(entries)})


@dataclass
class Scene:
    """A server with a bystander and an offender, both past their hello."""

    server: SyncServer
    bystander: RawClient
    offender: RawClient

    async def prove_undisturbed(self) -> None:
        """The offender writes; it is acked with seq 1 (nothing was applied before), and
        the bystander's next frame is that write's broadcast: no error, no close."""
        valid = self.offender.stamps.set("after", "ok")
        ack = await self.offender.write([valid], id=1000)
        assert ack == {"type": "ack", "id": 1000, "seq": 1, "applied": 1, "ignored": 0}
        assert await self.bystander.recv() == {
            "type": "ops",
            "seq": 1,
            "origin": self.offender.node,
            "ops": [valid],
        }


async def scene(server: SyncServer, connect: ClientFactory, **hello: Any) -> Scene:
    bystander = await connect(server.url, "by")
    await bystander.hello(**hello)
    offender = await connect(server.url, "off")
    await offender.hello(**hello)
    assert await bystander.recv() == {"type": "presence", "joined": ["off"]}
    return Scene(server, bystander, offender)


async def expect_error(client: RawClient, code: str, id: int | None = None) -> Frame:
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("id") == id, error
    return error


# -- after the handshake: the connection stays open ---------------------------------------

BAD_JSON = {
    "not json": "not json",
    "unclosed object": "{",
    "empty": "",
    "unclosed array": '{"type": "ops", "id": 1, "ops": [}',
    "byte order mark": "\ufeff{}",
    "NaN": ops(entry()).replace('"value": 1', '"value": NaN'),
    "Infinity": ops(entry()).replace('"value": 1', '"value": Infinity'),
}


@pytest.mark.parametrize("text", BAD_JSON.values(), ids=BAD_JSON.keys())
async def test_bad_json_keeps_the_connection(
    server: SyncServer, connect: ClientFactory, text: str
) -> None:
    s = await scene(server, connect)
    await s.offender.send_raw(text)
    await expect_error(s.offender, "bad_json")
    await s.prove_undisturbed()


BAD_MESSAGES: list[tuple[str, str | bytes, int | None]] = [
    ("binary frame", b'{"type": "ping"}', None),
    ("json array", "[1, 2]", None),
    ("json string", '"ops"', None),
    ("no type", '{"id": 4}', 4),
    ("unknown type", '{"type": "subscribe", "id": 5}', 5),
    ("second hello", '{"type": "hello", "v": 1, "node": "off"}', None),
    ("ping id not an integer", '{"type": "ping", "id": "3"}', None),
    ("ping id negative", '{"type": "ping", "id": -1}', None),
    ("ops without id", json.dumps({"type": "ops", "ops": [entry()]}), None),
    ("ops id float", '{"type": "ops", "id": 1.0, "ops": []}', None),
    ("ops id too big", json.dumps({"type": "ops", "id": 2**53, "ops": [entry()]}), None),
    ("ops missing", '{"type": "ops", "id": 9}', 9),
    ("ops empty", '{"type": "ops", "id": 9, "ops": []}', 9),
    ("ops not an array", '{"type": "ops", "id": 9, "ops": {}}', 9),
    ("entry not an object", ops(entry(), "k"), 9),
    ("entry without ts", ops(entry(ts=None)), 9),
    ("entry without key", ops(entry(key=None)), 9),
    ("empty key", ops(entry(key="")), 9),
    ("key not a string", ops(entry(key=7)), 9),
    ("ts malformed", ops(entry(ts="yesterday")), 9),
    ("ts short counter", ops(entry(ts="1764028800123-0-off")), 9),
    ("ts trailing space", ops(entry(ts=TS + " ")), 9),
    ("ts non-ascii digits", ops(entry(ts="١764028800123-00000-off")), 9),
    ("value and deleted", ops(entry(deleted=True)), 9),
    ("neither value nor deleted", ops(entry(value=None)), 9),
    ("deleted false", ops(entry(value=None, deleted=False)), 9),
    ("unpaired surrogate", ops(entry()).replace('"value": 1', '"value": "\\ud800"'), 9),
    ("number overflow", ops(entry()).replace('"value": 1', '"value": 1e400'), 9),
    ("one bad entry of three", ops(entry(key="a"), entry(key="b", ts="x"), entry(key="c")), 9),
]


@pytest.mark.parametrize(
    ("frame", "id"), [(f, i) for _, f, i in BAD_MESSAGES], ids=[n for n, _, _ in BAD_MESSAGES]
)
async def test_bad_message_keeps_the_connection(
    server: SyncServer, connect: ClientFactory, frame: str | bytes, id: int | None
) -> None:
    s = await scene(server, connect)
    await s.offender.send_raw(frame)
    await expect_error(s.offender, "bad_message", id)
    await s.prove_undisturbed()


async def test_too_large_value_key_and_ops(server: SyncServer, connect: ClientFactory) -> None:
    s = await scene(server, connect)
    off = s.offender
    cases = [
        entry(value="x" * 65_535),  # canonical text: 65,537 bytes
        entry(value={"a": "é" * 40_000}),
        entry(key="k" * 1025),
        entry(key="é" * 513),  # 513 characters, 1026 bytes
    ]
    for i, bad in enumerate(cases):
        await off.send_raw(ops(entry(key="fine"), bad, id=i))
        await expect_error(off, "too_large", i)
    many = [entry(key=f"k{i}") for i in range(1001)]
    await off.send_raw(ops(*many, id=77))
    await expect_error(off, "too_large", 77)
    await s.prove_undisturbed()
    # Just at the limits is fine.
    at_limit = [off.stamps.set("é" * 512, "x" * 65_534)]
    at_limit += [off.stamps.set(f"m{i}", i) for i in range(999)]
    assert (await off.write(at_limit))["applied"] == 1000


async def test_limits_follow_the_config(make_server: ServerFactory, connect: ClientFactory) -> None:
    server = await make_server(max_ops=3, max_value_bytes=10)
    s = await scene(server, connect)
    await s.offender.send_raw(ops(entry(key="a"), entry(key="b"), entry(key="c"), entry(key="d")))
    await expect_error(s.offender, "too_large", 9)
    await s.offender.send_raw(ops(entry(value="123456789")))  # 11 bytes with its quotes
    await expect_error(s.offender, "too_large", 9)
    await s.prove_undisturbed()


async def test_clock_skew_is_rejected_and_counted(
    server: SyncServer, connect: ClientFactory
) -> None:
    s = await scene(server, connect)
    before = await metrics(server.port)
    ahead = wall_clock_ms() + 120_000
    await s.offender.send_raw(ops(entry(key="ok"), entry(key="late", ts=f"{ahead}-00000-off")))
    await expect_error(s.offender, "clock_skew", 9)
    after = await metrics(server.port)
    assert (
        after["syncd_clock_skew_rejections_total"]
        == before["syncd_clock_skew_rejections_total"] + 1
    )
    await s.prove_undisturbed()
    # Within max_skew (60 s) is accepted.
    near = f"{wall_clock_ms() + 30_000}-00000-off"
    assert (await s.offender.write([entry(key="near", ts=near)]))["applied"] == 1


async def test_forbidden_write_on_a_readonly_connection(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await make_server(token="rw", read_token="ro")
    writer = await connect(server.url, "writer")
    await writer.hello(token="rw")
    reader = await connect(server.url, "reader")
    assert (await reader.hello(token="ro")).welcome["readonly"] is True
    assert await writer.recv() == {"type": "presence", "joined": ["reader"]}
    await reader.send_raw(ops(reader.stamps.set("k", "nope"), id=5))
    await expect_error(reader, "forbidden", 5)
    # Still open: it receives the next write's broadcast, and nothing had been applied.
    valid = writer.stamps.set("k", "yes")
    assert (await writer.write([valid]))["seq"] == 1
    assert await reader.recv() == {"type": "ops", "seq": 1, "origin": "writer", "ops": [valid]}
    assert [f["type"] for f in await reader.ping()] == ["pong"]


async def test_a_frame_over_the_limit_closes_with_1009(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    limit = 2048
    server = await make_server(max_frame_bytes=limit)
    s = await scene(server, connect)
    # Exactly at the limit is fine.
    ping = json.dumps({"type": "ping", "id": 1, "pad": ""})
    await s.offender.send_raw(ping.replace('""', '"' + "x" * (limit - len(ping)) + '"'))
    assert (await s.offender.recv())["type"] == "pong"
    big = ops(entry(value="x" * limit))
    await s.offender.send_raw(big)
    code, frames = await s.offender.closed()
    assert (code, frames) == (CloseCode.MESSAGE_TOO_BIG, [])
    assert await s.bystander.recv() == {"type": "presence", "left": ["off"]}
    # Counted after reassembly: fragments each under the limit, together over it.
    other = await connect(server.url, "frag")
    await other.hello()
    assert await s.bystander.recv() == {"type": "presence", "joined": ["frag"]}
    await other.connection.send(["x" * 1500, "y" * 1500])
    assert (await other.closed())[0] == CloseCode.MESSAGE_TOO_BIG
    # Before hello too.
    early = await connect(server.url, "early")
    await early.send_raw(big)
    assert (await early.closed())[0] == CloseCode.MESSAGE_TOO_BIG
    s.offender = await connect(server.url, "off")
    await s.offender.hello()
    # frag's leave and off's return may share a presence frame.
    frames = await s.bystander.until_peers("off")
    assert all(f["type"] == "presence" for f in frames), frames
    await s.prove_undisturbed()


# -- the handshake: error, then close 1008 ---------------------------------------------------

HELLO: Frame = {"type": "hello", "v": 1, "node": "off"}


def hello(**fields: Any) -> str:
    frame = dict(HELLO)
    frame.update(fields)
    return json.dumps({k: v for k, v in frame.items() if v is not None})


HANDSHAKE_FAILURES: list[tuple[str, str | bytes, str]] = [
    ("not json", "hello?", "bad_json"),
    ("truncated json", '{"type": "hello"', "bad_json"),
    ("binary frame", hello().encode(), "bad_message"),
    ("json array", "[]", "bad_message"),
    ("no type", '{"v": 1, "node": "off"}', "bad_message"),
    ("ping first", '{"type": "ping", "id": 1}', "not_ready"),
    ("ops first", ops(entry()), "not_ready"),
    ("missing v", hello(v=None), "bad_message"),
    ("v 2", hello(v=2), "unsupported_version"),
    ("v 0", hello(v=0), "unsupported_version"),
    ("v string", hello(v="1"), "unsupported_version"),
    ("missing node", hello(node=None), "bad_message"),
    ("empty node", hello(node=""), "bad_message"),
    ("node with a space", hello(node="a b"), "bad_message"),
    ("node with a dot", hello(node="a.b"), "bad_message"),
    ("node too long", hello(node="n" * 65), "bad_message"),
    ("node not a string", hello(node=12), "bad_message"),
    ("doc empty", hello(doc=""), "bad_message"),
    ("doc starting with a dot", hello(doc=".hidden"), "bad_message"),
    ("doc with a slash", hello(doc="a/b"), "bad_message"),
    ("doc parent", hello(doc="../etc"), "bad_message"),
    ("doc too long", hello(doc="d" * 129), "bad_message"),
    ("doc not a string", hello(doc=["default"]), "bad_message"),
    ("doc non-ascii", hello(doc="café"), "bad_message"),
    ("since not an object", hello(since="e-1:3"), "bad_message"),
    ("since without seq", hello(since={"epoch": "e-1"}), "bad_message"),
    ("since without epoch", hello(since={"seq": 3}), "bad_message"),
    ("since epoch not a string", hello(since={"epoch": 1, "seq": 3}), "bad_message"),
    ("since seq negative", hello(since={"epoch": "e-1", "seq": -1}), "bad_message"),
    ("since seq a string", hello(since={"epoch": "e-1", "seq": "3"}), "bad_message"),
    ("since seq a boolean", hello(since={"epoch": "e-1", "seq": True}), "bad_message"),
    ("since seq a float", hello(since={"epoch": "e-1", "seq": 1.5}), "bad_message"),
    ("token not a string", hello(token=123), "bad_message"),
]


async def handshake_fails(
    server: SyncServer, connect: ClientFactory, first: str | bytes, code: str, **by: Any
) -> None:
    """``first`` is answered with ``code`` and close 1008; a bystander notices nothing."""
    bystander = await connect(server.url, "by")
    await bystander.hello(**by)
    offender = await connect(server.url, "off")
    await offender.send_raw(first)
    close, frames = await offender.closed()
    assert close == CloseCode.POLICY_VIOLATION
    assert len(frames) == 1, frames
    assert frames[0]["type"] == "error" and frames[0]["code"] == code, frames
    assert frames[0]["message"]
    writer = await connect(server.url, "writer")
    await writer.hello(**by)
    # Presence comes at the next tick: wait for it, so that it comes before the write.
    assert await bystander.recv() == {"type": "presence", "joined": ["writer"]}
    valid = writer.stamps.set("k", 1)
    assert (await writer.write([valid]))["seq"] == 1
    assert await bystander.recv() == {"type": "ops", "seq": 1, "origin": "writer", "ops": [valid]}


@pytest.mark.parametrize(
    ("first", "code"),
    [(f, c) for _, f, c in HANDSHAKE_FAILURES],
    ids=[n for n, _, _ in HANDSHAKE_FAILURES],
)
async def test_a_bad_first_frame_closes_with_1008(
    server: SyncServer, connect: ClientFactory, first: str | bytes, code: str
) -> None:
    await handshake_fails(server, connect, first, code)


@pytest.mark.parametrize("token", [None, "wrong", "", "SECRET", "secret "])
async def test_unauthorized_closes_with_1008(
    make_server: ServerFactory, connect: ClientFactory, token: str | None
) -> None:
    server = await make_server(token="secret", read_token="reader-secret")
    await handshake_fails(server, connect, hello(token=token), "unauthorized", token="secret")


async def test_a_token_is_ignored_when_none_is_required(
    server: SyncServer, connect: ClientFactory
) -> None:
    client = await connect(server.url, "off")
    welcome = (await client.hello(token="anything")).welcome
    assert welcome["readonly"] is False
