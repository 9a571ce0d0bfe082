"""Give the memory freed by closed documents back to the system.

SQLite allocates each history connection's page cache, schema and statements with
``malloc`` in the history lane's thread, so in that thread's glibc arena. Closing the
connection frees them, but glibc keeps an arena's free chunks for reuse unless they
sit at its very top: after thousands of documents were written once and evicted,
the server held tens of MiB it no longer used; so did the core's entries of
documents loaded and freed in the log lanes' threads (5,001 stored documents
loaded at start, then evicted: +33 MiB). ``malloc_trim(0)`` returns the free
pages of every arena to the system (``madvise``). It walks all the arenas, so it runs
once after a burst of closes (:data:`TRIM_DELAY` after the first), in a thread
(ctypes lets go of the GIL during the call), and again after a close that came while
it ran. Where the C library has no ``malloc_trim`` (not glibc), nothing is done.

Before it, a full garbage collection frees what the closed documents left in
reference cycles: the server spaces its full collections far apart
(:mod:`syncd.collector`), and without one 2,000 documents written once and evicted
kept about 70 MiB that the trim could not give back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["TRIM_DELAY", "trim_pending", "trim_soon"]

TRIM_DELAY: Final = 1.0
"""Seconds from a close to the trim that follows it (the closes meanwhile share it)."""


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    found: Callable[[int], int] = trim
    return found


_MALLOC_TRIM: Final = _find_malloc_trim()


class _Trims:
    """An event loop's trims: one due or running at a time, and whether another must follow."""

    def __init__(self) -> None:
        self.pending = False
        self.running = False
        self.again = False


_LOOPS: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Trims]] = (
    weakref.WeakKeyDictionary()
)


def trim_soon() -> None:
    """Trim the heap :data:`TRIM_DELAY` from now, unless a trim is already due (or,
    if one is running, once it is done)."""
    if _MALLOC_TRIM is None:
        return
    loop = asyncio.get_running_loop()
    trims = _LOOPS.setdefault(loop, _Trims())
    if trims.running:
        trims.again = True
    elif not trims.pending:
        trims.pending = True
        loop.call_later(TRIM_DELAY, _trim, loop, trims, _MALLOC_TRIM)


def trim_pending() -> bool:
    """Whether this event loop has a trim due or running (0 or 1, for a metric)."""
    trims = _LOOPS.get(asyncio.get_running_loop())
    return trims is not None and (trims.pending or trims.running)


def _trim(
    loop: asyncio.AbstractEventLoop, trims: _Trims, malloc_trim: Callable[[int], int]
) -> None:
    trims.pending, trims.running = False, True
    gc.collect()
    loop.run_in_executor(None, malloc_trim, 0).add_done_callback(lambda _: _trimmed(trims))


def _trimmed(trims: _Trims) -> None:
    trims.running = False
    if trims.again:
        trims.again = False
        trim_soon()
