"""``syncd.client``: the asyncio client that the CLI, the TUI and scripts share.

A :class:`Client` is a thin I/O layer around :class:`~syncd.replica.Replica`,
the sans-I/O state machine that holds the local replica and the pending
writes. The client owns the WebSocket: it connects, says ``hello``, feeds every
frame to the replica, sends what the replica asks for, reconnects with
exponential backoff and jitter, and reports what happens as events::

    async with Client("ws://127.0.0.1:8765/ws", "notes") as client:
        await client.set("title", "hello")       # returns once acknowledged
        print(client.get("title"), client.status, client.peers)
        async for change in client.changes():    # local and remote, as they happen
            print(change.key, change.value, change.origin)

Given several URLs (``"ws://a/ws,ws://b/ws"`` or a list), the client uses
the first that answers; when a connection is lost or fails it tries the next
one at once, and waits out the backoff only after a whole round of URLs
failed. Each server has its own resume point (epoch), so reaching another one
brings a snapshot; pending writes are sent again there. :attr:`Client.server_url`,
:attr:`Client.server_node` and :attr:`Client.cluster` say where it is, and a
:class:`~syncd.events.Moved` event says when that changes.

Reads (:meth:`Client.get`, :meth:`Client.items`) come from the local replica
and never wait. Writes apply locally at once and are sent as soon as the
client is synced; offline, they wait in the pending queue (and, with
``store=``, in a file) and are sent again, with their original timestamps,
after every reconnect until acknowledged.

Failures are :mod:`syncd.errors` exceptions: :class:`~syncd.errors.AuthError`,
:class:`~syncd.errors.ServerError`, :class:`~syncd.errors.ConnectionFailed`,
:class:`~syncd.errors.SyncdTimeoutError`, all :class:`~syncd.errors.SyncdError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)
from websockets.frames import CloseCode

from syncd.client_store import ClientStore, StoreSaver
from syncd.crdt import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_OPS, Entry, JSONValue, wall_clock_ms
from syncd.errors import (
    AuthError,
    ConnectionFailed,
    ReadOnlyError,
    ServerError,
    SyncdError,
    SyncdTimeoutError,
    UnexpectedFrame,
)
from syncd.events import (
    Acked,
    Answered,
    Change,
    ErrorReceived,
    Event,
    Moved,
    Overridden,
    Rejected,
    State,
    Status,
    Synced,
    Write,
)
from syncd.history_wire import (
    Conflict,
    Version,
    read_conflicts,
    read_state,
    read_versions,
)
from syncd.identity import default_node
from syncd.places import Place, place_of, remember_cluster
from syncd.replica import Replica
from syncd.settings import DEFAULT_TIMEOUT, resolve
from syncd.urls import normalize_url, parse_urls

__all__ = [
    "Backoff",
    "Client",
    "Subscription",
    "normalize_url",
]

logger = logging.getLogger(__name__)

_NOT_RETRIED: Final = frozenset(
    {"unauthorized", "unsupported_version", "bad_message", "bad_json", "not_ready"}
)
"""Answers to ``hello`` that another attempt would get again."""

E = TypeVar("E")


# -- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: exponential, capped, with jitter.

    Attempt ``n`` (from 0) waits ``min(maximum, initial * factor**n)`` seconds,
    less a random share of up to ``jitter`` of it, so clients dropped together
    do not all come back at the same instant.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1 - self.jitter * rand())


# -- subscriptions -------------------------------------------------------------------


class Subscription(Generic[E]):
    """An async iterator over a client's events of some types, from its creation on.

    It ends when the client closes (it may be made before the client connects,
    to see the first handshake). Unread events queue up: read them, or close
    the subscription (``with`` does it).
    """

    def __init__(self, client: Client, kinds: tuple[type, ...]) -> None:
        self._kinds = kinds
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._client = client
        client._subscriptions.add(self)

    def _offer(self, event: Event | None) -> None:
        if event is None or isinstance(event, self._kinds):
            self._queue.put_nowait(event)

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E:
        event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)  # stay ended
            raise StopAsyncIteration
        return event  # type: ignore[return-value]  # filtered by kinds

    async def get(self, timeout: float | None = None) -> E:
        """The next event; :class:`~syncd.errors.SyncdTimeoutError` if none comes in time,
        :class:`~syncd.errors.ConnectionFailed` if the client closed."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            raise SyncdTimeoutError(f"no event within {timeout} s") from None
        except StopAsyncIteration:
            raise ConnectionFailed("the client is closed") from None

    def close(self) -> None:
        """Stop receiving events."""
        self._client._subscriptions.discard(self)
        self._queue.put_nowait(None)

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Subscription[E]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Waiter:
    """A caller waiting for a set of writes to be settled."""

    __slots__ = ("future", "remaining")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Fatal(Exception):
    """Ends the connection loop for good: retrying cannot help."""

    def __init__(self, error: SyncdError) -> None:
        super().__init__(str(error))
        self.error = error


# -- the client ----------------------------------------------------------------------


class Client:
    """A connection to one document of a syncd server, with a local replica.

    ``url``, ``doc`` and ``token`` default to ``$SYNCD_URL``, ``$SYNCD_DOC`` and
    ``$SYNCD_TOKEN``, then to ``ws://127.0.0.1:8765/ws`` and ``default``
    (:func:`syncd.settings.resolve`).
    ``url`` may name several servers of one service (the nodes of a cluster): a
    comma-separated string or a list (:func:`~syncd.urls.parse_urls`); the
    client moves to the next one when a connection fails.
    ``node`` defaults to this install's id for Python clients
    (:func:`~syncd.identity.default_node`).

    ``store`` names a file that keeps the replica, the resume point and the
    pending writes across runs (:mod:`syncd.client_store`); with
    ``keep_replica=False`` it keeps only the pending writes. The store belongs
    to the client's :attr:`place` (its cluster when known, else its URL).

    ``timeout`` bounds each wait: connecting and the handshake, and the
    acknowledgement of a write made with ``wait=True``. After losing the
    connection, the client tries the next URL at once, and after a round of
    failures waits ``backoff`` delays between rounds for ever, or for
    ``give_up_after`` seconds and then fails with
    :class:`~syncd.errors.ConnectionFailed`.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        doc: str | None = None,
        *,
        token: str | None = None,
        node: str | None = None,
        store: str | os.PathLike[str] | None = None,
        keep_replica: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: Backoff = Backoff(),
        give_up_after: float | None = None,
        window: int = 8,
        max_ops: int = DEFAULT_MAX_OPS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock_sync_interval: float = 30.0,
        save_interval: float = 2.0,
        wall: Callable[[], int] = wall_clock_ms,
    ) -> None:
        target = resolve(url, doc, token)
        self.urls: tuple[str, ...] = tuple(parse_urls(target.url))
        self._at = 0
        """The index in ``urls`` of the server connected to, or tried next."""
        self.server_url: str | None = None
        """The URL of the server of the last handshake (``None`` before the first)."""
        self._place = place_of(self.urls)
        self.replica = Replica(
            node or default_node("py"),
            target.doc,
            token=target.token,
            max_ops=max_ops,
            max_frame_bytes=max_frame_bytes,
            wall=wall,
        )
        self.timeout = timeout
        self.backoff = backoff
        self.give_up_after = give_up_after
        self.window = window
        self.clock_sync_interval = clock_sync_interval
        self._saver: StoreSaver | None = None
        if store is not None:
            files = ClientStore(
                Path(store), doc=self.replica.doc, place=self._place, replica=keep_replica
            )
            saved = files.load()
            self.replica.restore(saved.document, saved.epoch, saved.seq, saved.clock)
            self.replica.restore_pending(saved.pending)
            self._saver = StoreSaver(files, self.replica, save_interval)
        self._status = Status(State.CLOSED)
        self._failure: SyncdError | None = None
        self._subscriptions: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()
        self._waiting: dict[str, list[tuple[str, _Waiter]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._first: asyncio.Future[None] | None = None
        self._ws: ClientConnection | None = None
        self._wake: asyncio.Event | None = None
        self._retry_now: asyncio.Event | None = None
        self._tick: asyncio.Event | None = None
        self._session_synced = False
        self._last_node: str | None = None
        self._requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        """The requests sent on this connection, awaiting their answer."""

    # -- reading the local replica ----------------------------------------------------

    @property
    def doc(self) -> str:
        """The document's name."""
        return self.replica.doc

    @property
    def node(self) -> str:
        """This client's node id."""
        return self.replica.node

    @property
    def url(self) -> str:
        """The URL of the server connected to, or to be tried next."""
        return self.urls[self._at]

    @property
    def server_node(self) -> str | None:
        """The node id of the server of the last handshake."""
        return self.replica.server

    @property
    def cluster(self) -> str | None:
        """The id of the cluster of :attr:`urls`: from the last handshake, or known
        from an earlier run (:mod:`syncd.places`); ``None`` for a server alone."""
        return self._place.cluster

    @property
    def place(self) -> Place:
        """Where this client's local files belong: its cluster when known, else its URL."""
        return self._place

    @property
    def status(self) -> Status:
        """The connection status (also reported as :class:`~syncd.replica.Status` events)."""
        return self._status

    @property
    def state(self) -> State:
        """The connection state."""
        return self._status.state

    @property
    def error(self) -> SyncdError | None:
        """Why the client stopped for good (state ``failed``), else ``None``."""
        return self._failure

    @property
    def synced(self) -> bool:
        """Whether the client is connected and holds the server's state."""
        return self.replica.synced

    @property
    def readonly(self) -> bool:
        """Whether the server said this connection may not write."""
        return self.replica.readonly

    @property
    def peers(self) -> frozenset[str]:
        """The node ids of the other clients of the document (while connected)."""
        return self.replica.peers

    @property
    def pending_count(self) -> int:
        """How many local writes are not acknowledged yet."""
        return self.replica.pending_count

    def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """The value of ``key`` in the local replica, or ``default``."""
        value: JSONValue = self.replica.document.get(key, default)
        return value

    def __contains__(self, key: str) -> bool:
        return key in self.replica.document

    def __len__(self) -> int:
        return len(self.replica.document)

    def entry(self, key: str) -> Entry | None:
        """The winning entry of ``key`` (live or tombstone), or ``None``."""
        return self.replica.document.entry(key)

    def keys(self) -> list[str]:
        """The live keys, sorted by code point."""
        return self.replica.document.keys()

    def to_dict(self) -> dict[str, JSONValue]:
        """Every live key and its value."""
        data: dict[str, JSONValue] = self.replica.document.to_dict()
        return data

    def items(self) -> list[tuple[str, JSONValue]]:
        """The live keys and their values, sorted by key."""
        data = self.to_dict()
        return [(key, data[key]) for key in sorted(data)]

    # -- events -----------------------------------------------------------------------

    def events(self) -> Subscription[Event]:
        """Every event from now on: changes, presence, status, acks, rejections."""
        return Subscription(self, (object,))

    def changes(self) -> Subscription[Change]:
        """Every change of the local replica from now on, local and remote."""
        return Subscription(self, (Change,))

    def subscribe(self, *kinds: type) -> Subscription[Any]:
        """The events of the given types from now on (e.g. ``Acked, Status``)."""
        return Subscription(self, kinds or (object,))

    def _publish(self, event: Event | None) -> None:
        for subscription in list(self._subscriptions):
            subscription._offer(event)

    def _publish_many(self, events: list[Change]) -> None:
        for subscription in list(self._subscriptions):
            for event in events:
                subscription._offer(event)

    def _notify(self) -> None:
        if self._tick is not None:
            self._tick.set()
            self._tick = asyncio.Event()

    def _set_status(self, status: Status) -> None:
        if status != self._status:
            self._status = status
            self._publish(status)
        self._notify()

    # -- connecting -------------------------------------------------------------------

    async def connect(self, *, wait: bool = True) -> None:
        """Start the connection (and its reconnections) in the background.

        With ``wait``, return once synced; if the first attempt fails, raise
        (:class:`~syncd.errors.ConnectionFailed`, :class:`~syncd.errors.AuthError`,
        :class:`~syncd.errors.SyncdTimeoutError`) and stop. Without, return at
        once: the client works offline until a connection succeeds.
        """
        if self._tasks:
            raise RuntimeError("the client is already connected")
        loop = asyncio.get_running_loop()
        self._failure = None
        self._wake, self._retry_now, self._tick = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._first = loop.create_future()
        self._set_status(Status(State.CONNECTING, self.readonly))
        if self._saver is not None:
            self._saver.store.lock()
        self._tasks.append(asyncio.create_task(self._run(fail_fast=wait), name="syncd client"))
        if self._saver is not None:
            self._tasks.append(asyncio.create_task(self._saver.run(), name="syncd client store"))
        if wait:
            try:
                await self._first
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        """Disconnect, save the store, and end every subscription. Pending writes stay
        pending (saved in the store, if there is one)."""
        tasks, self._tasks = self._tasks, []
        if self._ws is not None:
            # A clean close frame first; cancelling the loop then cuts what is left.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._ws.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._saver is not None:
            await self._saver.written()  # a cancelled save's thread may still be writing
            await self._saver.save(final=True)
            self._saver.store.unlock()
        if self._failure is None:
            self._fail_waiters(ConnectionFailed("the client was closed"))
        self._set_status(Status(State.CLOSED, self.readonly))
        self._publish(None)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Deliver pending writes (within ``timeout``) unless leaving on an error; close."""
        try:
            if kind is None and self._failure is None and self.pending_count and not self.readonly:
                await self.flush()
        finally:
            await self.close()

    def reconnect_now(self) -> None:
        """Skip the rest of the current backoff delay."""
        if self._retry_now is not None:
            self._retry_now.set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the client is connected and synced."""
        await self._until(lambda: self.synced, timeout, "to sync")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every pending write is acknowledged (or settled otherwise)."""
        if self.readonly and self.pending_count:
            raise ReadOnlyError(
                f"{self.pending_count} pending writes cannot be sent: the connection is read-only"
            )
        await self._until(lambda: self.pending_count == 0, timeout, "for pending writes")

    async def _until(self, ready: Callable[[], bool], timeout: float | None, what: str) -> None:
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while not ready():
                    if self._failure is not None:
                        raise self._failure
                    if self._tick is None or self.state is State.CLOSED:
                        raise ConnectionFailed("the client is not connected")
                    if self.readonly and self.pending_count and what == "for pending writes":
                        raise ReadOnlyError("the connection is read-only")
                    await self._tick.wait()
        except TimeoutError:
            raise SyncdTimeoutError(f"waited over {limit:g} s {what} ({self.status})") from None

    # -- reading the server's history -------------------------------------------------

    async def request(
        self, kind: str, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send a read request (``history``, ``conflicts``, ``state_at``: see
        :mod:`syncd.history_wire`) once synced; its answer frame. An ``error`` answer
        raises :class:`~syncd.errors.ServerError`."""
        limit = self.timeout if timeout is None else timeout
        await self.wait_synced(limit)
        ws = self._ws
        if ws is None:
            raise ConnectionFailed("the client is not connected")
        id, frame = self.replica.request_frame(kind, **fields)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[id] = answer
        try:
            await ws.send(frame)
            async with asyncio.timeout(limit):
                return await answer
        except TimeoutError:
            raise SyncdTimeoutError(f"waited over {limit:g} s for the answer to {kind}") from None
        finally:
            self._requests.pop(id, None)

    async def history(
        self, key: str, *, limit: int = 100, before: str | None = None
    ) -> tuple[list[Version], str | None]:
        """Up to ``limit`` versions of ``key``, newest first, older than the ts ``before``;
        and the ``before`` of the next page (``None`` on the last)."""
        return read_versions(await self.request("history", key=key, limit=limit, before=before))

    async def conflicts(
        self, *, node: str | None = None, limit: int = 100, before: int | None = None
    ) -> tuple[list[Conflict], int | None]:
        """Up to ``limit`` overridden writes (of ``node`` only, if given), newest first;
        and the ``before`` of the next page."""
        frame = await self.request("conflicts", node=node, limit=limit, before=before)
        return read_conflicts(frame)

    async def state_at(self, at_ms: int, *, max_pages: int = 1_000_000) -> dict[str, JSONValue]:
        """The whole document as it was at wall time ``at_ms``, read page by page."""
        state: dict[str, JSONValue] = {}
        after: str | None = None
        for _ in range(max_pages):
            page, after = read_state(await self.request("state_at", at=at_ms, after=after))
            state.update(page)
            if after is None:
                return state
        raise SyncdError(f"the state at {at_ms} did not end within {max_pages} pages")

    async def restore(
        self, key: str, version: Version, *, wait: bool = True, timeout: float | None = None
    ) -> Change:
        """Write ``version`` of ``key`` (from :meth:`history` or :meth:`conflicts`) again,
        as a new write: its value, or a delete for a deleted version. Raises as
        :meth:`set` does, and :class:`~syncd.errors.SyncdError` for a version whose value
        the history no longer holds."""
        if not version.known:
            raise SyncdError(f"the value of {key!r} at {version.ts} is no longer in the history")
        if version.deleted:
            return await self.delete(key, wait=wait, timeout=timeout)
        return await self.set(key, version.value, wait=wait, timeout=timeout)

    def _fail_requests(self, error: SyncdError) -> None:
        for answer in self._requests.values():
            if not answer.done():
                answer.set_exception(error)
        self._requests.clear()

    # -- writing ----------------------------------------------------------------------

    async def set(
        self, key: str, value: JSONValue, *, wait: bool = True, timeout: float | None = None
    ) -> Change:
        """Write ``value`` under ``key``; with ``wait``, return once the server has it.

        Raises :class:`~syncd.errors.CrdtError` for an invalid key or value,
        :class:`~syncd.errors.ReadOnlyError` on a read-only connection and, with
        ``wait``, :class:`~syncd.errors.ServerError` if the server refuses it or
        :class:`~syncd.errors.SyncdTimeoutError` (the write stays pending).
        """
        change = self.replica.set(key, value)
        await self._written([change], wait, timeout)
        return change

    async def delete(self, key: str, *, wait: bool = True, timeout: float | None = None) -> Change:
        """Delete ``key`` (a tombstone, even if it is absent); like :meth:`set`."""
        change = self.replica.delete(key)
        await self._written([change], wait, timeout)
        return change

    async def update(
        self,
        items: Mapping[str, JSONValue] | Iterable[tuple[str, JSONValue]],
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> list[Change]:
        """Write many keys at once (sent in as few messages as the limits allow).

        Every key and value is checked before anything is written.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        changes = self.replica.update(pairs)
        await self._written(changes, wait, timeout)
        return changes

    def resend(self, entries: Iterable[Mapping[str, Any]]) -> list[Write]:
        """Queue writes made elsewhere (wire-form entries, e.g. saved by an earlier run)
        with their original timestamps, as pending writes of this client.

        An entry that already lost to what the replica holds is skipped. Returns
        the writes queued; :meth:`flush` waits for them.
        """
        before = {p.write for p in self.replica.pending}
        self.replica.restore_pending(entries)
        queued = [p.write for p in self.replica.pending if p.write not in before]
        self._pending_changed()
        self._wake_sender()
        self._notify()
        return queued

    async def _written(self, changes: list[Change], wait: bool, timeout: float | None) -> None:
        waiter = self._watch([Write(c.key, c.ts) for c in changes]) if wait else None
        self._publish_many(changes)
        if self._saver is not None:
            self._saver.save_pending_now()
        self._replica_changed()
        if self._wake is not None:
            self._wake.set()
        self._notify()
        if waiter is None:
            return
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                await waiter.future
        except TimeoutError:
            raise SyncdTimeoutError(
                f"no acknowledgement within {limit:g} s ({self.status}); "
                "the write stays pending and will be sent when possible"
            ) from None

    def _watch(self, writes: list[Write]) -> _Waiter:
        waiter = _Waiter(len(writes))
        if self._failure is not None:
            waiter.future.set_exception(self._failure)
        elif self.state is State.CLOSED:
            waiter.future.set_exception(ConnectionFailed("the client is not connected"))
        for write in writes:
            self._waiting.setdefault(write.key, []).append((write.ts, waiter))
        return waiter

    def _settle(self, write: Write, error: SyncdError | None = None) -> None:
        """A write (and every older one of its key) is settled: wake who waits for it."""
        waiting = self._waiting.get(write.key)
        if not waiting:
            return
        keep = []
        for ts, waiter in waiting:
            if ts > write.ts:
                keep.append((ts, waiter))
                continue
            waiter.remaining -= 1
            if waiter.future.done():
                continue
            if error is not None:
                waiter.future.set_exception(error)
            elif waiter.remaining == 0:
                waiter.future.set_result(None)
        if keep:
            self._waiting[write.key] = keep
        else:
            del self._waiting[write.key]

    def _fail_waiters(self, error: SyncdError) -> None:
        waiting, self._waiting = self._waiting, {}
        for entries in waiting.values():
            for _, waiter in entries:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
                    waiter.future.exception()  # retrieved: no "never retrieved" warning

    # -- the connection loop ----------------------------------------------------------

    async def _run(self, fail_fast: bool) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        offline_since: float | None = None
        failed: dict[str, str] = {}
        """Why each URL failed in the current round (since the last wait or sync)."""
        while True:
            self._set_status(Status(State.CONNECTING, self.readonly))
            url = self.url
            try:
                error: BaseException = await self._session(url)
            except _Fatal as fatal:
                self._stop(fatal.error)
                return
            except (OSError, TimeoutError, WebSocketException, SyncdError) as exc:
                error = exc
            except Exception as exc:  # a bug: say so loudly, but keep the client alive
                logger.exception("%s: the connection failed unexpectedly", url)
                error = exc
            finally:
                self.replica.disconnected()
                self._ws = None
                self._fail_requests(ConnectionFailed("the connection closed before the answer"))
                self._notify()
            reason = _describe(error)
            if (
                _close_code(error) == CloseCode.MESSAGE_TOO_BIG
                and self.replica.max_frame_bytes > 4096
            ):
                # The server has a lower frame limit than assumed (the welcome does not say it).
                self.replica.max_frame_bytes //= 2
            if isinstance(error, UnexpectedFrame):
                logger.warning("%s: %s", url, reason)
            if self._session_synced:
                attempt, offline_since, failed = 0, loop.time(), {}
            elif offline_since is None:
                offline_since = loop.time()
            failed[url] = reason
            self._at = (self._at + 1) % len(self.urls)
            round_over = len(failed) >= len(self.urls)
            first_synced = self._first is not None and self._first.done()
            if fail_fast and not first_synced and round_over:
                self._stop(ConnectionFailed(f"cannot connect to {_reasons(failed)}"))
                return
            if self.give_up_after is not None and loop.time() - offline_since > self.give_up_after:
                self._stop(
                    ConnectionFailed(
                        f"no connection for over {self.give_up_after:g} s: {_reasons(failed)}"
                    )
                )
                return
            if not round_over:
                logger.info("%s: %s; trying %s", url, reason, self.url)
                continue
            failed = {}
            delay = self.backoff.delay(attempt)
            attempt += 1
            self._set_status(Status(State.OFFLINE, self.readonly, delay, reason))
            logger.info("%s: %s; retrying in %.1f s", url, reason, delay)
            assert self._retry_now is not None
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_now.wait()

    async def _session(self, url: str) -> BaseException:
        """One connection, from connecting to its end; returns (or raises) why it ended."""
        self._session_synced = False
        ws = await connect(
            url,
            open_timeout=self.timeout,
            compression=None,
            max_size=None,
            close_timeout=2,
            user_agent_header=None,
        )
        sender: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self.timeout) as handshake:
                await ws.send(self.replica.hello_frame())
                self._ws = ws
                sender = asyncio.create_task(self._send_loop(ws), name="syncd client sender")
                sender.add_done_callback(lambda task: _abort_on_failure(task, ws))
                async for message in ws:
                    if isinstance(message, bytes):
                        raise UnexpectedFrame("the server sent a binary frame")
                    for event in self.replica.receive(message):
                        self._handle(event)
                    if self._session_synced and handshake.when() is not None:
                        handshake.reschedule(None)
                    self._notify()
            close = ws.protocol.close_rcvd
            if close is not None and close.code == CloseCode.TRY_AGAIN_LATER:
                return ConnectionFailed("the server dropped this client (too far behind)")
            return ConnectionFailed(
                f"the server closed the connection ({close.code} {close.reason})".strip()
                if close is not None
                else "the connection closed"
            )
        finally:
            if sender is not None:
                sender.cancel()
            ws.transport.abort()

    async def _send_loop(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        next_ping = 0.0
        while True:
            wait: float | None = None
            if self.replica.synced:
                if loop.time() >= next_ping:
                    await ws.send(self.replica.ping_frame())
                    next_ping = loop.time() + self.clock_sync_interval
                for frame in self.replica.outgoing(self.window):
                    await ws.send(frame)
                # Paused after a retryable refusal: wake up when the pause ends.
                pause = self.replica.resume_in()
                wait = max(next_ping - loop.time(), 0)
                if pause > 0:
                    wait = min(wait, pause + 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()

    def _handle(self, event: Event) -> None:
        if isinstance(event, Answered):
            answer = self._requests.get(event.id)
            if answer is not None and not answer.done():
                answer.set_result(event.frame)
        elif isinstance(event, ErrorReceived) and event.id in self._requests:
            answer = self._requests[event.id]
            if not answer.done():
                answer.set_exception(_server_error(event.code, event.message, event.id))
        elif isinstance(event, ErrorReceived):
            if event.fatal:
                error = _server_error(event.code, event.message, event.id)
                if event.code in _NOT_RETRIED:
                    raise _Fatal(error)
                raise error  # e.g. internal: worth another attempt
            logger.warning("%s: the server said %s: %s", self.url, event.code, event.message)
        elif isinstance(event, Synced):
            self._session_synced = True
            self._arrived()
            self._replica_changed()
            self._set_status(Status(State.SYNCED, event.readonly))
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            if event.readonly and self.pending_count:
                self._fail_waiters(ReadOnlyError("the connection is read-only"))
            self._wake_sender()
        elif isinstance(event, Acked):
            for write in event.writes:
                self._settle(write)
            self._pending_changed()
            self._replica_changed()
            self._wake_sender()
        elif isinstance(event, Overridden):
            self._settle(event.write)
            self._pending_changed()
        elif isinstance(event, Rejected):
            if event.retry_after is None:
                logger.warning("%s: write refused: %s: %s", self.url, event.code, event.message)
                error = _server_error(event.code, event.message, event.id)
                for write in event.writes:
                    self._settle(write, error)
                self._pending_changed()
            else:
                self._wake_sender()  # it waits out the replica's pause
        elif isinstance(event, Change):
            self._replica_changed()
        self._publish(event)

    def _arrived(self) -> None:
        """A handshake ended: note the server's cluster, and report a move."""
        cluster = self.replica.cluster
        if cluster is not None:
            remember_cluster(self.url, cluster)
            if cluster != self._place.cluster:
                self._place = place_of(self.urls, cluster)
                if self._saver is not None:
                    self._saver.store.place = self._place
        before = (self.server_url, self._last_node)
        self.server_url, self._last_node = self.url, self.replica.server
        if before != (self.server_url, self._last_node):
            logger.info("synced with %s (node %s)", self.url, self.replica.server)
            self._publish(Moved(self.url, self.replica.server, cluster))

    def _pending_changed(self) -> None:
        if self._saver is not None:
            self._saver.pending_changed()

    def _replica_changed(self) -> None:
        if self._saver is not None:
            self._saver.replica_changed()

    def _wake_sender(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _stop(self, error: SyncdError) -> None:
        """Give up for good: fail every wait with ``error``."""
        self._failure = error
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
            self._first.exception()
        self._fail_waiters(error)
        self._set_status(Status(State.FAILED, self.readonly, None, str(error)))


def _abort_on_failure(task: asyncio.Task[None], ws: ClientConnection) -> None:
    """A sender that failed takes its connection down, so the reader reconnects."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, ConnectionClosed):
        logger.error("syncd client: sending failed: %r", error)
        ws.transport.abort()


def _reasons(failed: Mapping[str, str]) -> str:
    """``URL: reason`` for each URL that failed, for one message."""
    return "; ".join(f"{url}: {reason}" for url, reason in failed.items())


def _close_code(error: BaseException) -> int | None:
    if isinstance(error, ConnectionClosed) and error.rcvd is not None:
        return error.rcvd.code
    return None


def _server_error(code: str, message: str, id: int | None) -> ServerError:
    if code == "unauthorized":
        return AuthError(message)
    if code == "forbidden":
        return ReadOnlyError(message, id)
    return ServerError(code, message, id)


def _describe(error: BaseException) -> str:
    """A short, human-readable reason for a failed or lost connection."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, InvalidStatus):
        return f"the server answered HTTP {error.response.status_code} (is this a syncd server?)"
    if isinstance(error, InvalidHandshake):
        return f"WebSocket handshake failed: {error}"
    if isinstance(error, ConnectionClosed):
        if error.rcvd is not None:
            if error.rcvd.code == CloseCode.TRY_AGAIN_LATER:
                return "the server dropped this client (too far behind)"
            return f"the server closed the connection ({error.rcvd.code} {error.rcvd.reason})"
        return "the connection was lost"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__
