"""What ``syncd serve --cluster…`` is told, and the checks of a Redis URL."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

__all__ = ["AckMode", "ClusterConfig", "check_cluster_url"]

SCHEMES = frozenset({"redis", "rediss", "unix"})


class AckMode(Enum):
    """When a write is acknowledged."""

    LOCAL = "local"
    """Once fsync'd on the node's own disk (published right after, in the background)."""
    REDIS = "redis"
    """Once fsync'd locally and in Redis (``appendonly yes``, ``appendfsync always``)."""


@dataclass(frozen=True)
class ClusterConfig:
    """A node's cluster options."""

    url: str
    """The Redis URL, e.g. ``redis://127.0.0.1:6379/0``."""
    ack: AckMode = AckMode.LOCAL
    advertise: str | None = None
    """The URL peer nodes reach this one at (default ``ws://HOST:PORT/ws``)."""
    retention: int = 100_000
    """The most entries the stream keeps for a node that is behind; past them, it resyncs
    by snapshot."""
    check_interval: float = 30.0
    """Seconds between comparisons of document digests with the other nodes."""
    heartbeat: float = 1.0
    """Seconds between heartbeats (registration, cursor, presence, trimming)."""
    prefix: str = "syncd:"
    """The prefix of every Redis key the cluster uses."""


def check_cluster_url(url: str) -> str:
    """``url`` if it is a Redis URL syncd can use, else ``ValueError`` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://, unix://)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{url!r} names no host (redis://HOST:PORT/DB)")
    try:
        parts.port  # noqa: B018 -- reading it validates it
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"{url!r}: the database must be a number (redis://HOST:PORT/0)")
    return url
