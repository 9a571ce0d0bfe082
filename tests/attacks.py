"""Tools for the abuse and memory tests: raw sockets, a bystander, the server's RSS.

- :class:`WsSocket` speaks WebSocket over a bare asyncio stream, frame by frame,
  with no client-side checks, so a test can open a thousand of them cheaply,
  flood one with pre-encoded frames, or send what no real client would
  (a frame declaring an absurd length, endless fragments);
- :func:`http_exchange` sends raw request bytes (no normalization) and reads the
  answer, if any;
- :class:`Prober` is the well-behaved client: in a thread of its own, it pings
  and writes in turn while an attack runs, and records how long each answer took;
- :func:`rss_mib` reads a process's resident set size from ``/proc``.

Every wait is bounded (:data:`servers.TIMEOUT`) and every loop has a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

from servers import FACTOR, TIMEOUT, Frame, HttpAnswer, Stamps, metrics
from websockets.sync.client import connect as sync_connect

__all__ = [
    "CLOSE",
    "CONTINUATION",
    "TEXT",
    "Closed",
    "Figures",
    "HandshakeRefused",
    "Prober",
    "WsSocket",
    "bounded_gather",
    "encode_frame",
    "http_exchange",
    "peak_rss_mib",
    "raise_open_files",
    "rss_mib",
    "text_frame",
    "upgrade_request",
    "wait_for_metric",
]

TEXT: Final = 0x1
BINARY: Final = 0x2
CONTINUATION: Final = 0x0
CLOSE: Final = 0x8
PING: Final = 0x9
KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="
"""RFC 6455's sample ``Sec-WebSocket-Key``: the server does not care which key it gets."""

T = TypeVar("T")


# -- the server process ---------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """The resident set size of process ``pid`` in MiB (``VmRSS`` in ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def peak_rss_mib(pid: int) -> float:
    """The peak resident set size of process ``pid`` in MiB (``VmHWM``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def raise_open_files(needed: int) -> int:
    """Raise this process's soft limit of open files to the hard limit if below ``needed``.

    Server processes started afterwards inherit it. Returns the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard > soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def wait_for_metric(
    port: int, name: str, accept: Callable[[float], bool], timeout: float = TIMEOUT
) -> float:
    """Poll ``/metrics`` (bounded) until ``name`` has a value ``accept`` likes; that value."""
    value = float("nan")
    async with asyncio.timeout(timeout):
        for _ in range(10_000):
            value = (await metrics(port)).get(name, float("nan"))
            if accept(value):
                return value
            await asyncio.sleep(0.05)  # a gauge has no event to await: poll, briefly
    raise AssertionError(f"{name} stayed at {value}")


@dataclass
class Figures:
    """Measurements of one test, printed as one line (visible with ``pytest -s``) and,
    when ``$SYNCD_TEST_FIGURES`` names a file, appended to it as a JSON line."""

    test: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = round(value, 2) if isinstance(value, float) else value

    def report(self) -> None:
        """Print (and maybe save) what was measured."""
        line = json.dumps({"test": self.test, **self.values})
        print(f"\nFIGURES {line}")
        path = os.environ.get("SYNCD_TEST_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(line + "\n")


async def bounded_gather(jobs: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Await ``jobs`` (coroutines, not started yet) at most ``limit`` at once; their results."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


# -- raw WebSocket ------------------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame. Masked with the all-zero key, which leaves the payload as it is:
    the server must accept any key, and the tests need not spend time XOR-ing."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def text_frame(frame: Frame) -> bytes:
    """A JSON object as one text frame."""
    return encode_frame(TEXT, json.dumps(frame).encode())


def upgrade_request(
    port: int, headers: Mapping[str, str] | None = None, path: str = "/ws"
) -> bytes:
    """The opening handshake's request; ``headers`` add to (or replace) the usual ones."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_answer(reader: asyncio.StreamReader) -> HttpAnswer:
    status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
    length = headers.get("content-length")
    body = b""
    if status != 101:
        body = await (reader.readexactly(int(length)) if length else reader.read())
    return HttpAnswer(status, headers, body)


async def http_exchange(
    port: int, request: bytes, timeout: float = TIMEOUT, chunk: int = 1 << 16
) -> HttpAnswer | None:
    """Send ``request`` as it is and read the answer; ``None`` if the server hung up
    without one (it may stop reading a request it refuses, so the rest is not sent)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:

            async def send() -> None:
                for start in range(0, len(request), chunk):
                    writer.write(request[start : start + chunk])
                    await writer.drain()

            sending = asyncio.create_task(send())
            try:
                return await _read_answer(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sending
        finally:
            writer.transport.abort()


class Closed(Exception):
    """The server closed the WebSocket: ``code`` from its close frame (None: no frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class HandshakeRefused(Exception):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(f"HTTP {answer.status}: {answer.body[:200]!r}")
        self.answer = answer


class WsSocket:
    """A WebSocket client with no manners: bare frames over an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def open(
        cls, port: int, headers: Mapping[str, str] | None = None, timeout: float = TIMEOUT
    ) -> WsSocket:
        """Connect and complete the opening handshake; :class:`HandshakeRefused` if not 101."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(upgrade_request(port, headers))
            answer = await _read_answer(reader)
        if answer.status != 101:
            writer.transport.abort()
            raise HandshakeRefused(answer)
        return cls(reader, writer)

    def write(self, data: bytes) -> None:
        """Queue raw bytes (frames) without waiting."""
        self.writer.write(data)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        await self.writer.drain()

    async def send(self, frame: Frame) -> None:
        """Send a JSON object as a text frame."""
        self.write(text_frame(frame))
        await self.drain()

    async def recv_raw(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (server frames are never masked)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        assert first & 0x80, "the server fragments nothing"
        return first & 0x0F, await self.reader.readexactly(size)

    async def recv(self, timeout: float = TIMEOUT) -> Frame:
        """The next JSON frame; raises :class:`Closed` at the server's close (or EOF)."""
        async with asyncio.timeout(timeout):
            for _ in range(1000):
                try:
                    opcode, payload = await self.recv_raw()
                except (asyncio.IncompleteReadError, ConnectionError):
                    raise Closed(None) from None
                if opcode == CLOSE:
                    self.close_code = int.from_bytes(payload[:2], "big") if payload else None
                    raise Closed(self.close_code)
                if opcode == TEXT:
                    frame: Frame = json.loads(payload)
                    return frame
                # pings and pongs of the keepalive: not ours to answer here
        raise AssertionError("no text frame among 1000")

    async def hello(self, doc: str = "default", node: str = "raw", **fields: Any) -> list[Frame]:
        """Send ``hello`` and read up to ``synced``: the handshake's frames."""
        await self.send({"type": "hello", "v": 1, "doc": doc, "node": node, **fields})
        frames = [await self.recv()]
        assert frames[0]["type"] == "welcome", frames[0]
        for _ in range(100_000):
            frames.append(await self.recv())
            if frames[-1]["type"] == "synced":
                return frames
            assert frames[-1]["type"] in ("entries", "presence"), frames[-1]
        raise AssertionError("no synced")

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        """Skip frames (presence, broadcasts) up to the first one ``predicate`` accepts."""
        async with asyncio.timeout(timeout):
            for _ in range(100_000):
                frame = await self.recv(timeout)
                if predicate(frame):
                    return frame
        raise AssertionError("no matching frame among 100,000")

    async def ping(self, id: int) -> Frame:
        """Ping and wait for the matching pong (or an error answering it)."""
        await self.send({"type": "ping", "id": id})
        return await self.until(lambda f: f["type"] in ("pong", "error") and f.get("id") == id)

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, list[Frame]]:
        """Read until the server closes: its close code and the frames before."""
        frames: list[Frame] = []
        async with asyncio.timeout(timeout):
            for _ in range(100_000):
                try:
                    frames.append(await self.recv(timeout))
                except Closed as closed:
                    return closed.code, frames
        raise AssertionError("the server kept sending")

    async def close(self) -> None:
        """Send a close frame and hang up without waiting for the answer."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.write(encode_frame(CLOSE, (1000).to_bytes(2, "big")))
        self.abort()

    def abort(self) -> None:
        """Cut the TCP connection."""
        self.writer.transport.abort()


# -- the bystander ----------------------------------------------------------------------------


@dataclass
class Prober:
    """A well-behaved client in its own thread: pings and writes in turn while an attack runs.

    Each round trip (ping → pong, ops → ack) is timed; an error frame, a close or
    a timeout ends it and is kept in :attr:`failures`. Use it as a context manager
    around the attack, then :meth:`check`.
    """

    url: str
    doc: str = "bystander"
    node: str = "prober"
    token: str | None = None
    interval: float = 0.05
    max_rounds: int = 5_000
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    writes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise AssertionError(f"the prober could not connect: {self.failures}")
        if self.failures:
            raise AssertionError(f"the prober could not connect: {self.failures}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(2 * TIMEOUT)

    @property
    def worst(self) -> float:
        """The slowest round trip so far, in seconds."""
        return max(self.latencies, default=0.0)

    async def check(self, bound: float = 1.0, minimum: int = 3) -> None:
        """No failure, at least ``minimum`` round trips (waiting for them, bounded), none
        over ``bound`` seconds (scaled)."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.latencies) < minimum and not self.failures and self._thread_alive():
                await asyncio.sleep(self.interval)  # the thread has no event to await
        assert not self.failures, self.failures
        assert len(self.latencies) >= minimum, len(self.latencies)
        assert self.worst <= bound * FACTOR, f"a round trip took {self.worst:.3f} s"

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        stamps = Stamps(self.node)
        try:
            with sync_connect(self.url, compression=None, open_timeout=TIMEOUT) as ws:
                hello: Frame = {"type": "hello", "v": 1, "doc": self.doc, "node": self.node}
                if self.token is not None:
                    hello["token"] = self.token
                ws.send(json.dumps(hello))
                self._await(ws, lambda f: f["type"] == "synced")
                self._ready.set()
                for round in range(self.max_rounds):
                    if self._stop.wait(self.interval):
                        return
                    frame: Frame
                    if round % 2:
                        frame = {"type": "ops", "id": round, "ops": [stamps.set("k", round)]}
                        want = "ack"
                    else:
                        frame = {"type": "ping", "id": round}
                        want = "pong"
                    started = time.perf_counter()
                    ws.send(json.dumps(frame))
                    self._await(ws, _answer(want, round))
                    self.latencies.append(time.perf_counter() - started)
                    self.writes += round % 2
        except Exception as error:
            self.failures.append(repr(error))
        finally:
            self._ready.set()

    def _await(self, ws: Any, predicate: Callable[[Frame], bool]) -> Frame:
        deadline = time.monotonic() + TIMEOUT
        for _ in range(10_000):
            text = ws.recv(timeout=max(deadline - time.monotonic(), 0.001))
            frame: Frame = json.loads(text)
            if frame["type"] == "error":
                raise AssertionError(f"the prober got {frame}")
            if predicate(frame):
                return frame
        raise AssertionError("no answer among 10,000 frames")


def _answer(kind: str, id: int) -> Callable[[Frame], bool]:
    """Whether a frame is the ``kind`` answering message ``id``."""
    return lambda frame: frame["type"] == kind and frame.get("id") == id
