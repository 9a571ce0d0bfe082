"""A document being served: its replica, its clients, and its commit pipeline.

Writes are applied to the in-memory replica as they arrive (the core validates
and merges a whole ``ops`` frame at once) and queued. One commit task per room
takes everything queued, appends it to the log with a single fsync (group
commit), and only then acknowledges each writer and broadcasts to the others:
the applied entries of consecutive messages of one origin go out as one frame.
Each client receives acks and broadcasts in seq order.

Frames are written to a client's socket without waiting for it. A client whose
unsent bytes pass the queue limit is closed with 1013 and dropped, so a slow
reader never delays the writer or the other readers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, broadcast

from syncd.crdt import Clock, CrdtError, Document, FrameResult, broadcast_frame, wall_clock_ms
from syncd.metrics import Metrics
from syncd.protocol import (
    Hello,
    ProtocolError,
    error_frame,
    message_id,
    presence_frame,
    synced_frame,
    welcome_frame,
)
from syncd.store import DocumentStore, StoreError

__all__ = ["Client", "Room", "RoomSettings", "close_or_abort"]

logger = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class RoomSettings:
    """What every room of a server shares."""

    max_frame_bytes: int
    max_skew_ms: int
    queue_limit: int
    """The most bytes a client may have unsent before it is dropped."""
    tombstone_retention_ms: int
    close_timeout: float = 3.0
    """Seconds a dropped client has to complete the close before its TCP is cut."""


@dataclass(eq=False)
class Client:
    """One connection to a document."""

    connection: ServerConnection
    node: str
    readonly: bool
    floor: int = 0
    """The seq of the snapshot it was sent: it already has every change up to here."""
    backlog: list[str] | None = field(default_factory=list)
    """Frames held while its handshake is being sent; ``None`` once it is synced."""
    backlog_bytes: int = 0
    dropped: bool = False


class Room:
    """One document and the clients connected to it."""

    def __init__(
        self,
        name: str,
        doc: Document,
        store: DocumentStore,
        clock: Clock,
        settings: RoomSettings,
        metrics: Metrics,
    ) -> None:
        self.name = name
        self.doc = doc
        self.store = store
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.clients: list[Client] = []
        self._nodes: Counter[str] = Counter()
        self._pending: list[tuple[Client, FrameResult]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failed: StoreError | None = None
        self._folding: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._committer = asyncio.create_task(self._commit_loop(), name=f"commit {name}")

    # -- joining and leaving ------------------------------------------------

    def join(self, client: Client, hello: Hello) -> list[str]:
        """Register ``client`` and return its handshake: welcome, entries…, synced.

        Runs without awaiting, so no change slips between the snapshot and the
        broadcasts that follow it; those wait in the client's backlog until
        :meth:`synced`.
        """
        doc, since = self.doc, hello.since
        seq = doc.seq
        # A delta only within this lineage and between the horizon and the head (§4).
        resumable = since is not None and since.epoch == self.store.epoch
        resume = since.seq if since and resumable and doc.horizon <= since.seq <= seq else None
        entries = doc.entries_frames(resume, self.settings.max_frame_bytes)
        client.floor = seq
        peers = sorted(node for node in self._nodes if node != client.node)
        self.clients.append(client)
        self._nodes[client.node] += 1
        if self._nodes[client.node] == 1:
            self._send_all(presence_frame(joined=[client.node]), exclude=client)
        welcome = welcome_frame(
            doc=self.name,
            node=self.store.server_node,
            epoch=self.store.epoch,
            seq=seq,
            time=self.clock.now(),
            full=resume is None,
            readonly=client.readonly,
            peers=peers,
        )
        return [welcome, *entries, synced_frame(seq)]

    def synced(self, client: Client) -> None:
        """The handshake is sent: write what waited meanwhile, then write directly."""
        backlog, client.backlog = client.backlog or [], None
        for frame in backlog:
            self.send(client, frame)

    def leave(self, client: Client) -> None:
        """Forget a client whose connection ended."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        self._nodes[client.node] -= 1
        if self._nodes[client.node] == 0:
            del self._nodes[client.node]
            self._send_all(presence_frame(left=[client.node]))

    # -- writing --------------------------------------------------------------

    def submit(self, client: Client, text: str) -> None:
        """Apply an ``ops`` frame now; it is acknowledged once committed.

        Raises :class:`CrdtError` (nothing applied) for a frame the core rejects,
        :class:`ProtocolError` once the document's store has failed.
        """
        if self._failed is not None:
            raise ProtocolError(
                "internal",
                f"the server cannot write this document now: {self._failed}",
                id=message_id(text),
            )
        try:
            result = self.doc.apply_frame(
                text, now_ms=wall_clock_ms(), max_skew_ms=self.settings.max_skew_ms
            )
        except CrdtError as error:
            if error.code == "clock_skew":
                self.metrics.clock_skew_rejections.inc()
            raise
        self._pending.append((client, result))
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed and answered."""
        await self._idle.wait()

    async def close(self) -> None:
        """Commit what is pending, then stop the commit task and close the log."""
        await self.drain()
        self._committer.cancel()
        if self._folding is not None:
            await self._folding
        self.store.close()

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self._commit(batch)
                except Exception:
                    # Never leave writers waiting forever on a commit that cannot finish.
                    logger.exception("document %s: commit failed", self.name)
                    self._fail(batch, StoreError("unexpected failure while committing"))
            if not self._pending:
                self._idle.set()

    async def _commit(self, batch: list[tuple[Client, FrameResult]]) -> None:
        lines = "".join(line for _, result in batch if (line := result.log_line()))
        applied = sum(result.applied for _, result in batch)
        if lines:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.store.append, lines)
            except StoreError as error:
                self._fail(batch, error)
                return
            self.metrics.commits.inc()
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.ops_applied.inc(applied)
        self.metrics.ops_ignored.inc(sum(result.ignored for _, result in batch))
        self._dispatch(batch)
        if self._folding is None and self.store.fold_due():
            # Here, between two appends: the commit loop is the only one to append.
            covered = self.store.begin_fold()
            self._folding = asyncio.create_task(self._fold(covered), name=f"fold {self.name}")

    def _fail(self, batch: list[tuple[Client, FrameResult]], error: StoreError) -> None:
        """Answer a commit that did not reach the disk, and refuse writes from now on."""
        logger.error("document %s: %s; refusing writes until restarted", self.name, error)
        self._failed = error
        for client, result in batch:
            self.send(client, error_frame("internal", "the write could not be stored", result.id))

    def _dispatch(self, batch: list[tuple[Client, FrameResult]]) -> None:
        """Ack each writer and broadcast to the others, run by run of one origin."""
        start = 0
        while start < len(batch):
            writer = batch[start][0]
            end = start
            while end < len(batch) and batch[end][0] is writer:
                end += 1
            run = [result for _, result in batch[start:end]]
            for result in run:
                self.send(writer, result.ack())
            self._broadcast_run(writer, [r for r in run if r.applied])
            start = end

    def _broadcast_run(self, writer: Client, run: list[FrameResult]) -> None:
        if not run:
            return
        first_seq = run[0].seq - run[0].applied + 1
        last_seq = run[-1].seq
        limit = self.settings.max_frame_bytes
        shared: list[str] | None = None
        for client in self.clients:
            if client is writer or client.floor >= last_seq:
                continue
            if client.floor < first_seq:
                if shared is None:
                    shared = _coalesce(writer.node, run, limit)
                frames = shared
            else:  # it joined while this run was being committed
                frames = _coalesce(writer.node, [r for r in run if r.seq > client.floor], limit)
            for frame in frames:
                self.send(client, frame)

    async def _fold(self, covered: list[Path]) -> None:
        retention = self.settings.tombstone_retention_ms
        cutoff = max(wall_clock_ms() - retention, 0)
        purge_before = f"{cutoff:013d}-00000-0"
        try:
            purged = await asyncio.to_thread(self.store.fold, self.doc, covered, purge_before)
        except OSError:
            logger.exception("document %s: fold failed; the log keeps everything", self.name)
        else:
            logger.debug("document %s: folded the log, purged %d tombstones", self.name, purged)
        finally:
            self._folding = None

    # -- sending --------------------------------------------------------------

    def send(self, client: Client, frame: str) -> None:
        """Write a frame to a client without waiting; drop the client if it lags too far."""
        if client.dropped:
            return
        if client.backlog is not None:
            client.backlog.append(frame)
            client.backlog_bytes += len(frame)
            if client.backlog_bytes > self.settings.queue_limit:
                self._drop(client)
            return
        transport = client.connection.transport
        if transport is not None and transport.get_write_buffer_size() > self.settings.queue_limit:
            self._drop(client)
            return
        broadcast([client.connection], frame)

    def _send_all(self, frame: str, exclude: Client | None = None) -> None:
        for client in self.clients:
            if client is not exclude:
                self.send(client, frame)

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self.metrics.queue_drops.inc()
        logger.info("document %s: dropping %s, too far behind", self.name, client.node)
        task = asyncio.create_task(
            close_or_abort(
                client.connection, TRY_AGAIN_LATER, "too far behind", self.settings.close_timeout
            )
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def close_or_abort(
    connection: ServerConnection, code: int, reason: str, timeout: float
) -> None:
    """Close with ``code``, cutting the TCP connection if that takes over ``timeout`` seconds.

    ``close()`` first waits for the client to read what is queued, which a stuck
    client never does: websockets' own close timeout only starts after that.
    """
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except TimeoutError:
        connection.transport.abort()


def _coalesce(origin: str, run: list[FrameResult], max_frame_bytes: int) -> list[str]:
    """The broadcasts of a run: as few frames as fit within the frame limit.

    A message's own entries are never split, so a frame holding a single
    message may exceed the limit by the little its ``seq`` and ``origin`` add.
    """
    overhead = len(broadcast_frame(run[-1].seq, origin, "").encode())
    frames: list[str] = []
    chunk: list[FrameResult] = []
    size = overhead
    for result in run:
        grows = len(result.ops_json.encode()) + 1  # its entries and a comma
        if chunk and size + grows > max_frame_bytes:
            frames.append(
                broadcast_frame(chunk[-1].seq, origin, ",".join(r.ops_json for r in chunk))
            )
            chunk, size = [], overhead
        chunk.append(result)
        size += grows
    frames.append(broadcast_frame(chunk[-1].seq, origin, ",".join(r.ops_json for r in chunk)))
    return frames
