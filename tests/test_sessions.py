"""The sans-I/O replica against the session vectors (``tests/vectors/sessions.json``).

Each session scripts local actions and server frames; after every step the
replica's outgoing frames, its events (in the vectors' neutral form) and the
parts of its state the step names must be exactly as written. The web client's
``test/sessions.test.ts`` reads the same file, so the Python and TypeScript
client state machines cannot drift apart (see ``tests/vectors/README.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncd.crdt import CrdtError
from syncd.errors import SyncdError
from syncd.events import Acked, Change, ErrorReceived, Event, Overridden, Rejected, Synced
from syncd.replica import Replica

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "sessions.json").read_text(encoding="utf-8")
)
PHASES = {"offline": "offline", "hello": "hello", "syncing": "syncing", "synced": "synced"}


def neutral(event: Event) -> list[dict[str, Any]]:
    """An event in the vectors' form; events the vectors do not pin give nothing."""
    if isinstance(event, Change):
        change: dict[str, Any] = {"type": "change", "key": event.key}
        if event.deleted:
            change["deleted"] = True
        else:
            change["value"] = event.value
        change["local"] = event.local
        return [change]
    if isinstance(event, Synced):
        return [{"type": "synced", "full": event.full, "seq": event.seq}]
    if isinstance(event, Acked):
        return [{"type": "acked", "writes": [[w.key, w.ts] for w in event.writes]}]
    if isinstance(event, Overridden):
        return [
            {
                "type": "overridden",
                "key": event.write.key,
                "ts": event.write.ts,
                "winner_ts": event.winner.ts,
            }
        ]
    if isinstance(event, Rejected):
        retry = None if event.retry_after is None else round(event.retry_after * 1000)
        writes = [[w.key, w.ts] for w in event.writes]
        return [{"type": "rejected", "code": event.code, "writes": writes, "retry_after_ms": retry}]
    if isinstance(event, ErrorReceived):
        return [{"type": "error", "code": event.code, "fatal": event.fatal}]
    return []  # Presence and Status: the state's peers and phase pin them


def sort_change_runs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive change events sorted by key (README: their order is not pinned)."""
    result: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for event in [*events, {"type": "end"}]:
        if event["type"] == "change":
            run.append(event)
            continue
        result.extend(sorted(run, key=lambda e: str(e["key"])))
        run = []
        if event["type"] != "end":
            result.append(event)
    return result


def state_of(replica: Replica) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for entry in replica.document.changes_since(0):
        entries[entry.key] = (
            {"ts": entry.ts, "deleted": True}
            if entry.deleted
            else {"ts": entry.ts, "value": entry.value}
        )
    return {
        "phase": PHASES[replica.phase],
        "entries": entries,
        "pending": [[p.key, p.ts] for p in replica.pending],
        "since": None if replica.epoch is None else {"epoch": replica.epoch, "seq": replica.seq},
        "peers": sorted(replica.peers),
        "readonly": replica.readonly,
    }


def step(replica: Replica, now: list[int], action: dict[str, Any]) -> tuple[list[Any], list[Event]]:
    """Do one step; the frames sent (parsed) and the events."""
    sent: list[str] = []
    events: list[Event] = []
    match action["do"]:
        case "connect":
            sent.append(replica.hello_frame())
        case "disconnect":
            replica.disconnected()
        case "set":
            events.append(replica.set(action["key"], action["value"]))
        case "delete":
            events.append(replica.delete(action["key"]))
        case "ping":
            sent.append(replica.ping_frame())
        case "advance":
            now[0] += action["ms"]
        case "receive":
            events = replica.receive(json.dumps(action["frame"], ensure_ascii=False))
        case other:
            raise AssertionError(f"unknown action {other!r}")
    sent.extend(replica.outgoing(VECTORS["window"]))
    return [json.loads(frame) for frame in sent], events


@pytest.mark.parametrize("session", VECTORS["sessions"], ids=lambda s: s["name"])
def test_session(session: dict[str, Any]) -> None:
    now = [VECTORS["clock"]]
    replica = Replica(VECTORS["node"], VECTORS["doc"], wall=lambda: now[0])
    for number, action in enumerate(session["steps"], start=1):
        where = f"step {number} ({action['do']})"
        if action.get("raises"):
            with pytest.raises((CrdtError, SyncdError)):
                step(replica, now, action)
            sent: list[Any] = []
            events: list[Event] = []
        else:
            sent, events = step(replica, now, action)
        assert sent == action.get("sent", []), f"{where}: frames sent"
        got = sort_change_runs([n for event in events for n in neutral(event)])
        assert got == action.get("events", []), f"{where}: events"
        state = state_of(replica)
        for name, expected in action.get("state", {}).items():
            assert state[name] == expected, f"{where}: state {name}"
