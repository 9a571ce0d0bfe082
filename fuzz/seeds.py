"""Seed corpora for every fuzz target, from the conformance vectors (``tests/vectors``)
and from frames and files written by syncd itself.

``python -m fuzz.seeds`` writes them into ``rust_crdt/fuzz/corpus/TARGET`` and
``fuzz/corpus/TARGET``, one file per seed named by its hash, next to what the
fuzzers found before (the corpus directories are not committed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from fuzz.harness import BASE_WALL
from syncd.crdt import Document
from syncd.protocol import (
    as_text,
    entries_frame,
    error_frame,
    pong_frame,
    presence_frame,
    synced_frame,
    welcome_pieces,
)

__all__ = ["ROOT", "seeds", "write_seeds"]

ROOT: Final = Path(__file__).resolve().parent.parent
VECTORS: Final = ROOT / "tests" / "vectors"
TS: Final = f"{BASE_WALL:013d}-00000-web-77c1"


MAX_REPEAT: Final = 3
"""A vector's ``repeat`` is cut to this many copies: a seed needs the shape, not the size."""


def _vectors(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def _field(case: dict[str, Any], name: str) -> str:
    """A vector's field with its ``repeat`` placeholder expanded (see tests/vectors/README.md)."""
    text: str = case[name]
    repeat = case.get("repeat", {}).get(name)
    if repeat is not None:
        copies = repeat["text"] * min(repeat["count"], MAX_REPEAT)
        text = text.replace(repeat["placeholder"], copies)
    return text


def vector_frames() -> list[str]:
    """Every ``ops`` frame of the vectors, and one per entry of ``entries.json``."""
    frames = _vectors("frames")
    texts = [_field(case, "frame") for group in ("valid", "invalid") for case in frames[group]]
    entries = _vectors("entries")
    texts += [
        f'{{"type":"ops","id":{i},"ops":[{_field(case, "entry")}]}}'
        for i, case in enumerate(entries["valid"] + entries["invalid"])
    ]
    return texts


def valid_frames() -> list[str]:
    """The frames of ``frames.json`` meant to be accepted."""
    return [_field(case, "frame") for case in _vectors("frames")["valid"]]


def stored_files() -> tuple[str, str]:
    """A document's TinyDB file and its log, as the server writes them, from the vectors."""
    doc, log = Document(), []
    for text in valid_frames():
        line = doc.apply_frame(text).log_line()
        if line is not None:
            log.append(line)
    seq, horizon, table = doc.snapshot()
    meta = json.dumps({"1": {"epoch": "e-1", "seq": seq, "horizon": horizon, "server": "srv-1"}})
    return f'{{"meta":{meta},"entries":{table}}}', "".join(log)


def server_frames() -> list[str]:
    """One of every frame a server sends, in the contract's shapes."""
    entry = f'{{"key":"a","ts":"{TS}","value":2}}'
    tomb = f'{{"key":"b","ts":"{TS}","deleted":true}}'
    time = f"{BASE_WALL:013d}-00000-srv-1"
    welcomes = [
        as_text(
            welcome_pieces(
                doc="default",
                node="srv-1",
                epoch="e-91c2",
                seq=3,
                time=time,
                full=full,
                readonly=False,
                peers=["web-77c1"],
            )
        )
        for full in (True, False)
    ]
    return [
        *welcomes,
        entries_frame(f"{entry},{tomb}"),
        synced_frame(4),
        f'{{"type":"ops","seq":5,"origin":"web-77c1","ops":[{entry},{tomb}]}}',
        '{"type":"ack","id":1,"seq":6,"applied":2,"ignored":1}',
        pong_frame(2, f"{BASE_WALL:013d}-00001-srv-1"),
        presence_frame(joined=["cli-1"]),
        presence_frame(left=["web-77c1"]),
        error_frame("rate_limited", "slow down", 1),
        error_frame("bad_message", "ops[1]: bad", 1, 1),
        error_frame("forbidden", "read-only", 1),
    ]


REGRESSIONS: Final = (
    ("rust_crdt/fuzz/corpus/persist", b'\1{"seq":18446744073709551615,"ops":[]}\n'),
    ("fuzz/corpus/store", b'\1{"meta":' + b"[" * 1100 + b"]" * 1100 + b"}"),
)
"""Inputs that once crashed a target (see the fuzz regression tests), replayed first."""


def seeds() -> Iterator[tuple[str, bytes]]:
    """(corpus directory relative to the repository, seed) for every target."""
    yield from REGRESSIONS
    frames = vector_frames()
    for text in frames:
        yield "rust_crdt/fuzz/corpus/frame", text.encode()
    file, log = stored_files()
    yield "rust_crdt/fuzz/corpus/persist", b"\0" + file.encode()
    yield "rust_crdt/fuzz/corpus/persist", b"\1" + log.encode()
    table = json.loads(file)["entries"]
    yield "rust_crdt/fuzz/corpus/persist", b"\2" + json.dumps(table).encode()

    hello = json.dumps({"type": "hello", "v": 1, "node": "n1", "token": "secret"})
    ping = '{"type":"ping","id":3}'
    for choice in range(3):
        yield "fuzz/corpus/server_session", bytes([choice]) + "\n".join([hello, ping]).encode()
    for text in frames:
        yield "fuzz/corpus/server_session", b"\1" + text.encode()
    replies = server_frames()
    for choice in range(5):
        yield "fuzz/corpus/replica", bytes([choice]) + "\n".join(replies).encode()
    for reply in replies:
        yield "fuzz/corpus/replica", b"\3" + reply.encode()
    yield "fuzz/corpus/store", b"\3" + file.encode() + b"\0" + log.encode()
    yield "fuzz/corpus/store", b"\1" + file.encode()
    yield "fuzz/corpus/store", b"\2\0" + log.encode()


def write_seeds() -> int:
    """Write every seed into its corpus directory; returns how many were new."""
    new = 0
    for directory, seed in seeds():
        path = ROOT / directory / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(seed)
            new += 1
    return new


if __name__ == "__main__":
    print(f"{write_seeds()} new seeds")
