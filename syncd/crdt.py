"""The typed face of the Rust CRDT core (``syncd._crdt``).

A :class:`Document` is a Last-Write-Wins element dictionary: one winning entry per
key, a live value or a tombstone, merged by the rule of the protocol (§1). A
:class:`Clock` issues Hybrid Logical Clock timestamps (§2). Values are JSON values;
they are stored as their canonical JSON text (RFC 8785).
"""

from __future__ import annotations

from typing import TypeAlias

from syncd._crdt import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_SKEW_MS,
    DEFAULT_MAX_VALUE_BYTES,
    MAX_ID,
    MAX_KEY_BYTES,
    Clock,
    Document,
    Entry,
    FrameResult,
    MergeResult,
    broadcast_frame,
    canonical_json,
    canonicalize_json,
    check_key,
    check_value,
    format_timestamp,
    frame_type,
    parse_timestamp,
    validate_node,
    wall_clock_ms,
)
from syncd.errors import CrdtError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_OPS",
    "DEFAULT_MAX_SKEW_MS",
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_ID",
    "MAX_KEY_BYTES",
    "Clock",
    "CrdtError",
    "Document",
    "Entry",
    "FrameResult",
    "JSONValue",
    "MergeResult",
    "broadcast_frame",
    "canonical_json",
    "canonicalize_json",
    "check_key",
    "check_value",
    "format_timestamp",
    "frame_type",
    "parse_timestamp",
    "validate_node",
    "wall_clock_ms",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
"""Any value a key can hold: what ``json.loads`` returns."""
