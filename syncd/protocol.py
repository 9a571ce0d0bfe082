"""The server's side of the wire protocol, without I/O (contract §3–§6).

A :class:`ServerSession` takes the text frames of one connection and turns them
into events — :class:`HelloEvent`, :class:`OpsEvent`, :class:`PingEvent`, and
the history requests of :mod:`syncd.history_wire` — or
raises :class:`ProtocolError`, which knows the ``error`` frame to answer with
and whether the connection must then close. The frame builders at the bottom
write every frame the server sends that the CRDT core does not.

``ops`` frames are dispatched on their ``type`` alone: the core validates and
applies them whole (``Document.apply_frame``), so Python never parses them.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from websockets.frames import CloseCode

from syncd.crdt import MAX_ID, CrdtError, frame_type, validate_node
from syncd.errors import ProtocolError
from syncd.history_wire import REQUEST_TYPES, Query, parse_request
from syncd.ratelimit import TokenBucket

__all__ = [
    "DEFAULT_DOC",
    "DOC_NAME_RULE",
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "Access",
    "DocumentHead",
    "Encoded",
    "Handshake",
    "Hello",
    "HelloEvent",
    "NodeArray",
    "OpsEvent",
    "PingEvent",
    "ServerSession",
    "Since",
    "as_text",
    "check_doc_name",
    "entries_frame",
    "error_frame",
    "handshake",
    "message_id",
    "pong_frame",
    "presence_frame",
    "synced_frame",
    "valid_doc_name",
    "welcome_pieces",
]

PROTOCOL_VERSION: Final = 1
Encoded = list[bytes | memoryview]
"""A frame already in UTF-8, in pieces to be written one after the other (a ``welcome``)."""

DEFAULT_DOC: Final = "default"
ERROR_CODES: Final = frozenset(
    {
        "bad_json",
        "bad_message",
        "not_ready",
        "unsupported_version",
        "unauthorized",
        "forbidden",
        "too_large",
        "clock_skew",
        "rate_limited",
        "internal",
    }
)
"""Every ``code`` an ``error`` frame may carry (contract §6)."""

DOC_NAME_RULE: Final = "1-128 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
"""What a document name is (contract §1), as every message that refuses one says it."""
_DOC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def valid_doc_name(name: str) -> bool:
    """Whether ``name`` is a document name (:data:`DOC_NAME_RULE`)."""
    return _DOC_NAME.fullmatch(name) is not None


def check_doc_name(name: object) -> str:
    """``name`` if it is a document name, else ``ValueError`` saying what one is."""
    if not isinstance(name, str) or not valid_doc_name(name):
        raise ValueError(f"invalid document name {name!r}: {DOC_NAME_RULE}")
    return name


@dataclass(frozen=True, slots=True)
class Since:
    """A client's resume point: the lineage and the greatest seq it has seen."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Hello:
    """A valid ``hello`` frame."""

    doc: str
    node: str
    token: str | None = None
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """Who may connect: with ``token`` set, only clients presenting it (read-write) or
    ``read_token`` (read-only); with neither, everyone, read-write."""

    token: str | None = None
    read_token: str | None = None

    def __post_init__(self) -> None:
        if self.read_token is not None and self.token is None:
            raise ValueError("a read-only token needs a read-write token (--token) too")

    def readonly(self, presented: str | None) -> bool:
        """Whether a client presenting ``presented`` is read-only; raises ``unauthorized``."""
        if self.token is None:
            return False
        if presented is not None:
            if hmac.compare_digest(presented.encode(), self.token.encode()):
                return False
            if self.read_token is not None and hmac.compare_digest(
                presented.encode(), self.read_token.encode()
            ):
                return True
        raise ProtocolError(
            "unauthorized",
            "a valid token is required" if presented is None else "wrong token",
            close_code=CloseCode.POLICY_VIOLATION,
        )


@dataclass(frozen=True, slots=True)
class HelloEvent:
    """The handshake succeeded: answer with the welcome and the document's state."""

    hello: Hello
    readonly: bool


@dataclass(frozen=True, slots=True)
class OpsEvent:
    """An ``ops`` frame to apply (the core validates it)."""

    text: str


@dataclass(frozen=True, slots=True)
class PingEvent:
    """A ``ping``: answer with a ``pong`` echoing ``id``."""

    id: int | None


class ServerSession:
    """The protocol state of one connection: awaiting ``hello``, then open."""

    def __init__(self, access: Access, rate_limit: TokenBucket | None = None) -> None:
        self.access = access
        self.rate_limit = rate_limit
        """Messages allowed per second (``None``: any number)."""
        self.hello: Hello | None = None
        self.readonly = False

    def receive(self, message: str | bytes) -> HelloEvent | OpsEvent | PingEvent | Query:
        """The event for one frame; raises :class:`ProtocolError` to reject it."""
        if self.rate_limit is not None and not self.rate_limit.take():
            raise ProtocolError(
                "rate_limited",
                f"over {self.rate_limit.rate:g} messages per second: send it again later",
                id=message_id(message) if isinstance(message, str) else None,
            )
        if isinstance(message, bytes):
            close = CloseCode.POLICY_VIOLATION if self.hello is None else None
            raise ProtocolError("bad_message", "binary frames are not supported", close_code=close)
        text = message
        try:
            kind = frame_type(text)
        except CrdtError as error:
            if self.hello is None:
                raise ProtocolError(
                    error.code, str(error), close_code=CloseCode.POLICY_VIOLATION
                ) from None
            # An object without a valid "type" may still carry an id to echo.
            echoed = message_id(text) if error.code == "bad_message" else None
            raise ProtocolError(error.code, str(error), id=echoed) from None
        if self.hello is None:
            return self._handshake(kind, text)
        if kind == "ops":
            if self.readonly:
                raise ProtocolError(
                    "forbidden", "this connection is read-only", id=message_id(text)
                )
            return OpsEvent(text)
        if kind == "ping":
            return PingEvent(_ping_id(text))
        if kind in REQUEST_TYPES:
            # Read-only: read-only connections may ask too.
            return parse_request(kind, text)
        if kind == "hello":
            raise ProtocolError("bad_message", "the connection already said hello")
        raise ProtocolError("bad_message", f"unknown frame type {kind!r}", id=message_id(text))

    def _handshake(self, kind: str, text: str) -> HelloEvent:
        if kind != "hello":
            raise ProtocolError(
                "not_ready",
                "the first frame must be hello",
                id=message_id(text),
                close_code=CloseCode.POLICY_VIOLATION,
            )
        hello = parse_hello(text)
        readonly = self.access.readonly(hello.token)
        self.hello, self.readonly = hello, readonly
        return HelloEvent(hello, readonly)


def parse_hello(text: str) -> Hello:
    """A validated ``hello`` frame; raises :class:`ProtocolError` (closing) if invalid."""

    def bad(message: str, code: str = "bad_message") -> ProtocolError:
        return ProtocolError(code, message, close_code=CloseCode.POLICY_VIOLATION)

    frame = _parse(text, CloseCode.POLICY_VIOLATION)
    if "v" not in frame:
        raise bad('hello needs "v": 1')
    version = frame["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise bad(
            f"protocol version {version!r} is not supported (this server speaks 1)",
            "unsupported_version",
        )
    try:
        doc = check_doc_name(frame.get("doc", DEFAULT_DOC))
    except ValueError as error:
        raise bad(str(error)) from None
    node = frame.get("node")
    if not isinstance(node, str):
        raise bad('hello needs "node", a string')
    try:
        validate_node(node)
    except CrdtError as error:
        raise bad(str(error)) from None
    token = frame.get("token")
    if token is not None and (not isinstance(token, str) or not _is_unicode(token)):
        raise bad('"token" must be a string of valid Unicode')
    return Hello(doc=doc, node=node, token=token, since=_parse_since(frame.get("since"), bad))


def _parse_since(raw: Any, bad: Any) -> Since | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad('"since" must be an object {"epoch", "seq"}')
    epoch, seq = raw.get("epoch"), raw.get("seq")
    if not isinstance(epoch, str) or not isinstance(seq, int) or not _is_id(seq):
        raise bad('"since" needs a string "epoch" and an integer "seq" >= 0')
    return Since(epoch, seq)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _is_unicode(text: str) -> bool:
    # json.loads keeps an escaped unpaired surrogate ("\ud800"), which cannot be encoded.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse(text: str, close_code: CloseCode | None) -> dict[str, Any]:
    """A frame the core has already found to be a JSON object, parsed by Python.

    Python's parser refuses some JSON the core accepts (nesting deeper than its
    recursion limit, integers of more than 4300 digits): that is ``bad_message``.
    """
    try:
        frame: dict[str, Any] = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(
            "bad_message", f"unreadable frame: {error}", close_code=close_code
        ) from None
    return frame


def message_id(text: str) -> int | None:
    """The ``id`` of a frame, if it is a JSON object with a valid one."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = frame.get("id") if isinstance(frame, dict) else None
    return value if _is_id(value) else None


def _ping_id(text: str) -> int | None:
    frame = _parse(text, None)
    if "id" not in frame:
        return None
    if not _is_id(frame["id"]):
        raise ProtocolError("bad_message", f'"id" must be an integer from 0 to {MAX_ID}')
    value: int = frame["id"]
    return value


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Compact JSON, made once: ``json.dumps`` with options builds a new encoder at each call,
which cost more than the encoding of a node id or a small frame."""


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


class NodeArray:
    """Node ids encoded once as a JSON array, for frames that many clients receive.

    The peers of a busy document are encoded once per presence tick rather than
    once per ``welcome``, and leaving one node out (a client is never told about
    itself) is a slice of the encoded text, not a new encoding. Two arrays joined
    (:meth:`concat`) are not copied into one: a ``welcome`` writes their bytes side
    by side (:meth:`pieces`), so a join does not copy the thousands of peers before it.
    """

    __slots__ = ("_data", "_json", "_nodes", "_parts", "_spans")

    def __init__(self, nodes: Iterable[str] = ()) -> None:
        self._nodes: tuple[str, ...] | None = tuple(nodes)
        self._json: str | None = _dumps(self._nodes)
        self._data: bytes | None = None
        self._parts: tuple[NodeArray, NodeArray] | None = None
        self._spans: dict[str, tuple[int, int]] | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node ids, in order."""
        if self._nodes is None:
            assert self._parts is not None
            first, second = self._parts
            self._nodes = first.nodes + second.nodes
        return self._nodes

    @property
    def json(self) -> str:
        """The JSON array."""
        if self._json is None:
            self._json = as_text(self.pieces())
        return self._json

    def pieces(self) -> Encoded:
        """The JSON array in UTF-8, in pieces to be written one after the other."""
        if self._parts is None:
            if self._data is None:
                self._data = self.json.encode()
            return [self._data]
        first, second = self._parts
        *head, last = first.pieces()
        # Each part without its "]" or "[": views, not copies.
        return [*head, memoryview(last)[:-1], b",", memoryview(second.pieces()[0])[1:]]

    def __len__(self) -> int:
        return len(self.nodes)

    def __bool__(self) -> bool:
        return self._parts is not None or bool(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._node_spans()

    def without(self, node: str) -> NodeArray:
        """The array without ``node`` (this array if ``node`` is not in it)."""
        span = self._node_spans().get(node)
        if span is None:
            return self
        start, end = span
        json = self.json
        if end + 1 < len(json):  # the node and the comma after it
            text = json[:start] + json[end + 1 :]
        elif start > 1:  # the last node: the comma before it and the node
            text = json[: start - 1] + json[end:]
        else:
            text = "[]"
        return NodeArray._encoded(tuple(filter(node.__ne__, self.nodes)), text)

    def suffix(self, start: int) -> NodeArray:
        """The array from its ``start``-th node on."""
        if start <= 0:
            return self
        nodes = self.nodes
        if start >= len(nodes):
            return NodeArray()
        offset = self._node_spans()[nodes[start]][0]
        return NodeArray._encoded(nodes[start:], f"[{self.json[offset:]}")

    def plus(self, node: str) -> NodeArray:
        """The array with ``node`` added at the end (``node`` must not be in it)."""
        if not self:
            return NodeArray._encoded((node,), f"[{_dumps(node)}]")
        return NodeArray._encoded((*self.nodes, node), f"{self.json[:-1]},{_dumps(node)}]")

    def concat(self, other: NodeArray) -> NodeArray:
        """This array followed by ``other`` (no node may be in both), copied only if its
        :attr:`nodes` or :attr:`json` are asked for: :meth:`pieces` are both arrays'."""
        if not other:
            return self
        if not self:
            return other
        array = NodeArray.__new__(NodeArray)
        array._nodes = array._json = array._data = array._spans = None
        array._parts = (self, other.flat())
        return array

    def flat(self) -> NodeArray:
        """This array as one piece (itself if it is)."""
        if self._parts is None:
            return self
        return NodeArray._encoded(self.nodes, self.json)

    @classmethod
    def _encoded(cls, nodes: tuple[str, ...], json: str) -> NodeArray:
        """An array from ``nodes`` and their encoding, worked out by the caller."""
        array = cls.__new__(cls)
        array._nodes = nodes
        array._json = json
        array._data = None
        array._parts = None
        array._spans = None
        return array

    def _node_spans(self) -> dict[str, tuple[int, int]]:
        """Where each node's encoding lies in :attr:`json`, worked out on first need."""
        if self._spans is None:
            spans = {}
            start = 1  # after the "["
            for node in self.nodes:
                end = start + len(_dumps(node))
                spans[node] = (start, end)
                start = end + 1  # after the comma
            self._spans = spans
        return self._spans


@dataclass(frozen=True, slots=True)
class DocumentHead:
    """A document as committed, as far as a handshake needs it."""

    doc: str
    server_node: str
    epoch: str
    seq: int
    horizon: int
    """The compaction horizon: no delta from below it (contract §7)."""
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class Handshake:
    """The answer to a ``hello``: ``welcome``, then the entries changed after ``resume``
    (every entry when ``None``: a snapshot), then ``synced``."""

    welcome: Encoded
    resume: int | None
    synced: str


def handshake(
    hello: Hello,
    head: DocumentHead,
    *,
    readonly: bool,
    peers: Sequence[str] | NodeArray,
    time: str,
) -> Handshake:
    """Decide between a delta and a snapshot for ``hello`` and build the frames around it.

    A delta only within the document's lineage (``since.epoch``) and from a seq
    between the compaction horizon and the head (contract §4).
    """
    since = hello.since
    resumable = (
        since is not None and since.epoch == head.epoch and head.horizon <= since.seq <= head.seq
    )
    resume = since.seq if since is not None and resumable else None
    welcome = welcome_pieces(
        doc=head.doc,
        node=head.server_node,
        epoch=head.epoch,
        seq=head.seq,
        time=time,
        full=resume is None,
        readonly=readonly,
        peers=peers,
        cluster=head.cluster,
    )
    return Handshake(welcome, resume, synced_frame(head.seq))


def as_text(pieces: Encoded) -> str:
    """``pieces`` of UTF-8 as one string (a frame as a client reads it)."""
    return b"".join(pieces).decode()


def welcome_pieces(
    *,
    doc: str,
    node: str,
    epoch: str,
    seq: int,
    time: str,
    full: bool,
    readonly: bool,
    peers: Sequence[str] | NodeArray,
    cluster: str | None = None,
) -> Encoded:
    """The ``welcome`` frame that answers a valid ``hello``; ``cluster`` names the
    cluster of a node started with ``--cluster`` (absent otherwise).

    In UTF-8, in pieces to be written one after the other: the peers' pieces are
    their arrays' own (:meth:`NodeArray.pieces`), never copied into one string.
    """
    if not isinstance(peers, NodeArray):
        peers = NodeArray(peers)
    frame: dict[str, Any] = {
        "type": "welcome",
        "v": PROTOCOL_VERSION,
        "doc": doc,
        "node": node,
        "epoch": epoch,
        "seq": seq,
        "time": time,
        "full": full,
        "readonly": readonly,
    }
    # The peers are spliced in already encoded: a busy document has thousands.
    tail = "}" if cluster is None else f',"cluster":{_dumps(cluster)}}}'
    return [f'{_dumps(frame)[:-1]},"peers":'.encode(), *peers.pieces(), tail.encode()]


def entries_frame(entries_json: str) -> str:
    """An ``entries`` frame from its entries' comma-separated wire form."""
    return f'{{"type":"entries","entries":[{entries_json}]}}'


def synced_frame(seq: int) -> str:
    """The ``synced`` frame that ends a handshake."""
    return f'{{"type":"synced","seq":{seq}}}'


def pong_frame(id: int | None, time: str) -> str:
    """The ``pong`` that answers a ``ping``."""
    frame: dict[str, Any] = {"type": "pong", "time": time}
    if id is not None:
        frame["id"] = id
    return _dumps(frame)


def presence_frame(
    *,
    joined: Sequence[str] | NodeArray | None = None,
    left: Sequence[str] | NodeArray | None = None,
) -> str:
    """A ``presence`` frame announcing nodes that joined or left the document
    (a list left empty is left out)."""
    frame = '{"type":"presence"'
    for name, nodes in (("joined", joined), ("left", left)):
        if nodes:
            array = nodes if isinstance(nodes, NodeArray) else NodeArray(nodes)
            frame += f',"{name}":{array.json}'
    return frame + "}"


def error_frame(code: str, message: str, id: int | None = None, entry: int | None = None) -> str:
    """An ``error`` frame; ``entry`` (an extra field) is the index of the offending entry."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if id is not None:
        frame["id"] = id
    if entry is not None:
        frame["entry"] = entry
    return _dumps(frame)
