"""Several ``syncd serve`` nodes serving the same documents through Redis (``--cluster``).

Every node is a full replica. A node publishes each local commit to one Redis
stream and applies the other nodes' entries from it through its rooms' commit
pipeline; gaps (a node down, cut off, trimmed past, or a Redis restarted empty)
are repaired by pulling snapshots from peer nodes, and a periodic comparison of
document digests (anti-entropy) catches anything else. See ``docs/cluster.md``.

Importing this package loads no Redis client: :class:`~syncd.cluster.node.ClusterNode`
is imported from :mod:`syncd.cluster.node` by a server started with ``--cluster``.
"""
