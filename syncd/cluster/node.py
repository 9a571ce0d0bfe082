"""A server's membership of a cluster: joining it, and the tasks that keep it in step.

:class:`ClusterNode` is the :class:`~syncd.room.Replication` of every room. It
checks Redis before the server listens (refusing one it cannot use), then runs:

- the publisher (:mod:`syncd.cluster.publisher`) and the replicator
  (:mod:`syncd.cluster.replicator`);
- a heartbeat: registers the node (its URL, stream cursor, catch-up time and
  clients), reads the others' (presence, lag metrics, the tombstone purge
  floor, the web origins of their URLs), trims the stream, saves the node's
  state, and notices a Redis that lost its data;
- anti-entropy: posts the node's document digests and pulls a document from a
  peer whose digest differs twice in a row.

While Redis is unreachable the node keeps serving its own clients; the tasks
wait for it to be back, then catch up.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis import exceptions as redis_errors
from redis.exceptions import RedisError

from syncd.cluster.backplane import Backplane, NodeInfo
from syncd.cluster.config import ClusterConfig
from syncd.cluster.origins import origins_of, page_origin
from syncd.cluster.publisher import Publisher
from syncd.cluster.repair import AntiEntropy, Repairer
from syncd.cluster.replicator import Replicator
from syncd.cluster.state import NodeState, format_id, parse_id
from syncd.crdt import FrameResult, wall_clock_ms
from syncd.errors import ClusterError, RepairError
from syncd.metrics import ClusterMetrics, Metrics
from syncd.room import Room, RoomSettings
from syncd.store import DataDirectory

__all__ = ["ClusterNode", "Host"]

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 0.5
LIVE_HEARTBEATS = 5
"""A node is live while its last heartbeat is younger than this many heartbeats (or 5 s)."""
LAG_COUNT_LIMIT = 100_000


class Host(Protocol):
    """What the cluster needs of its server."""

    @property
    def rooms(self) -> dict[str, Room]:
        """The documents loaded in memory."""
        ...

    async def room(self, name: str) -> Room:
        """The room of a document, loaded if needed."""
        ...


class ClusterNode:
    """One server's part in a cluster."""

    def __init__(
        self,
        config: ClusterConfig,
        host: Host,
        data: DataDirectory,
        settings: RoomSettings,
        max_frame_bytes: int,
        token: str | None,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.host = host
        self.data = data
        self.settings = settings
        self.max_frame_bytes = max_frame_bytes
        self.node = data.node
        self.metrics = ClusterMetrics(metrics.registry)
        self.backplane = Backplane(config)
        self.state = NodeState.load(data.root / "cluster.json")
        self.url = ""
        self.connected = False
        self._back = asyncio.Event()
        self._reset_due = False
        self._purge_floor_ms = 0
        self._remote: dict[str, dict[str, list[str]]] = {}
        self._digests: dict[str, int] = {}
        self._caught_up_ms = 0
        self.origins: frozenset[str] = frozenset()
        """The web origins of the registered nodes' URLs: their pages may use this node."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.publisher = Publisher(
            self.backplane,
            self.node,
            config.ack,
            self.state,
            host.room,
            self.metrics,
            self._lost,
        )
        self.replicator = Replicator(
            self.backplane, self.node, self.state, host.room, self.metrics, self._repair_all
        )
        self.repairer = Repairer(self.node, token, host.room, settings.max_ops, max_frame_bytes)
        self.anti_entropy = AntiEntropy()

    # -- Replication ------------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        """The cluster's id."""
        return self.state.cluster

    def merged(
        self, room: Room, local: list[tuple[str, FrameResult]]
    ) -> asyncio.Future[bool] | None:
        """Publish a merge's local writes now (see :meth:`Publisher.merged`)."""
        return self.publisher.merged(room, local)

    def committed(self, room: Room) -> None:
        """An append of ``room`` is fsync'd (see :meth:`Publisher.committed`)."""
        self.publisher.committed(room)

    def allows_origin(self, origin: str) -> bool:
        """Whether a browser's ``Origin`` is that of a registered node's pages."""
        page = page_origin(origin)
        return page is not None and page in self.origins

    def purge_floor_ms(self) -> int:
        """The oldest catch-up time of the registered nodes (0 until known)."""
        return self._purge_floor_ms

    def remote_peers(self, doc: str) -> set[str]:
        """The client nodes on ``doc`` through the other live nodes."""
        return {client for docs in self._remote.values() for client in docs.get(doc, [])}

    # -- joining and leaving ------------------------------------------------------------

    async def join(self) -> None:
        """Check Redis and agree with it on the cluster id and the limits; before serving.

        ``ClusterError`` says why this node cannot join.
        """
        await self.backplane.check()
        limits = (
            f"max-value-bytes {self.settings.max_value_bytes}, max-ops {self.settings.max_ops}, "
            f"max-frame-bytes {self.max_frame_bytes}"
        )
        try:
            theirs = await self.backplane.claim(self.backplane.keys_limits, limits)
            cluster = self.state.cluster or f"c-{secrets.token_hex(6)}"
            found = await self.backplane.claim(self.backplane.keys_cluster, cluster)
            incarnation = await self.backplane.incarnation()
            if incarnation is None:
                incarnation = await self.backplane.new_incarnation()
        except RedisError as error:
            raise ClusterError(f"cannot use Redis at {self.config.url}: {error}") from None
        if theirs != limits:
            raise ClusterError(
                f"this node's limits ({limits}) differ from the cluster's ({theirs}): start it "
                "with the same --max-value-bytes, --max-ops and --max-frame-bytes as the others"
            )
        if self.state.cluster and found != self.state.cluster:
            raise ClusterError(
                f"the data folder {self.data.root} belongs to cluster {self.state.cluster}, but "
                f"Redis at {self.config.url} serves cluster {found}"
            )
        self.state.cluster = found
        if self.state.incarnation and incarnation != self.state.incarnation:
            self._reset_due = True
        self.state.incarnation = incarnation
        await self.state.save()
        self._set_connected(True)

    def start(self, url: str) -> None:
        """Start the cluster's tasks; ``url`` is where clients reach this server."""
        self.url = self.config.advertise or url
        # What a previous run acknowledged but may not have published.
        self.publisher.mark_dirty(
            [name for name, room in self.host.rooms.items() if self._unpublished(room)]
        )
        if self.data.unclean_start:
            # It published writes at their merge: the crash may have lost some here.
            logger.warning(
                "cluster: the last run did not stop cleanly: reading the stream from its "
                "start, this node's own entries included"
            )
            self.replicator.replay_own()
        self._tasks = [
            asyncio.create_task(self.publisher.run(), name="cluster publisher"),
            asyncio.create_task(self._replicate(), name="cluster replicator"),
            asyncio.create_task(self._beat(), name="cluster heartbeat"),
            asyncio.create_task(self._check_digests(), name="cluster anti-entropy"),
        ]
        logger.info("cluster %s: node %s at %s", self.cluster_id, self.node, self.url)

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish what is queued (for at most ``timeout`` s), stop the tasks, save the state."""
        try:
            async with asyncio.timeout(timeout):
                while self.connected and not self.publisher.idle:
                    await asyncio.sleep(0.02)  # the queue has no event to await: poll briefly
        except TimeoutError:
            logger.warning("cluster: stopping with writes unpublished; published at next start")
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # Bounded: a cancellation that lands inside a Redis command may be absorbed by it;
        # the loops then end at their next turn, seeing _stopping.
        await asyncio.wait(self._tasks, timeout=timeout)
        self.publisher.close()
        self.replicator.close()
        await self.state.save()
        await self.backplane.close()

    def _unpublished(self, room: Room) -> bool:
        epoch, seq = self.state.published.get(room.name, ("", 0))
        return room.document.seq > 0 and (epoch != room.store.epoch or seq < room.document.seq)

    # -- the connection --------------------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.connected.set(1 if connected else 0)
        if connected:
            self._back.set()
        else:
            self._back.clear()

    def _lost(self, error: RedisError | OSError) -> None:
        outage = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
        if not isinstance(error, outage):
            # Redis answered, with an error: not an outage; the step is tried again.
            logger.error("cluster: Redis at %s refused a command: %s", self.config.url, error)
            return
        if self.connected:
            logger.warning(
                "cluster: lost Redis at %s (%s); serving local clients, retrying",
                self.config.url,
                error,
            )
            self._set_connected(False)
            self._update_presence({})  # the other nodes' clients are unknown until back

    async def _online(self) -> None:
        """Wait until Redis answers again, then catch up what the outage held back."""
        while not self.connected and not self._stopping:
            await asyncio.sleep(RECONNECT_SECONDS)
            try:
                incarnation = await self.backplane.incarnation()
                if incarnation is None:
                    incarnation = await self.backplane.new_incarnation()
                await self.backplane.claim(self.backplane.keys_cluster, self.state.cluster)
            except (RedisError, OSError):
                continue
            if incarnation != self.state.incarnation:
                self._reset_due = True
                self.state.incarnation = incarnation
            logger.info("cluster: Redis at %s is back", self.config.url)
            self._set_connected(True)
            self.publisher.wake()

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run one step of a loop; a lost connection makes it wait for Redis."""
        try:
            await step()
        except (RedisError, OSError) as error:
            self._lost(error)
            if self.connected:
                await asyncio.sleep(RECONNECT_SECONDS)
        if not self.connected:
            await self._online()

    # -- the loops ---------------------------------------------------------------------------

    async def _replicate(self) -> None:
        while not self._stopping:
            await self._guarded(self._replicate_step)

    async def _replicate_step(self) -> None:
        if self._reset_due:
            await self._reset()
        await self.replicator.step()

    async def _reset(self) -> None:
        """Redis lost its data: read its new stream from the start, publish everything
        again, and pull every document from the peers."""
        logger.warning("cluster: Redis at %s lost its data; resynchronizing", self.config.url)
        self._reset_due = False
        self.replicator.rewind("0-0")
        self.state.published.clear()
        self.publisher.mark_dirty(sorted(self.host.rooms.keys() | set(self.data.document_names())))
        await self.backplane.claim(self.backplane.keys_cluster, self.state.cluster)
        await self._heartbeat()
        await self._repair_all("redis_reset")

    async def _repair_all(self, reason: str) -> None:
        """Pull every document from every live peer."""
        peers = await self._live_peers()
        mine = set(self.data.document_names()) | self.host.rooms.keys()
        for peer, info in sorted(peers.items()):
            docs = mine | (await self.backplane.digests(peer)).keys()
            for doc in sorted(docs):
                await self._pull(peer, info.url, doc)
        self.metrics.gaps_repaired.labels(reason).inc()

    async def _pull(self, peer: str, url: str, doc: str) -> None:
        try:
            count = await self.repairer.pull(peer, url, doc)
        except RepairError as error:
            logger.warning("cluster: %s", error)
        else:
            logger.info("cluster: document %s: merged %d entries from %s", doc, count, peer)

    async def _live_peers(self) -> dict[str, NodeInfo]:
        nodes = await self.backplane.nodes()
        limit = max(LIVE_HEARTBEATS * self.config.heartbeat, 5.0) * 1000
        now = wall_clock_ms()
        live = {n: info for n, info in nodes.items() if now - info.time_ms < limit}
        self.metrics.live_nodes.set(len(live) + (self.node not in live))
        return {n: info for n, info in live.items() if n != self.node}

    async def _beat(self) -> None:
        while not self._stopping:
            await self._guarded(self._heartbeat)
            await asyncio.sleep(self.config.heartbeat)

    async def _heartbeat(self) -> None:
        """Register, read the others, trim the stream, save the state."""
        if self.publisher.idle:
            self._caught_up_ms = max(self._caught_up_ms, self.replicator.caught_up_ms)
        presence = {name: room.client_nodes for name, room in self.host.rooms.items()}
        info = NodeInfo(
            self.url,
            self.state.cursor,
            wall_clock_ms(),
            self._caught_up_ms,
            {doc: nodes for doc, nodes in presence.items() if nodes},
        )
        await self.backplane.heartbeat(self.node, info)
        if await self.backplane.incarnation() != self.state.incarnation:
            self._reset_due = True
        nodes = await self.backplane.nodes()
        self.origins = origins_of(info.url for info in nodes.values())
        self._purge_floor_ms = min(n.caught_up_ms for n in nodes.values()) if nodes else 0
        self._update_presence(await self._live_peers())
        await self._measure_lag(nodes)
        cursors = [parse_id(n.cursor) for n in nodes.values()]
        await self.backplane.trim(format_id(min(cursors)), self.config.retention)
        await self.state.save()

    def _update_presence(self, peers: dict[str, NodeInfo]) -> None:
        before = {doc: self.remote_peers(doc) for docs in self._remote.values() for doc in docs}
        self._remote = {node: info.presence for node, info in peers.items()}
        after = {doc: self.remote_peers(doc) for docs in self._remote.values() for doc in docs}
        for doc in before.keys() | after.keys():
            joined = sorted(after.get(doc, set()) - before.get(doc, set()))
            left = sorted(before.get(doc, set()) - after.get(doc, set()))
            room = self.host.rooms.get(doc)
            if room is not None and (joined or left):
                room.remote_presence(joined, left)

    async def _measure_lag(self, nodes: dict[str, NodeInfo]) -> None:
        last = parse_id(self.replicator.stream_last)
        for node, info in nodes.items():
            cursor = parse_id(info.cursor)
            behind = cursor < last
            entries = (
                await self.backplane.count_after(info.cursor, LAG_COUNT_LIMIT) if behind else 0
            )
            self.metrics.lag_entries.labels(node).set(entries)
            self.metrics.lag_seconds.labels(node).set(
                max(last[0] - cursor[0], 0) / 1000 if behind and cursor[0] else 0
            )

    async def _check_digests(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.check_interval)
            await self._guarded(self._compare_digests)

    async def _compare_digests(self) -> None:
        for name, room in self.host.rooms.items():
            self._digests[name] = room.document.digest
        await self.backplane.post_digests(self.node, self._digests)
        peers = await self._live_peers()
        theirs = {peer: await self.backplane.digests(peer) for peer in peers}
        for peer, doc in self.anti_entropy.due(self._digests, theirs):
            logger.warning("cluster: document %s differs from %s's copy; pulling it", doc, peer)
            await self._pull(peer, peers[peer].url, doc)
            self.metrics.gaps_repaired.labels("digest_mismatch").inc()
