"""The Redis side of a cluster: its keys, the checks made before joining, the stream.

Keys (under the prefix, ``syncd:`` by default):

    cluster        the cluster id (set by the first node)
    incarnation    a random id set by the first node to reach this Redis: if it
                   changes or vanishes, Redis lost its data (restarted empty)
    limits         the document limits every node must share
    log            the stream: the local commits' entries {doc, node, origin, ops},
                   one per run of one client's messages
    trimmed        the greatest id trimmed from the stream (Redis 7.0's XINFO does
                   not count trims in max-deleted-entry-id)
    nodes          hash: node id -> its heartbeat (JSON, see :class:`NodeInfo`)
    digest:NODE    hash: document -> that node's digest of it (anti-entropy)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from syncd.cluster.config import AckMode, ClusterConfig
from syncd.cluster.state import StreamId, format_id, parse_id
from syncd.errors import ClusterError

__all__ = ["Appender", "Backplane", "NodeInfo", "StreamEntry", "StreamRead"]

MIN_VERSION = (7, 0)
LUA_IDS = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function greater(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
"""
TAIL_SCRIPT = (
    LUA_IDS
    + """
local trimmed = redis.call('GET', KEYS[2]) or '0-0'
if redis.call('EXISTS', KEYS[1]) == 0 then return {trimmed, '0-0'} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
local deleted = fields['max-deleted-entry-id']
if greater(deleted, trimmed) then trimmed = deleted end
return {trimmed, fields['last-generated-id']}
"""
)
"""The greatest id trimmed away (by a trim or a deletion) and the last id added."""
TRIM_SCRIPT = (
    LUA_IDS
    + """
local removed = '0-0'
if ARGV[1] ~= '0-0' then
  local before = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
  if #before > 0 then removed = before[1][1] end
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local cut = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  removed = cut[#cut][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
local trimmed = redis.call('GET', KEYS[2]) or '0-0'
if greater(removed, trimmed) then redis.call('SET', KEYS[2], removed) end
return removed
"""
)
"""Trims the stream and records the greatest id it removed."""
COUNT_SCRIPT = """
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
"""


@dataclass(frozen=True)
class StreamEntry:
    """One published commit."""

    id: str
    doc: str
    node: str
    origin: str
    ops: str


@dataclass(frozen=True)
class StreamRead:
    """What one read of the stream found."""

    max_deleted: StreamId
    last: StreamId
    entries: list[StreamEntry]


@dataclass(frozen=True)
class NodeInfo:
    """A node's latest heartbeat."""

    url: str
    cursor: str
    time_ms: int
    caught_up_ms: int
    """Wall time when it had published all it accepted and applied all it was sent."""
    presence: dict[str, list[str]] = field(default_factory=dict)
    """Per document, the client nodes connected to it there."""

    def to_json(self) -> str:
        """Its text in the ``nodes`` hash."""
        return json.dumps(
            {
                "url": self.url,
                "cursor": self.cursor,
                "time": self.time_ms,
                "caught_up": self.caught_up_ms,
                "presence": self.presence,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> NodeInfo | None:
        """A heartbeat read back, or ``None`` if it is not one."""
        try:
            data: Any = json.loads(text)
            presence = {str(d): [str(n) for n in nodes] for d, nodes in data["presence"].items()}
            return cls(
                str(data["url"]),
                format_id(parse_id(str(data["cursor"]))),
                int(data["time"]),
                int(data["caught_up"]),
                presence,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class Backplane:
    """One node's connection to the cluster's Redis."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        prefix = config.prefix
        self.keys_cluster = f"{prefix}cluster"
        self.keys_incarnation = f"{prefix}incarnation"
        self.keys_limits = f"{prefix}limits"
        self.keys_log = f"{prefix}log"
        self.keys_nodes = f"{prefix}nodes"
        self.keys_trimmed = f"{prefix}trimmed"
        # No retries inside a command: the callers notice the failure and recover.
        self.redis: Redis = Redis.from_url(
            config.url,
            decode_responses=True,
            socket_timeout=5.0,
            socket_connect_timeout=3.0,
            retry=Retry(NoBackoff(), 0),
        )
        self.appender = Appender(self.redis, self.keys_log)
        self._tail = self.redis.register_script(TAIL_SCRIPT)
        self._count = self.redis.register_script(COUNT_SCRIPT)
        self._trim = self.redis.register_script(TRIM_SCRIPT)

    def digest_key(self, node: str) -> str:
        """The hash of ``node``'s document digests."""
        return f"{self.config.prefix}digest:{node}"

    async def close(self) -> None:
        """Close the connections."""
        await self.appender.close()
        await self.redis.aclose()

    # -- joining ---------------------------------------------------------------------

    async def check(self) -> None:
        """Refuse a Redis this node cannot use, with a message that says how to fix it."""
        url = self.config.url
        try:
            await self.redis.ping()
            info = await self.redis.info("server")
            version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])
            policy = await self._config_value("maxmemory-policy")
            appendonly = await self._config_value("appendonly")
            appendfsync = await self._config_value("appendfsync")
        except (RedisError, OSError) as error:
            raise ClusterError(f"cannot use Redis at {url}: {error}") from None
        if version < MIN_VERSION:
            raise ClusterError(
                f"Redis at {url} is version {info['redis_version']}; syncd needs 7.0 or later"
            )
        if policy != "noeviction":
            raise ClusterError(
                f"Redis at {url} has maxmemory-policy {policy}: it could evict the cluster's "
                "data; set it to noeviction"
            )
        if self.config.ack is AckMode.REDIS and (appendonly, appendfsync) != ("yes", "always"):
            raise ClusterError(
                f"--cluster-ack redis needs Redis at {url} to fsync every write "
                f"(appendonly yes, appendfsync always); it has appendonly {appendonly}, "
                f"appendfsync {appendfsync}"
            )

    async def _config_value(self, name: str) -> str:
        values = await self.redis.config_get(name)
        if name not in values:
            raise ClusterError(f"Redis at {self.config.url} does not tell its {name} (CONFIG GET)")
        return str(values[name])

    async def claim(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless it has a value already; the value it has."""
        await self.redis.set(key, value, nx=True)
        found = await self.redis.get(key)
        return str(found) if found is not None else value

    async def incarnation(self) -> str | None:
        """The id of this Redis's data set, ``None`` if it has none (it lost its data)."""
        found = await self.redis.get(self.keys_incarnation)
        return None if found is None else str(found)

    async def new_incarnation(self) -> str:
        """Give a Redis without one an incarnation id (another node may be first)."""
        return await self.claim(self.keys_incarnation, f"i-{secrets.token_hex(8)}")

    # -- the stream --------------------------------------------------------------------

    async def read_or_wait(self, cursor: str, count: int, block_ms: int) -> StreamRead:
        """The entries after ``cursor`` (at most ``count``), waiting at most ``block_ms`` for
        one if there are none yet, with what tells a gap; in one round trip.

        Redis runs a connection's commands in order, so the gap check runs just after
        the blocking read returns. The greatest id trimmed only grows: if it is not past
        ``cursor`` then, no entry after ``cursor`` was gone when the read ran.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xread({self.keys_log: cursor}, count=count, block=block_ms)
            await self._tail(keys=[self.keys_log, self.keys_trimmed], client=pipe)
            found, (max_deleted, last) = await pipe.execute()
        entries = [_entry(entry_id, fields) for _stream, raw in found for entry_id, fields in raw]
        return StreamRead(parse_id(max_deleted), parse_id(last), entries)

    async def count_after(self, cursor: str, limit: int) -> int:
        """How many entries follow ``cursor`` (counted up to ``limit``)."""
        counted = await self._count(keys=[self.keys_log], args=[cursor, limit])
        return int(counted)

    async def trim(self, min_id: str, max_len: int) -> None:
        """Drop entries before ``min_id``, then all but the last ``max_len``."""
        await self._trim(keys=[self.keys_log, self.keys_trimmed], args=[min_id, max_len])

    # -- nodes ---------------------------------------------------------------------------

    async def heartbeat(self, node: str, info: NodeInfo) -> None:
        """Register or refresh this node."""
        await self.redis.hset(self.keys_nodes, node, info.to_json())

    async def nodes(self) -> dict[str, NodeInfo]:
        """Every registered node's latest heartbeat."""
        raw = await self.redis.hgetall(self.keys_nodes)
        found = {}
        for node, text in raw.items():
            if (info := NodeInfo.from_json(str(text))) is not None:
                found[str(node)] = info
        return found

    async def post_digests(self, node: str, digests: dict[str, int]) -> None:
        """Publish this node's document digests."""
        if digests:
            items = [part for doc, value in digests.items() for part in (doc, format(value, "x"))]
            await self.redis.hset(self.digest_key(node), items=items)

    async def digests(self, node: str) -> dict[str, int]:
        """Another node's document digests."""
        raw = await self.redis.hgetall(self.digest_key(node))
        found = {}
        for doc, text in raw.items():
            try:
                found[str(doc)] = int(text, 16)
            except ValueError:
                continue
        return found


class Appender:
    """Appends entries to the stream on a connection of its own, without waiting for
    the replies to the appends written before: Redis runs a connection's commands in
    the order they came, so the stream gets the entries in the order written, and a
    write is one hop from its merge however long Redis takes to answer the last one."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.key = key
        # Its own, not the pool's: replies still due on it must never reach another user.
        pool = redis.connection_pool
        self._connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        """Per write, its appends and the future of their replies, oldest first."""
        self._reader: asyncio.Task[None] | None = None

    async def append(self, messages: list[tuple[str, str, str, str]]) -> asyncio.Future[None]:
        """Write the appends of (doc, node, origin, ops) entries, behind those written
        before; the future is done once Redis answered them all, and fails with
        ``RedisError`` if it did not (the connection was lost: what was written may be
        in the stream or not)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not messages:
            if self._waiting:
                self._waiting.append((0, done))  # answered in turn, after those before
            else:
                done.set_result(None)
            return done
        connection = self._connection
        commands = [
            ("XADD", self.key, "*", "doc", doc, "node", node, "origin", origin, "ops", ops)
            for doc, node, origin, ops in messages
        ]
        try:
            # Connects first if the connection was lost.
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
        except BaseException as error:
            await self._fail(error)
            raise
        self._waiting.append((len(commands), done))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="stream appends")
        return done

    async def close(self) -> None:
        """Stop reading replies (the appends not answered fail) and disconnect."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._fail(RedisConnectionError("closed"))

    async def _read(self) -> None:
        """Take the replies in order, resolving each write's future once all of it is in."""
        try:
            while self._waiting:
                count, done = self._waiting[0]
                for _ in range(count):
                    await self._connection.read_response()
                self._waiting.popleft()
                if not done.done():
                    done.set_result(None)
        except BaseException as error:
            await self._fail(error)
            if not isinstance(error, Exception):
                raise

    async def _fail(self, error: BaseException) -> None:
        """The connection is lost (or closed): every write waiting fails, and the next
        append connects again."""
        waiting, self._waiting = self._waiting, deque()
        failure = error if isinstance(error, RedisError) else RedisConnectionError(str(error))
        for _count, done in waiting:
            if not done.done():
                done.set_exception(failure)
        await self._connection.disconnect()


def _entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    return StreamEntry(
        entry_id,
        fields.get("doc", ""),
        fields.get("node", ""),
        fields.get("origin", ""),
        fields.get("ops", ""),
    )
