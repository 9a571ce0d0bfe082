"""Real syncd servers for the integration tests, and a raw-frame client to talk to them.

Two ways to run a server, both listening on 127.0.0.1:

- :func:`running_server`: a :class:`~syncd.server.SyncServer` in the test's own
  event loop (fast; the tests can read its metrics and stop it);
- :class:`ServerProcess`: ``python -m syncd serve`` in a subprocess, for what
  only a process can show: ``kill -9``, SIGTERM, exit codes, stderr.

:class:`RawClient` speaks the wire protocol frame by frame, because these tests
test the protocol itself; it is not the product client. Every wait is bounded:
:data:`TIMEOUT` seconds, scaled by ``$SYNCD_TEST_TIMEOUT_FACTOR`` on slow machines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from syncd.crdt import Clock
from syncd.server import ServerConfig, SyncServer

__all__ = [
    "TIMEOUT",
    "Frame",
    "Handshake",
    "HttpAnswer",
    "RawClient",
    "ServerProcess",
    "Stamps",
    "free_port",
    "http_get",
    "metrics",
    "running_server",
]

FACTOR: Final = float(os.environ.get("SYNCD_TEST_TIMEOUT_FACTOR", "1"))
TIMEOUT: Final = 5.0 * FACTOR
"""How long any single expected event may take."""
START_TIMEOUT: Final = 15.0 * FACTOR
"""How long a server process may take to answer ``/healthz``."""
REPO: Final = Path(__file__).resolve().parent.parent

Frame = dict[str, Any]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Stamps:
    """Timestamps for one test replica, from a real HLC (each strictly greater)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.clock = Clock(node)

    def next(self) -> str:
        """A new timestamp, greater than every earlier one."""
        return self.clock.now()

    def set(self, key: str, value: Any) -> Frame:
        """A live entry for ``key``."""
        return {"key": key, "ts": self.next(), "value": value}

    def delete(self, key: str) -> Frame:
        """A tombstone for ``key``."""
        return {"key": key, "ts": self.next(), "deleted": True}


# -- in-process servers ----------------------------------------------------------


@asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[SyncServer]:
    """A started :class:`SyncServer` in the current event loop, stopped on exit."""
    server = SyncServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# -- plain HTTP ---------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    """A parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


async def http_get(port: int, path: str, host: str = "127.0.0.1") -> HttpAnswer:
    """``GET path`` with the path sent byte for byte (no client-side normalization)."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("latin-1"))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = headers.get("content-length")
            body = await (reader.readexactly(int(length)) if length else reader.read())
        finally:
            writer.close()
    return HttpAnswer(status, headers, body)


async def metrics(port: int) -> dict[str, float]:
    """``GET /metrics`` as ``{'name{label="v"}': value}`` (labels sorted; none: bare name)."""
    answer = await http_get(port, "/metrics")
    assert answer.status == 200, answer
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


# -- server processes -----------------------------------------------------------------


@dataclass
class ServerProcess:
    """``syncd serve`` in a subprocess, on a fixed port and data directory.

    :meth:`start` may be called again after :meth:`kill` or :meth:`terminate`:
    the new process serves the same data on the same port.
    """

    data: Path
    logs: Path
    args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def url(self) -> str:
        """The WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def stderr_path(self) -> Path:
        """Where the current (or last) run writes its stderr."""
        return self.logs / f"stderr.{self.runs}.txt"

    @property
    def stderr(self) -> str:
        """What the current (or last) run wrote to stderr."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def command(self) -> list[str]:
        """The command line of a run."""
        return [
            sys.executable,
            "-m",
            "syncd",
            "serve",
            "--port",
            str(self.port),
            "--data",
            str(self.data),
            *self.args,
        ]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start a run without waiting for it to be ready."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return self.process

    async def start(self) -> None:
        """Start a run and wait until ``GET /healthz`` answers 200 (bounded)."""
        self.spawn()
        await self.ready()

    async def ready(self) -> None:
        """Wait until the spawned run answers ``GET /healthz`` with 200 (bounded)."""
        process = self.process
        assert process is not None, "spawn() first"
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"syncd serve exited with {process.returncode}:\n{self.stderr}"
                    )
                try:
                    if (await http_get(self.port, "/healthz")).status == 200:
                        return
                except OSError:
                    pass
                await asyncio.sleep(0.02)  # a process has no event to await: poll, briefly

    async def wait(self) -> int:
        """Wait (bounded) for the run to end; its exit code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, START_TIMEOUT)

    def signal(self, number: int) -> None:
        """Send a signal to the run (without waiting)."""
        assert self.process is not None
        self.process.send_signal(number)

    async def kill(self) -> None:
        """``kill -9`` the run and reap it."""
        self.signal(signal.SIGKILL)
        await self.wait()

    def cleanup(self) -> None:
        """Kill a run still going (at the end of a test)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_TIMEOUT)


# -- a raw-frame client ------------------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """What answered a valid ``hello``: welcome, the entries frames' entries, synced."""

    welcome: Frame
    frames: list[Frame]
    """Every frame from welcome to synced, both included."""
    synced: Frame

    @property
    def entries(self) -> list[Frame]:
        """The entries of every ``entries`` frame, in order."""
        return [e for f in self.frames if f["type"] == "entries" for e in f["entries"]]

    @property
    def state(self) -> dict[str, Frame]:
        """The handshake's entries by key (live and tombstones)."""
        return {e["key"]: e for e in self.entries}


class RawClient:
    """One WebSocket connection that sends and receives JSON frames as they are."""

    def __init__(self, connection: ClientConnection, node: str) -> None:
        self.connection = connection
        self.node = node
        self.stamps = Stamps(node)
        self._ids = 0
        self.peers: set[str] = set()
        """The peers as its ``welcome`` and the ``presence`` frames it received tell."""

    @classmethod
    async def connect(cls, url: str, node: str = "tester", **options: Any) -> RawClient:
        """Open a connection (no ``hello`` yet)."""
        async with asyncio.timeout(TIMEOUT):
            connection = await connect(url, compression=None, **options)
        return cls(connection, node)

    async def close(self) -> None:
        """Close the connection (bounded)."""
        async with asyncio.timeout(TIMEOUT):
            await self.connection.close()

    def next_id(self) -> int:
        """A fresh message id."""
        self._ids += 1
        return self._ids

    async def send(self, frame: Frame) -> None:
        """Send one frame as JSON text."""
        await self.connection.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) frame as it is."""
        await self.connection.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame (a JSON object); ``TimeoutError`` if none comes in time."""
        async with asyncio.timeout(timeout):
            text = await self.connection.recv()
        assert isinstance(text, str), f"the server sent a binary frame: {text!r}"
        frame = json.loads(text)
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        if frame["type"] == "welcome":
            self.peers = set(frame["peers"])
        elif frame["type"] == "presence":
            self.peers = (self.peers | set(frame.get("joined", []))) - set(frame.get("left", []))
        return frame

    async def recv_until(
        self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT, limit: int = 100_000
    ) -> list[Frame]:
        """Frames up to and including the first one ``predicate`` accepts."""
        frames: list[Frame] = []
        async with asyncio.timeout(timeout):
            for _ in range(limit):
                frames.append(await self.recv(timeout))
                if predicate(frames[-1]):
                    return frames
        raise AssertionError(f"no matching frame among {limit}: {frames[-3:]}")

    async def arrival(self, wanted: str) -> tuple[Frame, float]:
        """The first frame of type ``wanted`` and when (``time.monotonic()``) it came."""
        frames = await self.recv_until(lambda f: f["type"] == wanted)
        return frames[-1], time.monotonic()

    async def until_peers(self, *nodes: str, timeout: float = TIMEOUT) -> list[Frame]:
        """Frames up to the ``presence`` that makes the peers ``nodes`` (none if they are
        already): presence comes in ticks, so one frame may tell of several nodes."""
        if self.peers == set(nodes):
            return []
        return await self.recv_until(lambda _: self.peers == set(nodes), timeout)

    async def hello(self, **fields: Any) -> Handshake:
        """Send ``hello`` (``v: 1`` and this client's node unless given), read to ``synced``."""
        await self.send({"type": "hello", "v": 1, "node": self.node, **fields})
        first = await self.recv()
        assert first["type"] == "welcome", first
        frames = [first, *await self.recv_until(lambda f: f["type"] != "entries")]
        assert frames[-1]["type"] == "synced", frames[-1]
        return Handshake(first, frames, frames[-1])

    async def write(self, ops: list[Frame], id: int | None = None) -> Frame:
        """Send an ``ops`` message and return its answer (``ack`` or ``error``).

        Frames received meanwhile (broadcasts, presence) are dropped.
        """
        id = self.next_id() if id is None else id
        await self.send({"type": "ops", "id": id, "ops": ops})
        answer = await self.recv_until(
            lambda f: f["type"] in ("ack", "error") and f.get("id") == id
        )
        return answer[-1]

    async def ping(self) -> list[Frame]:
        """Ping and return the frames received up to and including the pong."""
        id = self.next_id()
        await self.send({"type": "ping", "id": id})
        return await self.recv_until(lambda f: f["type"] == "pong" and f.get("id") == id)

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, list[Frame]]:
        """Wait for the server to close: the close code and the frames received before."""
        frames: list[Frame] = []
        async with asyncio.timeout(timeout):
            for _ in range(100_000):
                try:
                    frames.append(await self.recv(timeout))
                except ConnectionClosed:
                    break
            else:
                raise AssertionError("the server kept sending")
            await self.connection.wait_closed()
        return self.connection.close_code, frames
