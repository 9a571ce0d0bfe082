"""What a node remembers of the cluster in its data folder (``cluster.json``).

The cluster id, the Redis incarnation it last saw, its stream cursor (the id of
the last entry whose document changes are committed here), and for each
document the last local seq known to be published. Written atomically; a
crash loses at most the latest updates, and those are replayed or published
again, which is harmless: merging is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.errors import CorruptFileError
from syncd.files import atomic_write
from syncd.lanes import Lane

__all__ = ["NodeState", "StreamId", "format_id", "parse_id"]

_WRITER = Lane("syncd-cluster-state")
"""Where state files are written: one thread, so that two saves never overlap."""

StreamId = tuple[int, int]
"""A Redis stream entry id, ``MS-SEQ``, as numbers (so that ids compare in order)."""


def parse_id(text: str) -> StreamId:
    """``"1700000000000-3"`` as ``(1700000000000, 3)``."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    """The text form of a stream id."""
    return f"{stream_id[0]}-{stream_id[1]}"


@dataclass
class NodeState:
    """The node's cluster memory; :meth:`save` writes it if it changed."""

    path: Path
    cluster: str = ""
    incarnation: str = ""
    cursor: str = "0-0"
    published: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Per document: (epoch, seq) up to which its local changes are published."""
    _saved: str = ""

    @classmethod
    def load(cls, path: Path) -> NodeState:
        """The state in ``path``, or a new one if there is no such file."""
        state = cls(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return state
        except OSError as error:
            raise CorruptFileError(path, f"unreadable ({error})") from None
        try:
            data: Any = json.loads(text)
            state.cluster = str(data["cluster"])
            state.incarnation = str(data["incarnation"])
            state.cursor = format_id(parse_id(str(data["cursor"])))
            state.published = {
                str(doc): (str(epoch), int(seq)) for doc, (epoch, seq) in data["published"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CorruptFileError(path, f"not a syncd cluster state ({error!r})") from None
        state._saved = text
        return state

    async def save(self) -> None:
        """Write the state atomically, unless it is as last written."""
        text = json.dumps(
            {
                "cluster": self.cluster,
                "incarnation": self.incarnation,
                "cursor": self.cursor,
                "published": {doc: list(mark) for doc, mark in sorted(self.published.items())},
            }
        )
        if text != self._saved:
            await _WRITER.run(atomic_write, self.path, text)
            self._saved = text
