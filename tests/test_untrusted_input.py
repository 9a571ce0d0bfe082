"""Untrusted input through the sans-I/O layers, under hypothesis: structured inputs
replayed through the atheris harnesses of ``fuzz/``, which hold the invariants.

- Client frames — valid ``ops`` frames, mutated ones, hellos, pings, random
  objects and text — through ``ServerSession.receive`` and, for ``ops``,
  ``Document.apply_frame`` and its log line (:mod:`fuzz.server_session`): only
  ``ProtocolError`` or ``CrdtError`` with a contract code, nothing applied on an
  error, the log and the snapshot rebuild the document exactly.
- Server frames — welcome, entries, synced, ops, ack, pong, presence and error,
  with fields dropped, retyped or mutated — through a client ``Replica`` at each
  stage of a connection (:mod:`fuzz.replica`): only ``UnexpectedFrame``, and the
  replica stays consistent and writes valid ``ops`` frames.
- Data files — valid, mutated, random, deeply nested — through
  ``DocumentStore.load`` (:mod:`fuzz.store`): loaded or ``StoreError``, nothing else.
"""

from __future__ import annotations

import json
from typing import Any, Final

from crdt_strategies import frame_text, mutated, small_json_values, wire_entries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import replica, server_session, store
from fuzz.harness import BASE_WALL
from fuzz.seeds import stored_files
from syncd.protocol import ERROR_CODES

TS: Final = f"{BASE_WALL:013d}-00000-web-77c1"
FILE, LOG = stored_files()

odd_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, True, -1, 1.5, 2**53, 2**64, "", "x", [], {}, "9999999999999-99999-x"]),
    small_json_values,
)
"""What a mutated field may hold instead."""

odd_entries: st.SearchStrategy[Any] = st.one_of(
    wire_entries(),
    st.sampled_from(
        [
            {"key": "k"},
            {"key": "k", "ts": "yesterday", "value": 1},
            {"key": "k", "ts": TS, "value": float("nan")},
            {"key": "k", "ts": TS, "deleted": False},
            {"key": "", "ts": TS, "value": 1},
            {"key": "k", "ts": "9999999999999-99999-x", "value": 1},
            {"key": 1, "ts": TS},
            "entry",
        ]
    ),
)


def lines(choice: int, frames: list[str]) -> bytes:
    """A harness input: the choice byte, then one frame per line."""
    return bytes([choice]) + "\n".join(frames).encode("utf-8", "surrogatepass")


# -- client frames through the server's session ------------------------------------------

ops_frames = st.builds(frame_text, st.integers(0, 2**53 + 1), st.lists(wire_entries(), max_size=10))
hellos = st.builds(
    lambda token, extra: json.dumps({"type": "hello", "v": 1, "node": "n1", **token, **extra}),
    st.sampled_from([{}, {"token": "secret"}, {"token": "reader"}]),
    st.dictionaries(st.sampled_from(["v", "doc", "since", "node"]), odd_values, max_size=1),
)
client_frames = st.one_of(
    ops_frames,
    mutated(ops_frames),
    hellos,
    mutated(hellos, most=2),
    st.sampled_from(['{"type":"ping"}', '{"type":"ping","id":3}', '{"type":"ping","id":-1}']),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"type": st.sampled_from(["ops", "ping", "hello", "ack", "x"]) | odd_values},
            optional={"id": odd_values, "ops": st.lists(odd_entries, max_size=3) | odd_values},
        ),
    ),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.integers(0, 2), frames=st.lists(client_frames, min_size=1, max_size=5))
def test_client_frames_get_an_event_or_a_contract_error(choice: int, frames: list[str]) -> None:
    server_session.fuzz_one(lines(choice, frames))


# -- server frames through a client replica ----------------------------------------------

entries_lists = st.lists(wire_entries(), max_size=4) | st.lists(odd_entries, min_size=1, max_size=3)


@st.composite
def server_frames(draw: st.DrawFn) -> str:
    """A frame as a server sends it, maybe with one field dropped or retyped, maybe mutated."""
    kind = draw(st.sampled_from(["welcome", "entries", "synced", "ops", "ack", "pong", "x"]))
    frame: dict[str, Any] = {"type": kind}
    if kind == "welcome":
        frame.update(
            v=1,
            doc="default",
            node="srv-1",
            epoch=draw(st.sampled_from(["e-91c2", "e-other"])),
            seq=draw(st.integers(0, 9)),
            time=TS,
            full=draw(st.booleans()),
            readonly=draw(st.booleans()),
            peers=["web-77c1"],
        )
    elif kind == "entries":
        frame["entries"] = draw(entries_lists)
    elif kind in ("synced", "ops"):
        frame["seq"] = draw(st.integers(0, 9))
        if kind == "ops":
            frame.update(origin="web-77c1", ops=draw(entries_lists))
    elif kind == "ack":
        frame.update(id=draw(st.integers(0, 3)), seq=4, applied=1, ignored=0)
    elif kind == "pong":
        frame.update(id=draw(st.integers(0, 3)), time=TS)
    frame.update(
        draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"type": st.just("presence")},
                    optional={"joined": odd_values, "left": odd_values},
                ),
                st.fixed_dictionaries(
                    {"type": st.just("error"), "code": st.sampled_from(sorted(ERROR_CODES))},
                    optional={
                        "id": st.integers(0, 3) | odd_values,
                        "entry": st.integers(-1, 3) | odd_values,
                    },
                ),
                st.just({}),
            )
        )
    )
    if draw(st.booleans()) and len(frame) > 1:
        field = draw(st.sampled_from(sorted(frame)))
        if draw(st.booleans()):
            del frame[field]
        else:
            frame[field] = draw(odd_values)
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    return draw(mutated(st.just(text), most=2)) if draw(st.integers(0, 4)) == 0 else text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.integers(0, 4), frames=st.lists(server_frames(), min_size=1, max_size=6))
def test_server_frames_leave_the_replica_consistent(choice: int, frames: list[str]) -> None:
    replica.fuzz_one(lines(choice, frames))


# -- data files through the store --------------------------------------------------------

deep = st.integers(1, 3000)
files = st.one_of(
    st.just(FILE),
    mutated(st.just(FILE)),
    st.builds(
        json.dumps,
        st.fixed_dictionaries({}, optional={"meta": odd_values, "entries": odd_values}),
    ),
    st.builds(lambda n: '{"meta":' + "[" * n + "]" * n + "}", deep),
    st.builds(lambda n: '{"meta":{"1":{"epoch":"e","seq":' + "[" * n + "]" * n + "}}}", deep),
)
logs = st.one_of(
    st.just(LOG),
    mutated(st.just(LOG)),
    st.builds(lambda seq: json.dumps({"seq": seq, "ops": []}) + "\n", st.integers(-1, 2**64 + 1)),
    st.lists(st.builds(json.dumps, odd_values)).map(lambda lines: "\n".join(lines) + "\n"),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 3), file=files, log=logs)
def test_data_files_load_or_raise_a_store_error(which: int, file: str, log: str) -> None:
    data = file.encode("utf-8", "surrogatepass") + b"\0" + log.encode("utf-8", "surrogatepass")
    store.fuzz_one(bytes([which]) + data)
