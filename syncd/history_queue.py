"""A document's history writes, batched: commits queue their rows without waiting, and
the history lane writes them one batch at a time.

A commit hands its applied entries and lost entries to :meth:`HistoryQueue.add` and
goes on to its acks. While the lane writes one batch, the commits that follow gather
into the next, written as one transaction as soon as the lane is free. Under load the
batches grow by themselves, so the history costs a transaction, a hand-off to its
thread and a wake-up of the event loop per batch rather than per commit: on a machine
with two cores those were most of its cost to the writes. Nothing waits for a batch but
the history's readers and a fold (:meth:`HistoryQueue.written`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from syncd.history import History
from syncd.lanes import Lane

__all__ = ["HistoryQueue"]

logger = logging.getLogger(__name__)


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
        while True:
            self._pump()
            if self._job is None:
                return
            await asyncio.wait([self._job])

    async def close(self) -> None:
        """Write what is queued, then close the history file."""
        await self.written()
        await self._lane.run(self.history.close)

    def _pump(self) -> None:
        """Start writing the next batch if the lane is free and one is waiting."""
        if self._job is not None and not self._job.done():
            return
        if not self._entries and not self._lost:
            self._job = None
            return
        entries, self._entries = self._entries, []
        lost, self._lost = self._lost, []
        self._submit(self._lane.submit(self.history.record, entries, self._seq, lost))

    def _submit(self, job: asyncio.Future[None]) -> None:
        self._job = job
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Future[None]) -> None:
        if not job.cancelled() and (error := job.exception()) is not None:
            logger.error("%s: a history write failed", self.history.path, exc_info=error)
        self._pump()
