"""What the load generator says to each server: syncd's protocol, or Yjs sync over y-websocket.

Three roles, each for both dialects:

- the **handshake** every connection makes before it counts as a client: syncd's
  ``hello`` → ``welcome``, ``entries``…, ``synced``; Yjs's sync step 1 from each side,
  answered by step 2 (the server's step 2 ends the handshake);
- the **writer**'s encoder: one message per set. syncd: an ``ops`` frame with one
  entry and a Hybrid Logical Clock timestamp. Yjs: a ``pycrdt`` transaction setting
  one key of a ``Map``, sent as the sync ``update`` message the transaction emitted;
- the writer's **acknowledgements**. syncd answers each ``ops`` frame with an ``ack``
  once the write is fsync'd. y-websocket and pycrdt-websocket never acknowledge; both
  send every update they apply to *every* connection of the document, its sender
  included, so the writer counts a set as acknowledged when the server echoes it back:
  the server has then applied it to its document and is broadcasting it. Neither
  server writes to disk first (y-websocket's persistence is off by default, and
  pycrdt-websocket runs without a store here).

Every value is a **marker** ``w<index>@<send time in ns>.``: it appears verbatim in
syncd's JSON frames and in Yjs's binary updates, so readers find the writes they
receive with one regular expression over the payload, in either dialect. The writer
also keeps every send time (:attr:`Writer.sent_ns`), from which the parent computes
latencies without the readers parsing each value.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pycrdt import Doc, Map, TransactionEvent, create_update_message, handle_sync_message

from bench.server.wire import Connection, connect

__all__ = [
    "DIALECTS",
    "MARKER",
    "SYNCD_DIALECT",
    "YJS_DIALECT",
    "Handshake",
    "SyncdHandshake",
    "SyncdWriter",
    "Writer",
    "YjsHandshake",
    "YjsWriter",
    "marker",
    "open_client",
]

MARKER: Final = re.compile(rb"w(\d+)@(\d+)\.")
"""A write's value in any payload: its index and its send time (``monotonic_ns``)."""

SYNCD_DIALECT: Final = "syncd"
YJS_DIALECT: Final = "yjs"
DIALECTS: Final = (SYNCD_DIALECT, YJS_DIALECT)

# y-protocols' framing: messageSync (0), then the sync message type and a varUint8Array.
_YJS_SYNC: Final = 0
_YJS_STEP1: Final = 0
_YJS_STEP2: Final = 1
_EMPTY_STEP1: Final = b"\x00\x00\x01\x00"
"""Sync step 1 of an empty document: an empty state vector (one varint, 0)."""
_EMPTY_STEP2: Final = b"\x00\x01\x02\x00\x00"
"""Sync step 2 from an empty document: the empty update (no structs, no deletes)."""


def marker(index: int, sent_ns: int) -> str:
    """The value of write ``index``, sent at ``sent_ns`` (``time.monotonic_ns``)."""
    return f"w{index}@{sent_ns}."


def _key(index: int) -> str:
    return f"k{index:07d}"


# -- handshakes -----------------------------------------------------------------------


class Handshake(ABC):
    """A connection's handshake: what to send first, and the answers until it is synced."""

    done: bool = False
    done_ns: int = 0

    @abstractmethod
    def opening(self) -> list[str | bytes]:
        """The messages to send once connected."""

    @abstractmethod
    def feed(self, opcode: int, payload: bytes, now: int) -> list[str | bytes]:
        """Take one message from the server; return the replies to send."""


@dataclass
class SyncdHandshake(Handshake):
    """``hello`` (with ``since`` to resume), then everything up to ``synced``."""

    doc: str
    node: str
    since: tuple[str, int] | None = None
    keep_entries: bool = False
    """Keep the snapshot's entries (the verifier checks them)."""
    epoch: str = ""
    seq: int = 0
    full: bool = True
    entry_count: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def opening(self) -> list[str | bytes]:
        hello: dict[str, Any] = {"type": "hello", "v": 1, "doc": self.doc, "node": self.node}
        if self.since is not None:
            hello["since"] = {"epoch": self.since[0], "seq": self.since[1]}
        return [json.dumps(hello)]

    def feed(self, opcode: int, payload: bytes, now: int) -> list[str | bytes]:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "welcome":
            self.epoch, self.seq, self.full = frame["epoch"], frame["seq"], frame["full"]
        elif kind == "entries":
            self.entry_count += len(frame["entries"])
            if self.keep_entries:
                self.entries.extend(frame["entries"])
        elif kind == "synced":
            self.done, self.done_ns = True, now
        elif kind == "error":
            raise RuntimeError(f"syncd refused the handshake: {frame}")
        return []


@dataclass
class YjsHandshake(Handshake):
    """Step 1 from each side; the server's step 2 ends it (applied to ``doc`` if given)."""

    doc: Doc[Any] | None = None

    def opening(self) -> list[str | bytes]:
        if self.doc is None:
            return [_EMPTY_STEP1]
        state = self.doc.get_state()
        return [bytes([_YJS_SYNC, _YJS_STEP1]) + _var_uint(len(state)) + state]

    def feed(self, opcode: int, payload: bytes, now: int) -> list[str | bytes]:
        if len(payload) < 2 or payload[0] != _YJS_SYNC:
            return []  # awareness: not part of the document
        if payload[1] == _YJS_STEP1:
            if self.doc is None:
                return [_EMPTY_STEP2]
            reply = handle_sync_message(payload[1:], self.doc)
            return [reply] if reply is not None else []
        if payload[1] == _YJS_STEP2:
            if self.doc is not None:
                handle_sync_message(payload[1:], self.doc)
            self.done, self.done_ns = True, now
        return []


def _var_uint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# -- the writer -----------------------------------------------------------------------


class Writer(ABC):
    """Encodes one-key sets, remembers when each was sent, counts acknowledgements."""

    sent_ns: array[int]
    """The send time (``monotonic_ns``) of each write, by index; see :meth:`expect`."""

    def expect(self, writes: int) -> None:
        """Make room for the send times of writes ``0 .. writes - 1``."""
        self.sent_ns = array("q", [0]) * writes

    def _stamp(self, index: int) -> int:
        sent = time.monotonic_ns()
        self.sent_ns[index] = sent
        return sent

    @abstractmethod
    def handshake(self) -> Handshake:
        """The handshake the writer's connection makes."""

    @abstractmethod
    def encode(self, index: int, key: str | None = None) -> str | bytes:
        """The message setting key ``index`` (or ``key``) to a marker stamped now."""

    @abstractmethod
    def acknowledged(self, payload: bytes) -> list[int]:
        """The writes (their indexes) this message from the server acknowledges."""


class SyncdWriter(Writer):
    """``ops`` frames of one entry; one ``ack`` per frame (after the fsync)."""

    def __init__(self, doc: str, node: str) -> None:
        self.doc, self.node = doc, node
        self._wall, self._counter = 0, 0
        self.last_seq = 0
        self.epoch = ""

    def handshake(self) -> Handshake:
        return SyncdHandshake(self.doc, self.node)

    def _ts(self) -> str:
        # A Hybrid Logical Clock on the real wall clock: the server rejects skew.
        wall = time.time_ns() // 1_000_000
        if wall > self._wall:
            self._wall, self._counter = wall, 0
        else:
            self._counter += 1
            if self._counter > 99_999:
                self._wall, self._counter = self._wall + 1, 0
        return f"{self._wall:013d}-{self._counter:05d}-{self.node}"

    def encode(self, index: int, key: str | None = None) -> str:
        sent = self._stamp(index)
        return (
            f'{{"type":"ops","id":{index},"ops":[{{"key":"{key or _key(index)}",'
            f'"ts":"{self._ts()}","value":"{marker(index, sent)}"}}]}}'
        )

    def acknowledged(self, payload: bytes) -> list[int]:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "ack":
            self.last_seq = frame["seq"]
            return [frame["id"]]
        if kind == "error":
            raise RuntimeError(f"syncd rejected a write: {frame}")
        return []


class YjsWriter(Writer):
    """One ``pycrdt`` transaction per set; acknowledged when the server echoes it."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.map: Map[str] = self.doc.get("bench", type=Map)
        self._updates: list[bytes] = []
        self._subscription = self.doc.observe(self._on_update)

    def _on_update(self, event: TransactionEvent) -> None:
        self._updates.append(event.update)

    def handshake(self) -> Handshake:
        return YjsHandshake(self.doc)

    def encode(self, index: int, key: str | None = None) -> bytes:
        self.map[key or _key(index)] = marker(index, self._stamp(index))
        update = self._updates.pop()
        return create_update_message(update)

    def acknowledged(self, payload: bytes) -> list[int]:
        if len(payload) < 2 or payload[0] != _YJS_SYNC:
            return []
        return [int(found[1]) for found in MARKER.finditer(payload)]


# -- connecting -----------------------------------------------------------------------


@dataclass
class _Router:
    """Sends a connection's messages to its handshake, then to ``after``."""

    handshake: Handshake
    after: Callable[[int, bytes, int], None]
    connection: Connection | None = None
    synced: Any = None
    """An ``asyncio.Future`` resolved when the handshake is done."""
    pending: list[str | bytes] = field(default_factory=list)

    def __call__(self, opcode: int, payload: bytes, now: int) -> None:
        if self.handshake.done:
            self.after(opcode, payload, now)
            return
        try:
            replies = self.handshake.feed(opcode, payload, now)
        except Exception as error:
            if not self.synced.done():
                self.synced.set_exception(error)
            return
        if replies:
            if self.connection is None:  # arrived with the upgrade's answer
                self.pending.extend(replies)
            else:
                self.connection.send_many(replies)
        if self.handshake.done and not self.synced.done():
            self.synced.set_result(None)


async def open_client(
    host: str,
    port: int,
    path: str,
    handshake: Handshake,
    after: Callable[[int, bytes, int], None],
    timeout: float = 30.0,
) -> Connection:
    """Connect, run ``handshake`` to its end (within ``timeout`` s), then route to ``after``."""
    router = _Router(handshake, after)
    router.synced = asyncio.get_running_loop().create_future()
    connection = await connect(host, port, path, router, timeout)
    router.connection = connection
    connection.send_many([*handshake.opening(), *router.pending])
    await asyncio.wait_for(router.synced, timeout)
    connection.on_message = after  # the router's work is done: one call less per message
    return connection
