"""The history requests on the wire, both sides, without I/O (``docs/protocol.md``, §History).

Three read-only requests, answered only to the connection that asks, each with
the ``id`` it carried:

- ``history`` ``{key, limit?, before?}`` → ``history_page`` ``{key, versions, next}``:
  one key's versions, newest first; ``next`` is the ``before`` of the next page;
- ``conflicts`` ``{node?, limit?, before?}`` → ``conflicts_page`` ``{conflicts, next}``:
  overridden writes, newest first, optionally only those of ``node``;
- ``state_at`` ``{at, after?, limit?}`` → ``state_page`` ``{at, entries, next}``:
  the live entries at wall time ``at`` (ms), in key order, paged by key.

A page is also cut short to fit the frame limit; ``next`` is ``null`` on the last.
The server parses requests (:func:`parse_request`) and builds answers
(:func:`history_page` …); the client builds requests (:func:`request_frame`) and
reads answers (:func:`read_versions` …).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from syncd.crdt import MAX_ID, CrdtError, JSONValue, check_key, validate_node
from syncd.errors import ProtocolError, UnexpectedFrame
from syncd.history import ConflictRow, StateRow, VersionRow

__all__ = [
    "ANSWER_TYPES",
    "MAX_LIMIT",
    "MAX_STATE_LIMIT",
    "REQUEST_TYPES",
    "Conflict",
    "ConflictsRequest",
    "HistoryRequest",
    "Query",
    "StateRequest",
    "Version",
    "conflicts_page",
    "history_page",
    "parse_request",
    "read_conflicts",
    "read_state",
    "read_versions",
    "request_frame",
    "state_page",
]

REQUEST_TYPES: Final = frozenset({"history", "conflicts", "state_at"})
ANSWER_TYPES: Final = frozenset({"history_page", "conflicts_page", "state_page"})
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
"""The most versions or conflicts in one page."""
DEFAULT_STATE_LIMIT: Final = 1000
MAX_STATE_LIMIT: Final = 10_000
"""The most entries in one page of ``state_at``."""
_PAGE_OVERHEAD: Final = 512
"""Bytes kept free in a page for its fields around the items."""


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """``history``: versions of ``key`` older than the ts ``before``."""

    id: int
    key: str
    limit: int
    before: str | None


@dataclass(frozen=True, slots=True)
class ConflictsRequest:
    """``conflicts``: overridden writes (of ``node`` only, if given) below id ``before``."""

    id: int
    node: str | None
    limit: int
    before: int | None


@dataclass(frozen=True, slots=True)
class StateRequest:
    """``state_at``: the live entries at wall time ``at_ms``, keys after ``after``."""

    id: int
    at_ms: int
    after: str | None
    limit: int


Query = HistoryRequest | ConflictsRequest | StateRequest


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def parse_request(kind: str, text: str) -> Query:
    """The request in frame ``text`` of type ``kind`` (one of :data:`REQUEST_TYPES`);
    raises :class:`ProtocolError` ``bad_message`` or ``too_large`` with its id."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError("bad_message", f"unreadable frame: {error}") from None
    raw_id = frame.get("id")
    id = raw_id if _is_int(raw_id, 0, MAX_ID) else None

    def bad(message: str, code: str = "bad_message") -> ProtocolError:
        return ProtocolError(code, f"{kind}: {message}", id=id)

    if id is None:
        raise bad(f'"id" must be an integer from 0 to {MAX_ID}')
    top = MAX_STATE_LIMIT if kind == "state_at" else MAX_LIMIT
    limit = frame.get("limit", DEFAULT_STATE_LIMIT if kind == "state_at" else DEFAULT_LIMIT)
    if not _is_int(limit, 1, 1 << 62):
        raise bad(f'"limit" must be an integer from 1 to {top}')
    if limit > top:
        raise bad(f'"limit" {limit} is over the most of {top}', "too_large")
    if kind == "history":
        return HistoryRequest(id, _key(frame.get("key"), bad), limit, _ts(frame, bad))
    if kind == "conflicts":
        node = frame.get("node")
        if node is not None:
            try:
                validate_node(node if isinstance(node, str) else "")
            except CrdtError as error:
                raise bad(f'"node": {error}') from None
        before = frame.get("before")
        if before is not None and not _is_int(before, 0, MAX_ID):
            raise bad(f'"before" must be an integer from 0 to {MAX_ID}')
        return ConflictsRequest(id, node, limit, before)
    at = frame.get("at")
    if not _is_int(at, 0, 10**13 - 2):
        raise bad('"at" must be a time in milliseconds since the Unix epoch')
    after = frame.get("after")
    if after is not None:
        after = _key(after, bad)
    return StateRequest(id, at, after, limit)


def _key(key: Any, bad: Any) -> str:
    if not isinstance(key, str):
        raise bad('"key" must be a string')
    try:
        check_key(key)
    except CrdtError as error:
        raise bad(str(error), error.code) from None
    return key


def _ts(frame: dict[str, Any], bad: Any) -> str | None:
    before = frame.get("before")
    if before is not None and (not isinstance(before, str) or len(before) > 128):
        raise bad('"before" must be a timestamp string')
    return before


# -- answers (server) -------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _version_json(ts: str, value_json: str | None, *, known: bool = True) -> str:
    head = f'"ts":{_dumps(ts)},"node":{_dumps(ts[20:])}'
    if not known:
        return f"{{{head}}}"
    if value_json is None:
        return f'{{{head},"deleted":true}}'
    return f'{{{head},"value":{value_json}}}'


def _fit(items: list[str], limit: int, max_bytes: int) -> int:
    """How many of ``items`` go in one page: at most ``limit``, within ``max_bytes``
    (always at least one)."""
    size, count = _PAGE_OVERHEAD, 0
    for item in items[:limit]:
        size += len(item.encode()) + 1
        if count and size > max_bytes:
            break
        count += 1
    return count


def history_page(request: HistoryRequest, rows: list[VersionRow], max_bytes: int) -> str:
    """The ``history_page`` answering ``request``; ``rows`` may hold one more than its limit."""
    items = [_version_json(r.ts, r.value_json) for r in rows]
    count = _fit(items, request.limit, max_bytes)
    more = count < len(rows)
    next = _dumps(rows[count - 1].ts) if more else "null"
    return (
        f'{{"type":"history_page","id":{request.id},"key":{_dumps(request.key)},'
        f'"versions":[{",".join(items[:count])}],"next":{next}}}'
    )


def conflicts_page(request: ConflictsRequest, rows: list[ConflictRow], max_bytes: int) -> str:
    """The ``conflicts_page`` answering ``request``; ``rows`` may hold one more."""
    items = [
        f'{{"id":{r.id},"time":{r.recorded_at_ms},"key":{_dumps(r.key)},'
        f'"lost":{_version_json(r.ts, r.value_json)},'
        f'"winner":{_version_json(r.winner_ts, r.winner_value_json, known=r.winner_known)}}}'
        for r in rows
    ]
    count = _fit(items, request.limit, max_bytes)
    next = str(rows[count - 1].id) if count < len(rows) else "null"
    return (
        f'{{"type":"conflicts_page","id":{request.id},'
        f'"conflicts":[{",".join(items[:count])}],"next":{next}}}'
    )


def state_page(request: StateRequest, rows: list[StateRow], max_bytes: int) -> str:
    """The ``state_page`` answering ``request``; ``rows`` may hold one more."""
    items = [f'{{"key":{_dumps(r.key)},"ts":{_dumps(r.ts)},"value":{r.value_json}}}' for r in rows]
    count = _fit(items, request.limit, max_bytes)
    next = _dumps(rows[count - 1].key) if count < len(rows) else "null"
    return (
        f'{{"type":"state_page","id":{request.id},"at":{request.at_ms},'
        f'"entries":[{",".join(items[:count])}],"next":{next}}}'
    )


# -- requests and answers (client) ------------------------------------------------


def request_frame(kind: str, id: int, **fields: Any) -> str:
    """A request frame of type ``kind`` (one of :data:`REQUEST_TYPES`); ``None`` fields
    are left out."""
    frame = {"type": kind, "id": id, **{k: v for k, v in fields.items() if v is not None}}
    return _dumps(frame)


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a key as the server reports it."""

    ts: str
    node: str
    value: JSONValue
    deleted: bool
    known: bool = True
    """False for a conflict's winner no longer in the history (only its ts is known)."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """An overridden write: ``lost`` lost to ``winner`` (recorded at ``time_ms``)."""

    id: int
    time_ms: int
    key: str
    lost: Version
    winner: Version


def _version(raw: Any) -> Version:
    if not isinstance(raw, dict) or not isinstance(raw.get("ts"), str):
        raise UnexpectedFrame(f"the server sent an invalid version: {raw!r:.80}")
    ts: str = raw["ts"]
    deleted = raw.get("deleted") is True
    return Version(ts, ts[20:], raw.get("value"), deleted, deleted or "value" in raw)


def _items(frame: dict[str, Any], name: str) -> list[Any]:
    items = frame.get(name)
    if not isinstance(items, list):
        raise UnexpectedFrame(f'{frame.get("type")} frame: "{name}" must be a list')
    return items


def read_versions(frame: dict[str, Any]) -> tuple[list[Version], str | None]:
    """A ``history_page``'s versions and its ``next`` cursor."""
    next = frame.get("next")
    return [_version(v) for v in _items(frame, "versions")], next if isinstance(next, str) else None


def read_conflicts(frame: dict[str, Any]) -> tuple[list[Conflict], int | None]:
    """A ``conflicts_page``'s conflicts and its ``next`` cursor."""
    conflicts = []
    for raw in _items(frame, "conflicts"):
        if not isinstance(raw, dict) or not _is_int(raw.get("id"), 0, MAX_ID):
            raise UnexpectedFrame(f"the server sent an invalid conflict: {raw!r:.80}")
        time = raw.get("time")
        conflicts.append(
            Conflict(
                raw["id"],
                time if isinstance(time, int) else 0,
                str(raw.get("key")),
                _version(raw.get("lost")),
                _version(raw.get("winner")),
            )
        )
    next = frame.get("next")
    return conflicts, next if _is_int(next, 0, MAX_ID) else None


def read_state(frame: dict[str, Any]) -> tuple[dict[str, JSONValue], str | None]:
    """A ``state_page``'s entries as key → value, and its ``next`` cursor."""
    state: dict[str, JSONValue] = {}
    for raw in _items(frame, "entries"):
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
            raise UnexpectedFrame(f"the server sent an invalid entry: {raw!r:.80}")
        state[raw["key"]] = raw.get("value")
    next = frame.get("next")
    return state, next if isinstance(next, str) else None
