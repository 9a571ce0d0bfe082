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

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.typing import EncodableT

from syncd.cluster.config import AckMode, ClusterConfig
from syncd.cluster.state import StreamId, format_id, parse_id
from syncd.errors import ClusterError

__all__ = ["Backplane", "NodeInfo", "StreamEntry", "StreamRead"]

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
        self._publishing = _Link(self.redis)
        self._reading = _Link(self.redis)
        self._tail = self.redis.register_script(TAIL_SCRIPT)
        self._count = self.redis.register_script(COUNT_SCRIPT)
        self._trim = self.redis.register_script(TRIM_SCRIPT)

    def digest_key(self, node: str) -> str:
        """The hash of ``node``'s document digests."""
        return f"{self.config.prefix}digest:{node}"

    async def close(self) -> None:
        """Close the connections."""
        await self._publishing.close()
        await self._reading.close()
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
            # The stream's links open now rather than at the first write, which would wait.
            await self._publishing.run(("PING",))
            await self._reading.run(("PING",))
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

    async def publish(self, messages: list[tuple[str, str, str, str]]) -> None:
        """Append (doc, node, origin, ops) entries in order, in one round trip."""
        await self._publishing.run(
            *(
                ("XADD", self.keys_log, "*", "doc", doc, "node", node, "origin", origin, "ops", ops)
                for doc, node, origin, ops in messages
            )
        )

    async def read_or_wait(self, cursor: str, count: int, block_ms: int) -> StreamRead:
        """The entries after ``cursor`` (at most ``count``), waiting at most ``block_ms`` for
        one if there are none yet, with what tells a gap; in one round trip.

        Redis runs a connection's commands in order, so the gap check runs just after
        the blocking read returns. The greatest id trimmed only grows: if it is not past
        ``cursor`` then, no entry after ``cursor`` was gone when the read ran.
        """
        commands = (
            ("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", self.keys_log, cursor),
            ("EVALSHA", self._tail.sha, 2, self.keys_log, self.keys_trimmed),
        )
        try:
            found, (max_deleted, last) = await self._reading.run(*commands)
        except NoScriptError:
            # Redis does not have the script (a new or restarted Redis): load it, read again.
            await self.redis.script_load(TAIL_SCRIPT)
            found, (max_deleted, last) = await self._reading.run(*commands)
        # XREAD's reply: a map (RESP3) or pairs (RESP2) of stream -> [id, [field, value…]].
        streams = found.values() if isinstance(found, dict) else [raw for _name, raw in found or []]
        entries = [_entry(entry_id, fields) for raw in streams for entry_id, fields in raw]
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


class _Link:
    """A connection of its own to Redis for one path run at every write (publishing,
    reading the stream): its commands are written at once and their replies read back
    raw, without the pool's and the pipeline's work around each round trip, which cost
    a cluster node about as much CPU as the write itself. A failure closes the
    connection (a reply may be left unread); the next use opens it again."""

    def __init__(self, redis: Redis) -> None:
        pool = redis.connection_pool
        self._connection = pool.connection_class(**pool.connection_kwargs)

    async def run(self, *commands: tuple[EncodableT, ...]) -> list[Any]:
        """Each command's reply, in order; the first error reply is raised."""
        connection = self._connection
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            return [await connection.read_response() for _ in commands]
        except BaseException:
            await connection.disconnect(nowait=True)
            raise

    async def close(self) -> None:
        """Close the connection."""
        await self._connection.disconnect()


def _entry(entry_id: str, fields: list[str]) -> StreamEntry:
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return StreamEntry(
        entry_id,
        values.get("doc", ""),
        values.get("node", ""),
        values.get("origin", ""),
        values.get("ops", ""),
    )
