"""Several ``syncd serve`` nodes serving the same documents through Redis (``--cluster``).

Every node is a full replica. A node publishes each local commit to one Redis
stream and applies the other nodes' entries from it through its rooms' commit
pipeline; gaps (a node down, cut off, trimmed past, or a Redis restarted empty)
are repaired by pulling snapshots from peer nodes, and a periodic comparison of
document digests (anti-entropy) catches anything else. See ``docs/cluster.md``.
"""

from syncd.cluster.config import AckMode, ClusterConfig, ClusterError, check_cluster_url
from syncd.cluster.node import ClusterNode

__all__ = ["AckMode", "ClusterConfig", "ClusterError", "ClusterNode", "check_cluster_url"]
