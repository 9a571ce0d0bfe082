"""A pure-Python model of the merge rule (contract §1), the oracle for the binding's tests.

:class:`LwwModel` keeps, for every key, the winning ``(ts, value text)`` of all writes
it has seen, where the value text is the value's canonical JSON text (RFC 8785) or
``None`` for a tombstone. The greater ``ts`` string wins; at an equal ``ts`` a live
entry beats a tombstone and, between two live entries, the greater canonical text as
UTF-8 bytes wins; an identical entry is ignored. Every entry that wins takes the next
sequence number, as in the real document.

:func:`canonical` writes the canonical JSON text of a Python value, faithfully to
RFC 8785 for JSON values (numbers as IEEE 754 doubles in ECMAScript's ``Number``
format, object keys sorted by UTF-16 code units, strings with JSON's minimal escapes).

The benchmarks import this module as the pure-Python baseline, so its API is plain:
strings in, booleans and dicts out, no dependency on the binding.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_KEY_BYTES",
    "TS_PATTERN",
    "LwwModel",
    "ModelEntry",
    "canonical",
    "es6_number",
    "is_valid_ts",
]

MAX_KEY_BYTES = 1024
"""The longest key, in UTF-8 bytes (contract §1)."""

TS_PATTERN = re.compile(r"[0-9]{13}-[0-9]{5}-[A-Za-z0-9_-]{1,64}")
"""A timestamp's wire form (contract §2); to be matched with ``fullmatch``."""

_MAX_SAFE_INTEGER = 2**53

# JSON's two-character escapes; every other control character is written \u00XX.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def is_valid_ts(ts: str) -> bool:
    """Whether ``ts`` is a timestamp in its wire form, ``WWWWWWWWWWWWW-CCCCC-NODE``."""
    return TS_PATTERN.fullmatch(ts) is not None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """The winning write for one key."""

    ts: str
    """The timestamp, ``WWWWWWWWWWWWW-CCCCC-NODE``."""
    value: str | None
    """The value's canonical JSON text, or ``None`` for a tombstone."""
    seq: int
    """The sequence number the entry took when it won."""


class LwwModel:
    """A Last-Write-Wins element dictionary in plain Python: the binding's oracle."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._seq = 0

    @property
    def seq(self) -> int:
        """The head: the seq of the last entry that won (0 when new)."""
        return self._seq

    def merge(self, key: str, ts: str, value: str | None) -> bool:
        """Merge one write (``value`` is canonical JSON text, ``None`` to delete).

        Returns whether it won, in which case it took the next seq.
        """
        old = self._entries.get(key)
        if old is not None and not _wins(ts, value, old):
            return False
        self._seq += 1
        self._entries[key] = ModelEntry(ts, value, self._seq)
        return True

    def get(self, key: str) -> ModelEntry | None:
        """The winning entry for ``key``, live or tombstone, or ``None`` if never written."""
        return self._entries.get(key)

    def to_dict(self) -> dict[str, Any]:
        """Every live key and its value, parsed from the canonical text."""
        return {
            key: json.loads(entry.value)
            for key, entry in self._entries.items()
            if entry.value is not None
        }

    def state(self) -> dict[str, tuple[str, str | None]]:
        """Every key, live or tombstone, with its winning ``(ts, value text)``.

        This is what replicas that have seen the same writes agree on: it leaves out the
        seqs, which are local to a replica.
        """
        return {key: (entry.ts, entry.value) for key, entry in self._entries.items()}

    def changes_since(self, since: int) -> list[tuple[str, ModelEntry]]:
        """The ``(key, entry)`` pairs whose seq is greater than ``since``, in seq order."""
        changed = [(key, e) for key, e in self._entries.items() if e.seq > since]
        changed.sort(key=lambda pair: pair[1].seq)
        return changed

    @property
    def tombstone_count(self) -> int:
        """How many keys hold a tombstone."""
        return sum(1 for entry in self._entries.values() if entry.value is None)


def _wins(ts: str, value: str | None, old: ModelEntry) -> bool:
    """Whether the write ``(ts, value)`` beats the entry ``old`` (contract §1)."""
    # Timestamps are fixed-width up to the node, whose characters are ASCII: plain
    # string comparison orders them by (wall, counter, node).
    if ts != old.ts:
        return ts > old.ts
    if value is None:
        # A tombstone never beats what holds the same ts: a live entry beats it, and an
        # identical tombstone is ignored.
        return False
    if old.value is None:
        return True
    # For valid Unicode, code point order equals UTF-8 byte order, so comparing the
    # strings compares their UTF-8 encodings without encoding them.
    return value > old.value


def canonical(value: object) -> str:
    """The canonical JSON text (RFC 8785) of a JSON value given as a Python object.

    Accepts ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples and dicts with
    string keys. Raises :class:`ValueError` for what JSON cannot carry: a non-finite
    number, an integer that overflows a double, a string with an unpaired surrogate, a
    non-string object key, or any other type.
    """
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(es6_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        items: list[tuple[str, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, not {type(key).__name__}")
            _check_unicode(key)
            items.append((key, item))
        # RFC 8785 §3.2.3: sort by the keys' UTF-16 code units. Big-endian UTF-16 bytes
        # compare like the code units they encode.
        items.sort(key=lambda pair: pair[0].encode("utf-16-be"))
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ValueError(f"a {type(value).__name__} is not a JSON value")


def _integer(value: int) -> str:
    if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return str(value)
    # Every JSON number is a double (RFC 8785 §3.2.2.3): a large integer is written as
    # the double nearest to it.
    try:
        as_double = float(value)
    except OverflowError:
        raise ValueError("integer overflows a double") from None
    return es6_number(as_double)


def es6_number(value: float) -> str:
    """A finite double in ECMAScript's ``Number.prototype.toString`` form (RFC 8785 §3.2.2.3).

    Raises :class:`ValueError` for NaN and the infinities.
    """
    if not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if value == 0:
        return "0"  # -0 included
    if value < 0:
        return "-" + es6_number(-value)
    # repr() gives the shortest digit string that round-trips, the nearest one when
    # several qualify: ECMAScript's choice of k digits and n.
    _, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{sign}{abs(e)}"


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode (unpaired surrogate)") from None


def _string(text: str) -> str:
    _check_unicode(text)
    out = ['"']
    for char in text:
        escaped = _SHORT_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)
