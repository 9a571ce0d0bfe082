"""The server's Prometheus metrics (``GET /metrics``), all named ``syncd_*``.

``syncd_build_info{version="..."} 1`` says which release is running (the version
of the installed package, whose one source is ``pyproject.toml``).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from syncd import __version__

__all__ = ["CONTENT_TYPE", "ClusterMetrics", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The *_created series say when a counter was made: noise for this server.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """One server's metrics, in a registry of their own (so servers in one process don't mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info("syncd_build", "The running syncd release.", registry=r).info({"version": __version__})
        self.connections = Gauge("syncd_connections", "Open client connections.", registry=r)
        self.documents = Gauge("syncd_documents", "Documents loaded in memory.", registry=r)
        self.history_bytes = Gauge(
            "syncd_history_bytes", "Disk space of the documents' history files.", registry=r
        )
        self.history_open = Gauge(
            "syncd_history_open",
            "History files open (documents in memory, and those being evicted).",
            registry=r,
        )
        self.heap_trim_pending = Gauge(
            "syncd_heap_trim_pending",
            "1 while memory freed by closed history files waits to be given back.",
            registry=r,
        )
        self.ops_applied = Counter(
            "syncd_ops_applied", "Entries that won their merge and took a seq.", registry=r
        )
        self.ops_ignored = Counter(
            "syncd_ops_ignored", "Entries that lost their merge.", registry=r
        )
        self.commits = Counter("syncd_commits", "Group commits written and fsync'd.", registry=r)
        self.commit_seconds = Histogram(
            "syncd_commit_seconds",
            "Time to write and fsync one group commit.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.queue_drops = Counter(
            "syncd_queue_drops", "Clients dropped for falling too far behind.", registry=r
        )
        self.clock_skew_rejections = Counter(
            "syncd_clock_skew_rejections",
            "Messages rejected for timestamps too far ahead.",
            registry=r,
        )
        self.errors = Counter("syncd_errors", "Error frames sent, by code.", ["code"], registry=r)
        self.store_failures = Counter(
            "syncd_store_failures",
            "Commits that could not be written (each document reloaded from disk).",
            registry=r,
        )
        self.evictions = Counter(
            "syncd_evictions", "Documents dropped from memory for having no clients.", registry=r
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)


class ClusterMetrics:
    """A cluster node's metrics (``--cluster``), in its server's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.connected = Gauge(
            "syncd_cluster_connected", "1 while the node reaches the cluster's Redis.", registry=r
        )
        self.published = Counter(
            "syncd_cluster_entries_published", "Stream entries this node published.", registry=r
        )
        self.applied = Counter(
            "syncd_cluster_entries_applied",
            "Stream entries of other nodes committed here, by publishing node.",
            ["peer"],
            registry=r,
        )
        self.gaps_repaired = Counter(
            "syncd_cluster_gaps_repaired",
            "Repairs by snapshot pulled from peers, by reason "
            "(trimmed, redis_reset, digest_mismatch).",
            ["reason"],
            registry=r,
        )
        self.lag_entries = Gauge(
            "syncd_cluster_peer_lag_entries",
            "Stream entries a node has not applied yet (counted up to 100000), by node.",
            ["peer"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "syncd_cluster_peer_lag_seconds",
            "Age of the oldest stream entry a node has not applied yet, by node.",
            ["peer"],
            registry=r,
        )
        self.live_nodes = Gauge(
            "syncd_cluster_live_nodes", "Nodes whose heartbeat is recent.", registry=r
        )
