"""How values, writers and times are shown in the table and the detail pane (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final

from syncd.crdt import JSONValue, parse_timestamp

__all__ = ["age", "compact", "pretty", "truncate", "utc_time", "wall_of", "writer_of"]

ELLIPSIS: Final = "…"


def compact(value: JSONValue) -> str:
    """The value as one line of JSON (non-ASCII kept as it is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pretty(value: JSONValue) -> str:
    """The value as indented JSON, for the detail pane and the editor."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def truncate(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks a cut)."""
    line = text.replace("\n", "⏎")
    if len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + ELLIPSIS


def writer_of(ts: str) -> str:
    """The node that wrote an entry, from its timestamp."""
    return parse_timestamp(ts)[2]


def wall_of(ts: str) -> int:
    """An entry's wall-clock time in milliseconds since the epoch, from its timestamp."""
    return parse_timestamp(ts)[0]


def age(ts: str, now_ms: int) -> str:
    """How long ago an entry was written, relative to ``now_ms``: ``12 s ago``, ``3 h ago``."""
    seconds = (now_ms - wall_of(ts)) // 1000
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            if unit == "d" and count > 99:
                return datetime.fromtimestamp(wall_of(ts) / 1000, UTC).strftime("%Y-%m-%d")
            return f"{count} {unit} ago"
    return f"{seconds} s ago"


def utc_time(ts: str) -> str:
    """An entry's time in full, in UTC: ``2026-11-25 01:16:57.123 UTC``."""
    when = datetime.fromtimestamp(wall_of(ts) / 1000, UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
