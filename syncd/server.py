"""``syncd serve``: the WebSocket server, a thin layer over the protocol and the rooms.

One port answers both the protocol at ``/ws`` and plain HTTP: ``/healthz``,
``/metrics`` and the built web client at ``/`` (package data: ``syncd/web/``, built
by ``make build-web`` and shipped in the wheel). Each connection runs
:class:`~syncd.protocol.ServerSession` over its frames and hands writes to the
:class:`~syncd.room.Room` of its document.

Defences: a browser page may open ``/ws`` only from the server's own origin or
one given with ``--allowed-origin`` (cross-site WebSocket hijacking); each
connection's messages are rate limited (``rate_limited``); the opening
handshake must finish within ``--open-timeout`` (slowloris); and a document
with no clients is dropped from memory after ``--evict-after`` seconds, to be
read again from disk by the next client.

With ``--cluster`` the server is a node of a cluster (:mod:`syncd.cluster`),
which is loaded only then: a server alone imports none of it.
``/healthz?cluster`` answers 503 while such a node cannot reach the cluster's
Redis (plain ``/healthz`` stays ``200 ok`` while the server serves).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import resource
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from syncd.collector import settle_after_start_up
from syncd.crdt import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_SKEW_MS,
    DEFAULT_MAX_VALUE_BYTES,
    Clock,
)
from syncd.errors import ProtocolError, StoreError
from syncd.heap import trim_pending
from syncd.history import history_bytes, read_conflicts, read_state, read_versions
from syncd.history_wire import (
    ConflictsRequest,
    HistoryRequest,
    Query,
    StateRequest,
    conflicts_page,
    history_page,
    state_page,
)
from syncd.metrics import CONTENT_TYPE, Metrics
from syncd.outlet import send_all
from syncd.protocol import (
    Access,
    OpsEvent,
    PingEvent,
    ServerSession,
    pong_frame,
)
from syncd.ratelimit import TokenBucket
from syncd.room import Member, Room, RoomSettings, close_or_abort
from syncd.sqlite import sqlite3
from syncd.store import DataDirectory

if TYPE_CHECKING:
    from syncd.cluster.config import ClusterConfig
    from syncd.cluster.node import ClusterNode

__all__ = ["ServerConfig", "SyncServer", "run"]

logger = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
LISTEN_BACKLOG = 4096
"""Connections the kernel holds for the server to accept: a crowd connecting at once must
not overflow it (the default, 100, drops their SYNs, which retry only a second later)."""
UNLOADS_AT_ONCE = 64
"""Evicted documents closed at once: thousands at a time would each hold a close in
flight (its lane call, its future), a peak of memory the heap keeps afterwards."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# A real folder: syncd has a native extension, so it is never imported from a zip.
WEB_ROOT = Path(str(files("syncd") / "web"))
"""The built web client, package data of ``syncd``."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``syncd serve`` can be told."""

    host: str = "127.0.0.1"
    port: int = 8765
    data: Path = Path("syncd-data")
    token: str | None = None
    read_token: str | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_ops: int = DEFAULT_MAX_OPS
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_skew: float = DEFAULT_MAX_SKEW_MS / 1000
    """Seconds an entry's timestamp may be ahead of the server's clock."""
    queue_limit: int = 8 << 20
    """Bytes a client may have unsent before it is dropped with 1013."""
    tombstone_retention: float = 30.0
    """Days a tombstone is kept."""
    history_retention: float = 30.0
    """Days the history keeps every version and overridden write (0: no history)."""
    close_timeout: float = 3.0
    allowed_origins: tuple[str, ...] = ()
    """Web page origins that may open ``/ws`` besides the server's own (``*``: any)."""
    rate_limit: float = 1000.0
    """Messages per second a connection may send on average (0: no limit)."""
    rate_burst: int = 2000
    """Messages a connection may send at once above its rate."""
    evict_after: float = 60.0
    """Seconds a document with no clients stays in memory."""
    open_timeout: float = 10.0
    """Seconds a connection has to complete its opening handshake."""
    fold_min_bytes: int = 4 << 20
    """Log bytes before a document's log may be folded into its file."""
    web_root: Path = field(default=WEB_ROOT)
    cluster: ClusterConfig | None = None
    """Join this cluster (``--cluster``), or serve alone."""


class SyncServer:
    """A running server: start it, then stop it (or run it until a signal)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.access = Access(config.token, config.read_token)
        self.metrics = Metrics()
        self.data = DataDirectory(config.data, config.fold_min_bytes)
        self.metrics.history_bytes.set_function(partial(history_bytes, config.data / "history"))
        self.metrics.heap_trim_pending.set_function(trim_pending)
        self.rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._evicting: dict[str, asyncio.Task[None]] = {}
        self._unloading = asyncio.Semaphore(UNLOADS_AT_ONCE)
        self._settings = RoomSettings(
            max_frame_bytes=config.max_frame_bytes,
            max_skew_ms=int(config.max_skew * 1000),
            queue_limit=config.queue_limit,
            tombstone_retention_ms=int(config.tombstone_retention * DAY_MS),
            history_retention_ms=int(config.history_retention * DAY_MS),
            close_timeout=config.close_timeout,
            max_value_bytes=config.max_value_bytes,
            max_ops=config.max_ops,
        )
        self._clock: Clock | None = None
        self._server: Server | None = None
        self._evictor: asyncio.Task[None] | None = None
        self.cluster: ClusterNode | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the real one when configured with port 0)."""
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{self.config.host}:{self.port}/ws"

    async def start(self) -> None:
        """Load every stored document, then listen."""
        self.data.open()
        self._clock = Clock(self.data.node)
        if self.config.cluster is not None:
            from syncd.cluster.node import ClusterNode  # loads Redis's client: only here

            self.cluster = ClusterNode(
                self.config.cluster,
                self,
                self.data,
                self._settings,
                self.config.max_frame_bytes,
                self.config.token,
                self.metrics,
            )
            await self.cluster.join()
        for name in self.data.document_names():
            await self.room(name)
        self.data.mark_running()
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_frame_bytes,
            close_timeout=self.config.close_timeout,
            open_timeout=self.config.open_timeout,
            compression=None,
            backlog=LISTEN_BACKLOG,
        )
        self._evictor = asyncio.create_task(self._evict_unused(), name="evictor")
        if self.cluster is not None:
            self.cluster.start(self.url)
        logger.info("syncd listening on %s, data in %s", self.url, self.config.data.resolve())

    async def stop(self) -> None:
        """Stop accepting, commit and answer what is in flight, close clients with 1001."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        if self._evictor is not None:
            self._evictor.cancel()
        if self.cluster is not None:
            await self.cluster.stop()
        await asyncio.gather(*self._evicting.values())
        for room in self.rooms.values():
            await room.drain()
        await asyncio.gather(
            *(
                close_or_abort(
                    c, CloseCode.GOING_AWAY, "server shutting down", self.config.close_timeout
                )
                for c in self._server.connections
            )
        )
        await self._server.wait_closed()
        for room in self.rooms.values():
            await room.close()
        self.data.close()  # everything is on disk: the next start keeps the epochs
        self._server = None
        logger.info("syncd stopped")

    async def room(self, name: str) -> Room:
        """The room of document ``name``, loading it (or starting it empty) if needed.

        Returned without a pause once loaded, so the caller's ``join`` begins
        before the evictor can look at the room again.
        """
        while (room := self.rooms.get(name)) is None:
            loading = self._loading.get(name)
            if loading is None:
                loading = asyncio.create_task(self._load(name), name=f"load {name}")
                self._loading[name] = loading
                loading.add_done_callback(partial(_forget, self._loading, name))
            # Shielded: a client leaving mid-load must not cancel it for the others waiting.
            # Then looked up again: the room may have been evicted before this resumed.
            await asyncio.shield(loading)
        return room

    async def _load(self, name: str) -> Room:
        if (evicting := self._evicting.get(name)) is not None:
            await evicting  # its last fold and log must be closed before the files are read
        assert self._clock is not None
        room = await Room.open(
            name, self.data.document(name), self._clock, self._settings, self.metrics, self.cluster
        )
        self.rooms[name] = room
        self.metrics.documents.set(len(self.rooms))
        logger.debug(
            "document %s loaded: %d keys, seq %d", name, len(room.document), room.document.seq
        )
        return room

    async def _unload(self, room: Room) -> None:
        async with self._unloading:
            await room.close()
        self.data.release(room.name)

    async def _evict_unused(self) -> None:
        """Drop from memory each document that has had no client for ``evict_after`` s."""
        limit = self.config.evict_after
        while True:
            await asyncio.sleep(min(limit / 2, 10.0))
            now = time.monotonic()
            for name, room in list(self.rooms.items()):
                since = room.unused_since
                if since is None or now - since < limit:
                    continue
                del self.rooms[name]
                self.metrics.documents.set(len(self.rooms))
                self.metrics.evictions.inc()
                closing = asyncio.create_task(self._unload(room), name=f"evict {name}")
                self._evicting[name] = closing
                closing.add_done_callback(partial(_forget, self._evicting, name))
                logger.debug("document %s evicted from memory", name)

    # -- WebSocket ------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        rate = self.config.rate_limit
        session = ServerSession(
            self.access, TokenBucket(rate, self.config.rate_burst) if rate > 0 else None
        )
        room: Room | None = None
        member: Member | None = None
        self.metrics.connections.inc()
        logger.debug("connection from %s", connection.remote_address)

        async def answer(frame: str) -> None:
            # Once joined, frames go through the room, in order with its broadcasts.
            if room is not None and member is not None:
                room.send(member, frame)
            else:
                await connection.send(frame)

        try:
            async for message in connection:
                try:
                    event = session.receive(message)
                    if isinstance(event, OpsEvent):
                        assert room is not None and member is not None
                        await room.submit(member, event.text)
                    elif isinstance(event, PingEvent):
                        assert self._clock is not None
                        await answer(pong_frame(event.id, self._clock.now()))
                    elif isinstance(event, HistoryRequest | ConflictsRequest | StateRequest):
                        assert room is not None
                        await answer(await self._query(room, event))
                    else:
                        room = await self._room_for(event.hello.doc)
                        member = Member(connection, event.hello.node, event.readonly)
                        await send_all(connection, await room.join(member, event.hello))
                        room.synced(member)
                except ProtocolError as error:
                    self.metrics.errors.labels(error.code).inc()
                    await answer(error.frame())
                    if error.close_code is not None:
                        if room is not None and member is not None:
                            room.flush(member)
                        await connection.close(error.close_code, error.code)
                        return
        except ConnectionClosed:
            pass  # the client left, with or without a close frame: routine, not a failure
        finally:
            if room is not None and member is not None:
                room.leave(member)
            self.metrics.connections.dec()
            logger.debug(
                "connection from %s closed (%s)", connection.remote_address, connection.close_code
            )

    async def _query(self, room: Room, query: Query) -> str:
        """The page answering a history request, read in a thread; ``internal`` if the
        history file cannot be read."""
        limit = self.config.max_frame_bytes
        try:
            if isinstance(query, HistoryRequest):
                versions = []
                if room.history_path is not None:
                    versions = await room.read_history(
                        read_versions, query.key, query.limit + 1, query.before
                    )
                return history_page(query, versions, limit)
            if isinstance(query, ConflictsRequest):
                conflicts = []
                if room.history_path is not None:
                    conflicts = await room.read_history(
                        read_conflicts, query.node, query.limit + 1, query.before
                    )
                return conflicts_page(query, conflicts, limit)
            state = []
            if room.history_path is not None:
                state = await room.read_history(
                    read_state, query.at_ms, query.after, query.limit + 1
                )
            return state_page(query, state, limit)
        except sqlite3.Error as error:
            logger.error("document %s: cannot read its history: %s", room.name, error)
            raise ProtocolError(
                "internal", "the server cannot read this document's history now", id=query.id
            ) from None

    async def _room_for(self, doc: str) -> Room:
        """The room of ``doc`` for a handshake; ``internal`` if its files cannot be read."""
        try:
            return await self.room(doc)
        except StoreError as error:
            logger.error("document %s: %s", doc, error)
            raise ProtocolError(
                "internal",
                "the server cannot read this document now",
                close_code=CloseCode.INTERNAL_ERROR,
            ) from None

    # -- plain HTTP -------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return self._check_origin(connection, request)
        if path == "/healthz":
            wants_cluster = "cluster" in urlsplit(request.path).query.split("&")
            if wants_cluster and self.cluster is not None and not self.cluster.connected:
                return connection.respond(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "serving, but not connected to the cluster\n",
                )
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return _response(HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        return self._static(connection, path)

    def _check_origin(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse ``/ws`` to a web page of another site (cross-site WebSocket hijacking).

        Allowed: no ``Origin`` (not a browser: the CLI, scripts), the origins given
        with ``--allowed-origin``, and the server's own origin: the page's host and
        port are those of the request, and the host is a loopback name or ``--host``
        (a page of another site that renamed itself to this address by DNS
        rebinding keeps its own host name). In a cluster, also the origins of the
        registered nodes' advertised URLs (read at every heartbeat), so a page
        served by one node may use the others.
        """
        origin = request.headers.get("Origin")
        allowed = self.config.allowed_origins
        if origin is None or "*" in allowed or origin in allowed:
            return None
        if self.cluster is not None and self.cluster.allows_origin(origin):
            return None
        page = urlsplit(origin)
        same = page.netloc.lower() == request.headers.get("Host", "").lower()
        if same and page.hostname in {*LOOPBACK_NAMES, self.config.host}:
            return None
        logger.warning("refused a WebSocket from origin %s", origin)
        return connection.respond(
            HTTPStatus.FORBIDDEN,
            f"Origin {origin} may not connect: start the server with --allowed-origin {origin} "
            "to allow it.\n",
        )

    def _static(self, connection: ServerConnection, path: str) -> Response:
        root = self.config.web_root.resolve()
        if not (root / "index.html").is_file():
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "The web client is not built: run `make build-web` in the syncd checkout "
                "(or install syncd from its wheel), then reload.\n",
            )
        relative = unquote(path).lstrip("/") or "index.html"
        try:
            target = (root / relative).resolve()
            found = target.is_relative_to(root) and target.is_file()
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system
            found = False
        if not found:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found.\n")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return _response(HTTPStatus.OK, target.read_bytes(), kind)


def _forget(tasks: dict[str, Any], name: str, _: object) -> None:
    """A done callback: the task of ``name`` is over."""
    tasks.pop(name, None)


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-cache"
    return Response(status.value, status.phrase, headers, body)


def _raise_open_files_limit() -> None:
    """Let the process hold as many connections as the system allows it (each is a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("cannot raise the open files limit from %d", soft)


async def run(config: ServerConfig) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    _raise_open_files_limit()
    server = SyncServer(config)
    await server.start()
    settle_after_start_up()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("shutting down")
        await server.stop()
