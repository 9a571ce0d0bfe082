"""The pure-Python baseline: the protocol's merge rule on a ``dict``, and its ``ops`` frame.

This is what a careful pure-Python server would do without a native core: ``json.loads``
the frame, validate it as a whole as the protocol requires (§1, §2, §5), merge each
entry into a ``dict`` by the Last-Write-Wins rule, and ``json.dumps`` the broadcast.
It is written to be fast where that is honest, so the comparison does not flatter
syncd:

- values are kept as the Python objects ``json.loads`` made; the canonical JSON text
  that breaks a tie of equal timestamps is only computed on such a tie (never in the
  benchmark), and with ``json.dumps(sort_keys=True)``, which equals RFC 8785 for the
  strings, booleans, integers and ``null`` but not for every float;
- the key-size check skips encoding keys of at most 256 characters (they cannot exceed
  1024 UTF-8 bytes); the value-size check (``max_value_bytes``) and the check for
  unpaired surrogates are left out, which only makes the baseline faster;
- ``changes_since`` is a scan of the whole ``dict``, which is what a ``dict`` without a
  sequence index must do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["TOMBSTONE", "BaselineError", "DictLww", "FrameOutcome", "validate_entry"]

MAX_KEY_BYTES: Final = 1024
MAX_ID: Final = 2**53 - 1
_TS: Final = re.compile(r"[0-9]{13}-[0-9]{5}-[A-Za-z0-9_-]{1,64}")
_COMPACT: Final = (",", ":")


class _Tombstone:
    """The value slot of a deleted key."""

    def __repr__(self) -> str:
        return "TOMBSTONE"


TOMBSTONE: Final = _Tombstone()


class BaselineError(ValueError):
    """An entry or frame the protocol rejects, with its error code."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


def _reject_constant(name: str) -> Any:
    raise BaselineError(f"{name} is not a JSON number")


def _canonical(value: object) -> str:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=_COMPACT, allow_nan=False
    )


def _wins_tie(new: object, old: object) -> bool:
    """The rule at equal timestamps: live beats tombstone, then the greater canonical text.

    Comparing ``str`` by code point orders them as their UTF-8 bytes.
    """
    if new is TOMBSTONE:
        return False
    if old is TOMBSTONE:
        return True
    return _canonical(new) > _canonical(old)


def validate_entry(entry: object) -> tuple[str, str, object]:
    """An entry's ``(key, ts, value or TOMBSTONE)`` once it passes the protocol's checks."""
    if not isinstance(entry, dict):
        raise BaselineError("an entry must be an object")
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise BaselineError('"key" must be a non-empty string')
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise BaselineError("key over 1024 bytes", "too_large")
    ts = entry.get("ts")
    if not isinstance(ts, str) or _TS.fullmatch(ts) is None:
        raise BaselineError('"ts" must be WWWWWWWWWWWWW-CCCCC-NODE')
    if "value" in entry:
        if "deleted" in entry:
            raise BaselineError('an entry has "value" or "deleted", never both')
        return key, ts, entry["value"]
    if entry.get("deleted", False) is not True:
        raise BaselineError('an entry needs "value" or "deleted": true')
    return key, ts, TOMBSTONE


def _wire(key: str, ts: str, value: object) -> dict[str, object]:
    if value is TOMBSTONE:
        return {"key": key, "ts": ts, "deleted": True}
    return {"key": key, "ts": ts, "value": value}


@dataclass(frozen=True)
class FrameOutcome:
    """What applying an ``ops`` frame did, with the applied entries in wire form."""

    id: int
    applied: int
    ignored: int
    seq: int
    ops: list[dict[str, object]]

    def broadcast(self, origin: str) -> str | None:
        """The ``ops`` broadcast frame, or ``None`` when nothing applied."""
        if not self.ops:
            return None
        frame = {"type": "ops", "seq": self.seq, "origin": origin, "ops": self.ops}
        return json.dumps(frame, ensure_ascii=False, separators=_COMPACT)


class DictLww:
    """A Last-Write-Wins element dictionary on a ``dict``: key to ``(ts, value, seq)``."""

    def __init__(self, max_ops: int = 1000) -> None:
        self._entries: dict[str, tuple[str, object, int]] = {}
        self.seq = 0
        self.max_ops = max_ops

    def __len__(self) -> int:
        return len(self._entries)

    def merge(self, key: str, ts: str, value: object) -> bool:
        """Merge one valid entry (``value`` is ``TOMBSTONE`` for a delete); whether it won."""
        old = self._entries.get(key)
        if old is not None:
            old_ts = old[0]
            if ts < old_ts or (ts == old_ts and not _wins_tie(value, old[1])):
                return False
        self.seq += 1
        self._entries[key] = (ts, value, self.seq)
        return True

    def set(self, key: str, value: object, ts: str) -> bool:
        """A single write from Python, checked like a wire entry."""
        key, ts, value = validate_entry({"key": key, "ts": ts, "value": value})
        return self.merge(key, ts, value)

    def get(self, key: str, default: object = None) -> object:
        """The value of a live key, or ``default``."""
        found = self._entries.get(key)
        if found is None or found[1] is TOMBSTONE:
            return default
        return found[1]

    def merge_entries(self, entries: Iterable[Mapping[str, object]]) -> tuple[int, int]:
        """Validate wire-form entries as a whole, then merge them; ``(applied, ignored)``."""
        valid = [validate_entry(entry) for entry in entries]
        applied = sum(self.merge(key, ts, value) for key, ts, value in valid)
        return applied, len(valid) - applied

    def apply_frame(self, text: str) -> FrameOutcome:
        """Validate an ``ops`` frame (JSON text) as a whole, then merge its entries."""
        try:
            frame = json.loads(text, parse_constant=_reject_constant)
        except ValueError as error:
            raise BaselineError(f"frame is not JSON: {error}", "bad_json") from error
        if not isinstance(frame, dict) or frame.get("type") != "ops":
            raise BaselineError('expected a frame of type "ops"')
        frame_id = frame.get("id")
        if not isinstance(frame_id, int) or isinstance(frame_id, bool):
            raise BaselineError('"id" must be an integer')
        if not 0 <= frame_id <= MAX_ID:
            raise BaselineError('"id" out of range')
        ops = frame.get("ops")
        if not isinstance(ops, list) or not ops:
            raise BaselineError('"ops" must be a non-empty array')
        if len(ops) > self.max_ops:
            raise BaselineError("too many ops", "too_large")
        valid = [validate_entry(entry) for entry in ops]
        applied = [_wire(key, ts, value) for key, ts, value in valid if self.merge(key, ts, value)]
        return FrameOutcome(frame_id, len(applied), len(valid) - len(applied), self.seq, applied)

    def changes_since(self, since: int) -> list[dict[str, object]]:
        """The entries with a seq above ``since``, in seq order: a scan of every entry."""
        found = [
            (seq, key, ts, value) for key, (ts, value, seq) in self._entries.items() if seq > since
        ]
        found.sort()
        return [_wire(key, ts, value) for _, key, ts, value in found]

    def to_dict(self) -> dict[str, object]:
        """Every live key and its value."""
        return {
            key: value for key, (_, value, _) in self._entries.items() if value is not TOMBSTONE
        }
