"""Threads for a document's blocking file work: its log writes always run in one
thread, its folds in another, its history (:mod:`syncd.history`) in a third.

``asyncio.to_thread`` hands each job to whichever idle thread of the default pool
wakes first, so one document's appends wander between threads, in an order that
depends on the machine's load. A lane is a single thread: a document's appends,
loads and fold preparations run in its log lane, in order, and its fold writes in
its fold lane, so an append and a fold can still overlap. Documents share a fixed
number of lanes (chosen by a hash of the name), which bounds the threads however
many documents are open. Fault injection that counts a thread's calls (the
crash-point tests' ``strace -e inject=…:when=N``) then hits the same call whatever
the load.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

__all__ = ["Lane", "fold_lane", "history_lane", "log_lane"]

P = ParamSpec("P")
T = TypeVar("T")

LOG_LANES: Final = 8
FOLD_LANES: Final = 4
HISTORY_LANES: Final = 4


class Lane:
    """One thread that runs blocking calls in the order they were given."""

    def __init__(self, name: str) -> None:
        # The thread starts with the first call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` in this lane's thread."""
        return await self.submit(call, *args, **kwargs)

    def submit(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        """Queue ``call(*args, **kwargs)`` in this lane's thread now, behind the calls
        already given; its future."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))


_LOG: Final = [Lane(f"syncd-log-{n}") for n in range(LOG_LANES)]
_FOLD: Final = [Lane(f"syncd-fold-{n}") for n in range(FOLD_LANES)]
_HISTORY: Final = [Lane(f"syncd-history-{n}") for n in range(HISTORY_LANES)]


def _pick(lanes: list[Lane], doc: str) -> Lane:
    return lanes[zlib.crc32(doc.encode("utf-8")) % len(lanes)]


def log_lane(doc: str) -> Lane:
    """The lane of ``doc``'s loads, appends and fold preparations."""
    return _pick(_LOG, doc)


def fold_lane(doc: str) -> Lane:
    """The lane of ``doc``'s fold writes."""
    return _pick(_FOLD, doc)


def history_lane(doc: str) -> Lane:
    """The lane of ``doc``'s history writes: they never delay its next append."""
    return _pick(_HISTORY, doc)
