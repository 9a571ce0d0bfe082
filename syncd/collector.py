"""Python's cyclic garbage collector, kept out of the tail of a served write.

A full collection walks every object the process holds: after start-up that is
every module, class and function of syncd, websockets, redis-py and the standard
library, and one such walk paused a cluster node for 20–50 ms in the middle of a
paced run (``docs/benchmarks.md``, "Session 6"), holding back every write that
arrived meanwhile. What start-up created lives as long as the process, so once
the server is up it is collected once and frozen (:func:`gc.freeze`): later
collections walk only what was created since, the documents' entries being held
by the core, outside Python's heap.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_start_up"]

logger = logging.getLogger(__name__)


def freeze_start_up() -> None:
    """Collect what start-up left behind, then leave the rest out of every later
    collection: call once, when the server is ready to serve."""
    gc.collect()
    gc.freeze()
    logger.debug("garbage collector: %d objects frozen after start-up", gc.get_freeze_count())
