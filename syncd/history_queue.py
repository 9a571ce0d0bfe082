"""A document's history writes, batched: commits queue their rows without waiting, and
the history lane writes them one batch at a time, at most one every
:data:`BATCH_INTERVAL` seconds.

A commit hands its applied entries and lost entries to :meth:`HistoryQueue.add` and
goes on to its acks. The commits of an interval, and those that come while the lane
writes a batch, gather into the next batch, written as one SQLite transaction. So the
history costs a transaction, a hand-off to its thread and a wake-up of the event loop
per batch rather than per commit. That matters more than it seems: each transaction
writes whole pages to the WAL, and a WAL that grows fast is checkpointed often, each
checkpoint an fsync that the log's fsync (which every ack waits for) queues behind.

Nothing waits for a batch but the history's readers and a fold
(:meth:`HistoryQueue.written`): while one waits, the rows go without delay. A crash
loses nothing: the history catches up with the log when it next opens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from syncd.history import History
from syncd.lanes import Lane

__all__ = ["HistoryQueue"]

logger = logging.getLogger(__name__)

BATCH_INTERVAL: Final = 0.1
"""Seconds from the start of one batch to the next, unless a reader or a fold waits."""


class HistoryQueue:
    """The rows of a document's commits on their way to its :class:`History`, in order."""

    def __init__(self, history: History, lane: Lane) -> None:
        self.history = history
        self._lane = lane
        self._entries: list[str] = []
        self._lost: list[tuple[str, str]] = []
        self._seq = 0
        self._job: asyncio.Future[None] | None = None
        """The call running in the lane (the opening, or a batch), until it is done and
        nothing waits for the next."""
        self._last_batch = -BATCH_INTERVAL
        """When (``loop.time()``) the last batch was handed to the lane."""
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = 0
        """How many wait in :meth:`written`: the rows go at once."""

    def start(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call(*args)`` (the history's opening) in the lane before any batch."""
        assert self._job is None, "start() comes first"
        self._submit(self._lane.submit(call, *args))

    def add(self, entries: str, seq: int, lost: list[tuple[str, str]]) -> None:
        """Queue a commit's applied ``entries`` (comma-separated wire form, empty if none
        applied), the document's ``seq`` after it, and its ``lost`` entries."""
        if entries:
            self._entries.append(entries)
            self._seq = seq
        self._lost.extend(lost)
        self._pump()

    async def written(self) -> None:
        """Wait until every commit queued so far is written (or has failed, logged)."""
        self._waiting += 1
        try:
            while True:
                self._pump()
                if self._job is None:
                    return
                await asyncio.wait([self._job])
        finally:
            self._waiting -= 1

    async def close(self) -> None:
        """Write what is queued, then close the history file."""
        await self.written()
        await self._lane.run(self.history.close)

    def _pump(self) -> None:
        """Start writing the next batch if the lane is free, one is waiting and it is due."""
        if self._job is not None and not self._job.done():
            return  # its end pumps again
        if not self._entries and not self._lost:
            self._job = None
            return
        loop = asyncio.get_running_loop()
        due = self._last_batch + BATCH_INTERVAL
        if not self._waiting and loop.time() < due:
            if self._timer is None:
                self._timer = loop.call_at(due, self._on_time)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_batch = loop.time()
        entries, self._entries = self._entries, []
        lost, self._lost = self._lost, []
        self._submit(self._lane.submit(self.history.record, entries, self._seq, lost))

    def _on_time(self) -> None:
        self._timer = None
        self._pump()

    def _submit(self, job: asyncio.Future[None]) -> None:
        self._job = job
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Future[None]) -> None:
        if not job.cancelled() and (error := job.exception()) is not None:
            logger.error("%s: a history write failed", self.history.path, exc_info=error)
        self._pump()
