"""Repairing what the stream did not bring: snapshots pulled from peer nodes.

A node pulls a document from a peer over the ordinary WebSocket protocol (a
``hello`` without ``since`` answers with every entry, tombstones included) and
merges it through the room's commit pipeline like any replicated write. It does
so for every document after a gap (entries trimmed before it read them, or a
Redis that lost its data), and for one document when anti-entropy finds its
digest differing from a peer's at two checks in a row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from syncd.errors import RepairError
from syncd.protocol import valid_doc_name
from syncd.room import Room

__all__ = ["AntiEntropy", "Repairer"]

logger = logging.getLogger(__name__)

PULL_TIMEOUT = 30.0
"""Seconds a peer has to send a document's snapshot."""


class Repairer:
    """Pulls documents from peer nodes and merges them."""

    def __init__(
        self,
        node: str,
        token: str | None,
        open_room: Callable[[str], Awaitable[Room]],
        max_ops: int,
        max_frame_bytes: int,
    ) -> None:
        self.node = node
        self.token = token
        self.open_room = open_room
        self.max_ops = max_ops
        self.max_frame_bytes = max_frame_bytes

    async def pull(self, peer: str, url: str, doc: str) -> int:
        """Merge ``peer``'s copy of ``doc`` into this node's; how many entries it sent."""
        if not valid_doc_name(doc):
            raise RepairError(f"{peer} lists an invalid document name {doc!r}")
        entries = await self._snapshot(url, doc)
        room = await self.open_room(doc)
        limit = max(self.max_ops, 1)
        for start in range(0, len(entries), limit):
            outcome = await room.replicate(peer, json.dumps(entries[start : start + limit]))
            if (code := await outcome) is not None:
                raise RepairError(f"document {doc}: {peer}'s snapshot was refused here ({code})")
        return len(entries)

    async def _snapshot(self, url: str, doc: str) -> list[Any]:
        hello: dict[str, Any] = {"type": "hello", "v": 1, "doc": doc, "node": self.node}
        if self.token is not None:
            hello["token"] = self.token
        entries: list[Any] = []
        try:
            async with asyncio.timeout(PULL_TIMEOUT):
                async with connect(
                    url, compression=None, max_size=2 * self.max_frame_bytes, open_timeout=5
                ) as connection:
                    await connection.send(json.dumps(hello))
                    async for message in connection:
                        frame = json.loads(message)
                        kind = frame.get("type") if isinstance(frame, dict) else None
                        if kind == "entries":
                            entries.extend(frame["entries"])
                        elif kind == "synced":
                            return entries
                        elif kind == "error":
                            raise RepairError(f"{url} refused {doc}: {frame.get('message')}")
        except (OSError, TimeoutError, WebSocketException, ValueError, KeyError) as error:
            raise RepairError(f"cannot pull {doc} from {url}: {error!r}") from None
        raise RepairError(f"{url} closed before sending all of {doc}")


class AntiEntropy:
    """Compares this node's document digests with each peer's; a document that differs
    at two checks in a row (not merely in flight) is due for a pull."""

    def __init__(self) -> None:
        self._seen: Counter[tuple[str, str]] = Counter()

    def due(self, mine: dict[str, int], theirs: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
        """The (peer, document) pairs to pull, given the digests of this node and its peers."""
        due = []
        seen: Counter[tuple[str, str]] = Counter()
        for peer, digests in theirs.items():
            for doc in digests.keys() | mine.keys():
                if digests.get(doc, 0) != mine.get(doc, 0):
                    seen[peer, doc] = self._seen[peer, doc] + 1
                    if seen[peer, doc] >= 2:
                        due.append((peer, doc))
        self._seen = seen
        return due
