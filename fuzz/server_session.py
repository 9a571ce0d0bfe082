"""Fuzz the server's side of one connection: client frames through
``ServerSession.receive``, the ``ops`` frames it lets through applied with
``Document.apply_frame``, and the log lines that make them durable.

The input's first byte picks the connection (new, open or read-only); each line
after it is one text frame. Every frame must end in an event or a
``ProtocolError`` with a contract code (closing the connection only before
``hello``); a rejected ``ops`` frame must apply nothing; the ack, broadcast and
error frames must be JSON; replaying the log lines must rebuild the document
exactly, and so must its snapshot.

Run: ``python -m fuzz.server_session [CORPUS_DIR] -max_total_time=60``.
"""

from __future__ import annotations

import json
from typing import Final

from websockets.frames import CloseCode

from fuzz.harness import BASE_WALL, check_reloads, lines, run, state
from syncd.crdt import Clock, CrdtError, Document
from syncd.errors import ProtocolError
from syncd.protocol import (
    ERROR_CODES,
    Access,
    HelloEvent,
    OpsEvent,
    PingEvent,
    ServerSession,
    pong_frame,
)

__all__ = ["fuzz_one"]

HELLO: Final = {0: None, 1: "secret", 2: "reader"}
"""The token of the hello said before the fuzzed frames, by connection kind."""


def fuzz_one(data: bytes) -> None:
    """Feed one connection's frames to a session and a document, checking each answer."""
    choice, frames = lines(data)
    session = ServerSession(Access("secret", "reader"))
    token = HELLO[choice % 3]
    if token is not None:
        session.receive(json.dumps({"type": "hello", "v": 1, "node": "n1", "token": token}))
    doc = Document(max_value_bytes=64, max_ops=8)
    disk = Document(max_value_bytes=64, max_ops=8)
    clock = Clock("srv-1")
    for text in frames:
        waiting = session.hello is None
        try:
            event = session.receive(text)
        except ProtocolError as error:
            assert error.code in ERROR_CODES, error.code
            assert error.close_code == (CloseCode.POLICY_VIOLATION if waiting else None)
            assert json.loads(error.frame())["code"] == error.code
            if error.close_code is not None:
                break
            continue
        if isinstance(event, HelloEvent):
            assert waiting and session.hello == event.hello
        elif isinstance(event, PingEvent):
            assert json.loads(pong_frame(event.id, clock.tick(BASE_WALL)))["type"] == "pong"
        else:
            assert isinstance(event, OpsEvent) and not session.readonly
            apply(doc, disk, event.text)
    check_reloads(doc)


def apply(doc: Document, disk: Document, text: str) -> None:
    """Apply an ``ops`` frame as the server does, and its log line to ``disk``."""
    before = state(doc)
    try:
        result = doc.apply_frame(text, now_ms=BASE_WALL, max_skew_ms=60_000)
    except CrdtError as error:
        assert type(error) is CrdtError and error.code in ERROR_CODES, error
        assert state(doc) == before, "a rejected frame applied something"
        assert json.loads(ProtocolError.from_crdt(error).frame())["code"] == error.code
        return
    assert json.loads(result.ack())["seq"] == doc.seq
    broadcast, line = result.broadcast("n1"), result.log_line()
    assert (broadcast is None) == (line is None) == (result.applied == 0)
    if broadcast is not None and line is not None:
        assert len(json.loads(broadcast)["ops"]) == result.applied
        assert disk.restore_log_json(line) == result.applied
    assert state(disk) == state(doc), "the log replays different"


if __name__ == "__main__":
    run(fuzz_one, "server_session")
