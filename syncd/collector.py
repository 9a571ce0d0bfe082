"""Python's cyclic garbage collector, kept out of the tail of a served write and off
the path of a crowd joining.

A full collection walks every object the process holds: after start-up that is
every module, class and function of syncd, websockets, redis-py and the standard
library, and one such walk paused a cluster node for 20–50 ms in the middle of a
paced run (``docs/benchmarks.md``, "Session 6"), holding back every write that
arrived meanwhile. What start-up created lives as long as the process, so once
the server is up it is collected once and frozen (:func:`gc.freeze`): later
collections walk only what was created since, the documents' entries being held
by the core, outside Python's heap.

What is created since is mostly connections, a few hundred objects each. While
10,000 clients arrive, Python's default spacing (a full collection after every 10
collections of the middle generation, about every 70,000 objects kept) walked the
growing crowd every second or so, up to 0.4 s a walk and about a sixth of the
server's time, and found no garbage: a connection is freed by its reference counts.
Full collections are spaced ten times further apart
(:data:`MIDDLE_COLLECTIONS_PER_FULL`); Python's own rule (none until the objects
kept since the last one are a quarter of those it kept) still spaces them further
on a large heap.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["MIDDLE_COLLECTIONS_PER_FULL", "settle_after_start_up"]

logger = logging.getLogger(__name__)

MIDDLE_COLLECTIONS_PER_FULL = 100
"""Collections of the middle generation between two full collections (Python's: 10)."""


def settle_after_start_up() -> None:
    """Collect what start-up left behind, leave the rest out of every later collection,
    and space out the full collections: call once, when the server is ready to serve."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, MIDDLE_COLLECTIONS_PER_FULL)
    logger.debug("garbage collector: %d objects frozen after start-up", gc.get_freeze_count())
