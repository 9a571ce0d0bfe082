"""The client's side of the wire protocol (contract §2, §4–§6), without sockets.

A :class:`syncd.replica.Replica` is fed the frames a server sends, in the
contract's shapes: ``welcome``, ``entries``, ``synced``, ``pong`` and
``presence`` come from the server's own frame builders (:mod:`syncd.protocol`),
``ack``, broadcast ``ops`` and ``error`` frames are written out as the contract
shows them. Each test checks the events the replica returns, the frames it
asks to send, its local document and its resume point.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.crdt import Clock, Document, parse_timestamp, wall_clock_ms
from syncd.errors import CrdtError, ReadOnlyError, UnexpectedFrame
from syncd.events import (
    Acked,
    Change,
    ErrorReceived,
    Event,
    Overridden,
    Presence,
    Rejected,
    State,
    Status,
    Synced,
    Write,
)
from syncd.protocol import (
    as_text,
    entries_frame,
    error_frame,
    pong_frame,
    presence_frame,
    synced_frame,
    welcome_pieces,
)
from syncd.replica import Pending, Replica

EPOCH: Final = "e-91c2"
SERVER: Final = "srv-1"
Frame = dict[str, Any]


class Server:
    """Timestamps and frames as a server (and its other clients) would write them."""

    def __init__(self) -> None:
        self.clock = Clock(SERVER)
        self.peer = Clock("web-77c1")

    def time(self) -> str:
        return self.clock.now()

    def entry(
        self, key: str, value: Any = None, *, deleted: bool = False, after: str = ""
    ) -> Frame:
        """A remote entry, newer than every timestamp this server issued (and than ``after``)."""
        if after:
            self.peer.observe(after)
        ts = self.peer.now()
        if deleted:
            return {"key": key, "ts": ts, "deleted": True}
        return {"key": key, "ts": ts, "value": value}

    def welcome(
        self,
        *,
        seq: int = 0,
        full: bool = True,
        readonly: bool = False,
        peers: list[str] | None = None,
        time: str | None = None,
        epoch: str = EPOCH,
    ) -> str:
        return as_text(
            welcome_pieces(
                doc="default",
                node=SERVER,
                epoch=epoch,
                seq=seq,
                time=time or self.time(),
                full=full,
                readonly=readonly,
                peers=peers or [],
            )
        )


def entries(*items: Frame) -> str:
    return entries_frame(",".join(json.dumps(e) for e in items))


def ops(seq: int, origin: str, *items: Frame) -> str:
    return json.dumps({"type": "ops", "seq": seq, "origin": origin, "ops": list(items)})


def ack(id: int, seq: int, applied: int, ignored: int = 0) -> str:
    return json.dumps({"type": "ack", "id": id, "seq": seq, "applied": applied, "ignored": ignored})


def sent_ops(frame: str) -> Frame:
    """An ``ops`` frame the replica asked to send, parsed and checked."""
    parsed: Frame = json.loads(frame)
    assert parsed["type"] == "ops" and isinstance(parsed["id"], int), parsed
    assert len(parsed["ops"]) >= 1, parsed
    return parsed


def handshake(replica: Replica, server: Server, *frames: str, **welcome: Any) -> list[Event]:
    """hello → welcome, the given entries frames, synced; every event."""
    replica.hello_frame()
    events = replica.receive(server.welcome(**welcome))
    for frame in frames:
        events += replica.receive(frame)
    return events + replica.receive(synced_frame(welcome.get("seq", 0)))


def kinds(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def replica() -> Replica:
    return Replica("tui-3f9a")


# -- handshake ------------------------------------------------------------------------------


def test_hello_carries_since_only_once_a_resume_point_exists(
    replica: Replica, server: Server
) -> None:
    first = json.loads(replica.hello_frame())
    assert first == {"type": "hello", "v": 1, "doc": "default", "node": "tui-3f9a"}
    replica.receive(server.welcome(seq=7))
    replica.receive(synced_frame(7))
    replica.disconnected()
    second = json.loads(replica.hello_frame())
    assert second["since"] == {"epoch": EPOCH, "seq": 7}


def test_hello_carries_doc_and_token() -> None:
    replica = Replica("cli-1", "notes", token="s3cret")
    hello = json.loads(replica.hello_frame())
    assert (hello["doc"], hello["token"]) == ("notes", "s3cret")


def test_invalid_node_or_doc_is_refused() -> None:
    with pytest.raises(ValueError):
        Replica("no spaces")
    with pytest.raises(ValueError):
        Replica("ok", ".hidden")


def test_snapshot_fills_the_replica_and_reports_each_key(replica: Replica, server: Server) -> None:
    a, b, gone = (
        server.entry("a", 1),
        server.entry("b", {"x": [1]}),
        server.entry("c", deleted=True),
    )
    events = handshake(replica, server, entries(a, b), entries(gone), seq=3, peers=["web-77c1"])
    assert replica.document.to_dict() == {"a": 1, "b": {"x": [1]}}
    assert replica.document.entry("c") is not None  # the tombstone is kept
    assert (replica.epoch, replica.seq, replica.synced) == (EPOCH, 3, True)
    changes = kinds(events, Change)
    assert [(c.key, c.value, c.deleted, c.seq, c.local) for c in changes] == [
        ("a", 1, False, 3, False),
        ("b", {"x": [1]}, False, 3, False),
        ("c", None, True, 3, False),
    ]
    assert all(c.origin == "web-77c1" for c in changes), "origin is the writer of the entry"
    assert kinds(events, Presence) == [Presence(frozenset({"web-77c1"}))]
    assert events[-1] == Synced(EPOCH, 3, True, False)


def test_snapshot_is_swapped_in_at_synced_not_before(replica: Replica, server: Server) -> None:
    replica.set("mine", 1)
    replica.hello_frame()
    replica.receive(server.welcome(seq=1))
    replica.receive(entries(server.entry("theirs", 2)))
    assert replica.document.to_dict() == {"mine": 1}, "reads see the old state mid-handshake"
    replica.receive(synced_frame(1))
    assert replica.document.to_dict() == {"mine": 1, "theirs": 2}


def test_snapshot_drops_local_keys_it_lacks_except_unacknowledged_writes(
    replica: Replica, server: Server
) -> None:
    kept, stale, dropped = server.entry("kept", 1), server.entry("stale", 2), server.entry("old", 3)
    handshake(replica, server, entries(kept, stale, dropped), seq=3)
    replica.set("draft", "offline")  # written while offline: must survive
    replica.disconnected()
    # The server lost its history (a new epoch): its snapshot has only "kept".
    events = handshake(replica, server, entries(kept), seq=1, epoch="e-new")
    assert replica.document.to_dict() == {"kept": 1, "draft": "offline"}
    assert replica.is_pending("draft")
    dropped_keys = {c.key for c in kinds(events, Change) if c.deleted}
    assert dropped_keys == {"stale", "old"}
    assert (replica.epoch, replica.seq) == ("e-new", 1)


def test_snapshot_settles_writes_it_already_holds(replica: Replica, server: Server) -> None:
    change = replica.set("k", "v")
    # The server committed the write but the ack was lost with the connection.
    mine = {"key": "k", "ts": change.ts, "value": "v"}
    events = handshake(replica, server, entries(mine), seq=5)
    assert replica.pending_count == 0
    assert kinds(events, Acked) == [Acked(None, 5, 0, 1, (Write("k", change.ts),))]
    assert replica.outgoing() == []


def test_snapshot_with_a_newer_entry_overrides_a_pending_write(
    replica: Replica, server: Server
) -> None:
    change = replica.set("k", "mine")
    newer = server.entry("k", "theirs", after=change.ts)
    assert newer["ts"] > change.ts
    events = handshake(replica, server, entries(newer), seq=2)
    (overridden,) = kinds(events, Overridden)
    assert overridden.write == Write("k", change.ts) and overridden.value == "mine"
    assert (overridden.winner.value, overridden.winner.ts) == ("theirs", newer["ts"])
    assert replica.document["k"] == "theirs"
    assert replica.pending_count == 0, "a write that lost is not sent again"


def test_delta_merges_as_it_arrives_and_keeps_local_state(replica: Replica, server: Server) -> None:
    handshake(replica, server, entries(server.entry("a", 1), server.entry("b", 2)), seq=2)
    replica.disconnected()
    newer_b, deleted_a = server.entry("b", 20), server.entry("a", deleted=True)
    replica.hello_frame()
    replica.receive(server.welcome(seq=4, full=False))
    events = replica.receive(entries(newer_b, deleted_a))
    assert replica.document.to_dict() == {"b": 20}, "a delta applies at once"
    events += replica.receive(synced_frame(4))
    assert [(c.key, c.deleted) for c in kinds(events, Change)] == [("b", False), ("a", True)]
    assert events[-1] == Synced(EPOCH, 4, False, False)
    assert replica.seq == 4


def test_delta_of_another_epoch_is_refused(replica: Replica, server: Server) -> None:
    handshake(replica, server, seq=0)
    replica.disconnected()
    replica.hello_frame()
    with pytest.raises(UnexpectedFrame):
        replica.receive(server.welcome(full=False, epoch="e-other"))


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"type": "entries", "entries": []}',
        '{"type": "synced", "seq": 0}',
        '{"type": "ack", "id": 1, "seq": 1, "applied": 1, "ignored": 0}',
    ],
)
def test_anything_but_welcome_after_hello_is_unexpected(replica: Replica, frame: str) -> None:
    replica.hello_frame()
    with pytest.raises(UnexpectedFrame):
        replica.receive(frame)


def test_malformed_server_frames_are_unexpected(replica: Replica, server: Server) -> None:
    replica.hello_frame()
    with pytest.raises(UnexpectedFrame):
        replica.receive('{"type": "welcome", "epoch": "e", "seq": "1"}')
    replica.hello_frame()
    replica.receive(server.welcome())
    with pytest.raises(UnexpectedFrame):
        replica.receive(entries({"key": "k", "ts": "not-a-ts", "value": 1}))
    with pytest.raises(UnexpectedFrame):
        replica.receive(ack(1, 1, 1))  # acks only come after synced


def test_unknown_frame_types_are_ignored(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    assert replica.receive('{"type": "hint", "text": "from a newer server"}') == []


# -- the clock ---------------------------------------------------------------------------------


def test_welcome_time_and_received_entries_advance_the_clock(
    replica: Replica, server: Server
) -> None:
    ahead = f"{wall_clock_ms() + 30_000:013d}-00004-{SERVER}"
    handshake(replica, server, time=ahead)
    assert replica.set("k", 1).ts > ahead
    future_entry: Frame = {
        "key": "f",
        "ts": f"{wall_clock_ms() + 50_000:013d}-00009-web-1",
        "value": 1,
    }
    replica.receive(ops(2, "web-1", future_entry))
    assert replica.set("k", 2).ts > future_entry["ts"]


def test_a_rejected_server_frame_does_not_move_the_clock(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    jammed = {"key": "k", "ts": "9999999999999-99999-x", "value": 1}  # valid, but ...
    invalid = {"key": "", "ts": "1764028800000-00000-x", "value": 1}  # ... this one is not
    with pytest.raises(UnexpectedFrame):
        replica.receive(ops(1, "x", jammed, invalid))
    before = parse_timestamp(replica.set("k", 2).ts)[0]
    assert before < 9_999_999_999_999, "the refused frame's timestamp reached the clock"


def test_pong_time_advances_the_clock_and_refines_the_offset(server: Server) -> None:
    now = [1_000_000]
    replica = Replica("tui-1", wall=lambda: now[0])
    handshake(replica, server, time=f"{1_000_000:013d}-00000-{SERVER}")
    ping = json.loads(replica.ping_frame())
    now[0] += 100  # a round trip of 100 ms; the server read its clock at +50, 7 s ahead
    pong = pong_frame(ping["id"], f"{1_000_050 + 7_000:013d}-00000-{SERVER}")
    assert replica.receive(pong) == []
    assert replica.offset_ms == 7_000
    wall, _, node = parse_timestamp(replica.set("k", 1).ts)
    assert (wall, node) == (now[0] + 7_000, "tui-1")


@pytest.mark.parametrize("skew_ms", [-600_000, 600_000])
def test_a_wrong_wall_clock_still_writes_server_time(server: Server, skew_ms: int) -> None:
    replica = Replica("tui-1", wall=lambda: wall_clock_ms() + skew_ms)
    handshake(replica, server)
    wall = parse_timestamp(replica.set("k", 1).ts)[0]
    assert abs(wall - wall_clock_ms()) < 5_000, "stamped by the server's clock, not ours"


# -- writing ----------------------------------------------------------------------------------


def test_a_local_write_applies_at_once_and_is_pending(replica: Replica) -> None:
    change = replica.set("k", {"b": 1, "a": 1.0})
    assert change.local and change.seq is None and change.origin == "tui-3f9a"
    assert change.value == {"a": 1, "b": 1}, "the canonical value, as every replica sees it"
    assert replica.document["k"] == {"a": 1, "b": 1}
    assert replica.pending_count == 1
    assert replica.outgoing() == [], "nothing is sent before the handshake"


def test_writes_go_out_with_their_original_timestamps(replica: Replica, server: Server) -> None:
    first = replica.set("a", 1)
    second = replica.delete("b")
    handshake(replica, server)
    (frame,) = replica.outgoing()
    sent = sent_ops(frame)
    assert sent["ops"] == [
        {"key": "a", "ts": first.ts, "value": 1},
        {"key": "b", "ts": second.ts, "deleted": True},
    ]
    events = replica.receive(ack(sent["id"], 2, 2))
    assert events == [Acked(sent["id"], 2, 2, 0, (Write("a", first.ts), Write("b", second.ts)))]
    assert replica.pending_count == 0 and replica.seq == 2


def test_only_the_latest_write_of_a_key_is_pending(replica: Replica, server: Server) -> None:
    replica.set("k", 1)
    latest = replica.set("k", 2)
    handshake(replica, server)
    (frame,) = replica.outgoing()
    assert sent_ops(frame)["ops"] == [{"key": "k", "ts": latest.ts, "value": 2}]


def test_a_rewrite_while_in_flight_stays_pending_after_the_ack(
    replica: Replica, server: Server
) -> None:
    handshake(replica, server)
    replica.set("k", 1)
    (first,) = replica.outgoing()
    newer = replica.set("k", 2)
    replica.receive(ack(sent_ops(first)["id"], 1, 1))
    assert [p.ts for p in replica.pending] == [newer.ts]
    (second,) = replica.outgoing()
    assert sent_ops(second)["ops"][0]["value"] == 2


def test_pending_writes_are_sent_again_after_a_reconnect(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    written = [replica.set(f"k{i}", i) for i in range(3)]
    (lost,) = replica.outgoing()
    replica.disconnected()  # the connection dies before the ack
    handshake(replica, server, full=False)
    (again,) = replica.outgoing()
    assert sent_ops(again)["ops"] == sent_ops(lost)["ops"]
    assert sent_ops(again)["id"] != sent_ops(lost)["id"]
    assert [op["ts"] for op in sent_ops(again)["ops"]] == [c.ts for c in written]


def test_batches_hold_at_most_max_ops_and_respect_the_window(
    replica: Replica, server: Server
) -> None:
    handshake(replica, server)
    for i in range(2500):
        replica.set(f"k{i:04d}", i)
    frames = replica.outgoing(window=2)
    assert [len(sent_ops(f)["ops"]) for f in frames] == [1000, 1000]
    assert replica.outgoing(window=2) == [], "two messages already wait for their answer"
    replica.receive(ack(sent_ops(frames[0])["id"], 1000, 1000))
    (last,) = replica.outgoing(window=2)
    assert len(sent_ops(last)["ops"]) == 500
    keys = [op["key"] for f in [*frames, last] for op in sent_ops(f)["ops"]]
    assert keys == [f"k{i:04d}" for i in range(2500)], "in write order, each once"


def test_batches_stay_within_the_frame_limit(server: Server) -> None:
    replica = Replica("tui-1", max_frame_bytes=200_000)
    handshake(replica, server)
    for i in range(10):
        replica.set(f"big{i}", "x" * 60_000)
    frames = replica.outgoing()
    assert [len(sent_ops(f)["ops"]) for f in frames] == [3, 3, 3, 1]
    assert all(len(f.encode()) <= 200_000 for f in frames)


def test_message_ids_are_fresh_on_every_frame(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    ids = []
    for i in range(5):
        replica.set(f"k{i}", i)
        ids += [sent_ops(f)["id"] for f in replica.outgoing()]
        ids.append(json.loads(replica.ping_frame())["id"])
    assert len(set(ids)) == len(ids)


def test_invalid_values_are_refused_before_anything_is_queued(replica: Replica) -> None:
    from syncd.errors import CrdtError

    with pytest.raises(CrdtError):
        replica.set("", 1)
    with pytest.raises(CrdtError):
        replica.set("k", float("nan"))
    with pytest.raises(CrdtError):
        replica.set("k", "x" * 70_000)
    assert replica.pending_count == 0 and len(replica.document) == 0


# -- broadcasts ----------------------------------------------------------------------------


def test_broadcasts_merge_with_their_origin_and_seq(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    a, b = server.entry("a", 1), server.entry("b", deleted=True)
    events = replica.receive(ops(9, "web-77c1", a, b))
    assert events == [
        Change("a", 1, False, a["ts"], "web-77c1", 9, False),
        Change("b", None, True, b["ts"], "web-77c1", 9, False),
    ]
    assert replica.seq == 9


def test_an_older_remote_entry_does_not_change_a_newer_local_one(
    replica: Replica, server: Server
) -> None:
    handshake(replica, server)
    older = {"key": "k", "ts": "0000000001000-00000-web-77c1", "value": "old"}
    replica.set("k", "new")
    assert replica.receive(ops(3, "web-77c1", older)) == []
    assert replica.document["k"] == "new" and replica.is_pending("k")


def test_a_newer_remote_write_overrides_a_pending_one(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    mine = replica.set("k", "mine")
    (frame,) = replica.outgoing()
    theirs = server.entry("k", "theirs", after=mine.ts)
    events = replica.receive(ops(4, "web-77c1", theirs))
    assert kinds(events, Change)[0].value == "theirs"
    (overridden,) = kinds(events, Overridden)
    assert overridden.write == Write("k", mine.ts) and overridden.winner.origin == "web-77c1"
    assert replica.pending_count == 0
    # Its ack arrives later (the server ignored it): nothing is left to settle.
    acked = replica.receive(ack(sent_ops(frame)["id"], 4, 0, 1))
    assert kinds(acked, Acked)[0].ignored == 1 and replica.document["k"] == "theirs"


# -- errors -------------------------------------------------------------------------------------


def test_an_error_before_welcome_is_fatal(replica: Replica) -> None:
    replica.hello_frame()
    events = replica.receive(error_frame("unauthorized", "wrong token"))
    assert events == [ErrorReceived("unauthorized", "wrong token", None, fatal=True)]


@pytest.mark.parametrize("code", ["rate_limited", "clock_skew", "internal"])
def test_retryable_errors_requeue_the_message_after_a_pause(server: Server, code: str) -> None:
    now = [1_000_000]
    replica = Replica("tui-3f9a", wall=lambda: now[0])
    handshake(replica, server)
    change = replica.set("k", 1)
    (frame,) = replica.outgoing()
    id = sent_ops(frame)["id"]
    (event,) = replica.receive(error_frame(code, "try later", id))
    assert isinstance(event, Rejected) and event.retry_after == 1.0
    assert event.writes == (Write("k", change.ts),)
    assert replica.outgoing() == [] and replica.resume_in() == 1.0, "paused"
    assert replica.document["k"] == 1 and replica.is_pending("k"), "kept, not rolled back"
    now[0] += 1_000
    (again,) = replica.outgoing()
    assert sent_ops(again)["ops"] == sent_ops(frame)["ops"]


def test_too_many_ops_halves_the_batch_and_sends_again(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    for i in range(10):
        replica.set(f"k{i}", i)
    (frame,) = replica.outgoing()
    (event,) = replica.receive(error_frame("too_large", "too many ops", sent_ops(frame)["id"]))
    assert isinstance(event, Rejected) and event.retry_after == 0
    assert [len(sent_ops(f)["ops"]) for f in replica.outgoing()] == [5, 5]


@pytest.mark.parametrize("code", ["too_large", "bad_message", "forbidden", "a_new_code"])
def test_a_write_refused_for_good_is_rolled_back(
    replica: Replica, server: Server, code: str
) -> None:
    handshake(replica, server, entries(server.entry("k", "server's")), seq=1)
    change = replica.set("k", "mine")
    (frame,) = replica.outgoing()
    rejected, rolled_back = replica.receive(error_frame(code, "nope", sent_ops(frame)["id"]))
    assert rejected == Rejected(code, "nope", sent_ops(frame)["id"], (Write("k", change.ts),), None)
    assert isinstance(rolled_back, Change) and rolled_back.value == "server's"
    assert not rolled_back.local and replica.document["k"] == "server's"
    assert replica.pending_count == 0 and replica.outgoing() == []


def test_a_refused_new_key_disappears(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    replica.set("other", 1)
    replica.receive(ack(sent_ops(replica.outgoing()[0])["id"], 1, 1))
    change = replica.set("new", "x" * 10)
    (frame,) = replica.outgoing()
    events = replica.receive(error_frame("too_large", "too big", sent_ops(frame)["id"]))
    assert events[1] == Change("new", None, True, change.ts, SERVER, 1, False)
    assert replica.document.entry("new") is None and replica.document["other"] == 1


def test_a_refusal_rolls_back_to_the_latest_server_entry(replica: Replica, server: Server) -> None:
    first = {"key": "k", "ts": f"{wall_clock_ms() - 10_000:013d}-00000-web-1", "value": "first"}
    handshake(replica, server, entries(first), seq=1)
    change = replica.set("k", "mine")
    (frame,) = replica.outgoing()
    # Another client's older write reaches the server meanwhile: it loses to ours here.
    older = {"key": "k", "ts": f"{parse_timestamp(change.ts)[0] - 1:013d}-00000-web-1"}
    replica.receive(ops(2, "web-1", {**older, "value": "second"}))
    assert replica.document["k"] == "mine"
    replica.receive(error_frame("bad_message", "nope", sent_ops(frame)["id"]))
    assert replica.document["k"] == "second", "the server's newest entry, not the first"


def test_a_refusal_of_a_replaced_write_keeps_the_newer_one(
    replica: Replica, server: Server
) -> None:
    handshake(replica, server)
    replica.set("k", 1)
    (frame,) = replica.outgoing()
    newer = replica.set("k", 2)
    events = replica.receive(error_frame("bad_message", "nope", sent_ops(frame)["id"]))
    assert [type(e) for e in events] == [Rejected], "reported, nothing rolled back"
    assert replica.document["k"] == 2 and replica.pending[0].ts == newer.ts


def test_update_checks_every_value_before_writing_any(replica: Replica) -> None:
    with pytest.raises(CrdtError, match="over the limit"):
        replica.update([("a", 1), ("b", 2), ("c", "x" * 70_000)])
    with pytest.raises(CrdtError, match="empty"):
        replica.update([("a", 1), ("", 2)])
    assert len(replica.document) == 0 and replica.pending_count == 0
    assert [c.key for c in replica.update([("a", 1), ("b", 2)])] == ["a", "b"]


def test_an_error_naming_an_entry_drops_only_that_entry(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    for i in range(3):
        replica.set(f"k{i}", i)
    (frame,) = replica.outgoing()
    error = json.loads(error_frame("too_large", "ops[1]: value too large", sent_ops(frame)["id"]))
    event, rolled_back = replica.receive(json.dumps({**error, "entry": 1}))
    assert isinstance(event, Rejected) and [w.key for w in event.writes] == ["k1"]
    assert rolled_back == Change("k1", None, True, event.writes[0].ts, SERVER, 0, False)
    (again,) = replica.outgoing()
    assert [op["key"] for op in sent_ops(again)["ops"]] == ["k0", "k2"]


def test_an_error_about_no_pending_message_is_reported(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    events = replica.receive(error_frame("bad_json", "not JSON"))
    assert events == [ErrorReceived("bad_json", "not JSON", None, fatal=False)]


def test_forbidden_makes_the_replica_read_only(replica: Replica, server: Server) -> None:
    handshake(replica, server)
    replica.set("k", 1)
    (frame,) = replica.outgoing()
    replica.receive(error_frame("forbidden", "read-only", sent_ops(frame)["id"]))
    assert replica.readonly and replica.outgoing() == []
    with pytest.raises(ReadOnlyError):
        replica.set("k", 2)


# -- read-only and presence ---------------------------------------------------------------------


def test_a_read_only_welcome_holds_writes_back(replica: Replica, server: Server) -> None:
    replica.set("offline", 1)
    events = handshake(replica, server, readonly=True)
    assert events[-1] == Synced(EPOCH, 0, True, True)
    assert replica.outgoing() == [] and replica.pending_count == 1
    with pytest.raises(ReadOnlyError):
        replica.set("k", 1)


def test_presence_tracks_peers(replica: Replica, server: Server) -> None:
    handshake(replica, server, peers=["a"])
    assert replica.receive(presence_frame(joined=["b"])) == [
        Presence(frozenset({"a", "b"}), ("b",), ())
    ]
    assert replica.receive(presence_frame(left=["a"])) == [Presence(frozenset({"b"}), (), ("a",))]
    replica.disconnected()
    assert replica.peers == frozenset()


# -- restoring ----------------------------------------------------------------------------------


def test_restored_state_resumes_with_a_delta_and_resends_pending(server: Server) -> None:
    first = Replica("tui-1")
    handshake(first, server, entries(server.entry("a", 1)), seq=1)
    first.set("b", 2)
    saved = [p.wire() for p in first.pending]
    document = Document()
    document.merge(first.document)

    second = Replica("tui-1")
    second.restore(document, first.epoch, first.seq)
    second.restore_pending(saved)
    assert json.loads(second.hello_frame())["since"] == {"epoch": EPOCH, "seq": 1}
    second.receive(server.welcome(seq=1, full=False))
    second.receive(synced_frame(1))
    (frame,) = second.outgoing()
    assert sent_ops(frame)["ops"] == saved
    assert second.set("c", 3).ts > saved[0]["ts"], "the clock continues after restored writes"


def test_pending_wire_form_is_the_entry(replica: Replica) -> None:
    change = replica.set("ключ", [1, "два"])
    (pending,) = replica.pending
    assert pending.wire() == {"key": "ключ", "ts": change.ts, "value": [1, "два"]}
    assert pending.size == len(pending.text.encode())
    assert Pending.make("k", change.ts, None).wire() == {
        "key": "k",
        "ts": change.ts,
        "deleted": True,
    }


def test_status_reads_as_a_ui_shows_it() -> None:
    assert str(Status(State.SYNCED)) == "synced"
    assert str(Status(State.SYNCED, readonly=True)) == "synced (read-only)"
    assert str(Status(State.OFFLINE, retry_in=2.4)) == "offline (retrying in 2 s)"
    assert str(Status(State.FAILED, error="unauthorized: wrong token")) == (
        "failed: unauthorized: wrong token"
    )


# -- a property --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(0, 9), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.data(),
)
def test_pending_is_exactly_the_unacknowledged_latest_writes(
    writes: list[tuple[str, int, bool]], data: st.DataObject
) -> None:
    """Whatever the interleaving of writes, sends, acks and reconnects, the pending
    writes are the latest write of each key not yet acknowledged, and the local
    document holds every latest write."""
    server = Server()
    replica = Replica("tui-1")
    handshake(replica, server)
    latest: dict[str, str] = {}
    acked: set[str] = set()
    inflight: list[Frame] = []
    for key, value, reconnect in writes:
        latest[key] = replica.set(key, value).ts
        inflight += [sent_ops(f) for f in replica.outgoing()]
        ack_now = data.draw(st.booleans())
        if inflight and ack_now:
            message = inflight.pop(0)
            replica.receive(ack(message["id"], 1, len(message["ops"])))
            acked.update(op["ts"] for op in message["ops"])
        if reconnect:
            replica.disconnected()
            inflight.clear()
            handshake(replica, server, full=False)
    expected = {key for key, ts in latest.items() if ts not in acked}
    assert {p.key for p in replica.pending} == expected
    assert all(replica.document.entry(k).ts == ts for k, ts in latest.items())  # type: ignore[union-attr]
