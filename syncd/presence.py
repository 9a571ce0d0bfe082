"""Who is on one document, and what its clients have been told of it (contract §4, §6).

Joins and leaves are not announced one by one, which would cost every join a
frame to every client (10,000 joins: 50 million frames). A change only marks
its node; at the next presence tick :meth:`Roster.announce` returns one
:class:`Announcement` of the tick's changes, and the room sends each client one
frame of it. Presence counts nodes, not connections: a node's second connection
changes nothing, and neither does a node that leaves and comes back within a
tick (a reconnect). Clients on other nodes of a cluster count like local ones.

What each client must be told, so that its peers are right once it has the
tick's frame:

- a client that was there when the tick began knows the *announced* nodes: it
  gets the net change, the nodes present now that were not announced
  (``joined``) and the announced ones gone now (``left``);
- a client that joined during the tick got the peers of that moment in its
  ``welcome`` (:meth:`Roster.peers`): it gets where each node that changed
  since then stands now, its own node left out (a client is never told about
  itself). Every change bumps :attr:`Roster.version`; a client keeps the version
  of its welcome, and the nodes changed after it are a suffix of the tick's
  changes in the order they happened, so its frame is a slice, not a new list.

The welcome's peers are the announced array, encoded once per tick, with this
tick's leavers sliced out and joiners appended: a join does not encode or sort
the list, nor copy it: the welcome writes the two arrays' bytes one after the
other (:meth:`~syncd.protocol.NodeArray.pieces`).

No I/O and no clock: the room decides when the ticks fall.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from syncd.protocol import NodeArray, presence_frame

__all__ = ["Announcement", "Roster"]


@dataclass(frozen=True)
class Announcement:
    """The presence changes of one tick."""

    joined: NodeArray
    """Present now, not announced before."""
    left: NodeArray
    """Announced before, gone now."""
    here: NodeArray
    """The nodes that changed during the tick and are present now, by their last change."""
    here_versions: list[int]
    """The version of each of :attr:`here`'s last change."""
    gone: NodeArray
    """The nodes that changed during the tick and are gone now, by their last change."""
    gone_versions: list[int]
    """The version of each of :attr:`gone`'s last change."""
    since: int
    """The roster's version when the tick began."""
    frame: str | None = field(init=False)
    """The frame for a client that was there when the tick began (``None``: no net change)."""

    def __post_init__(self) -> None:
        frame = presence_frame(joined=self.joined, left=self.left) if self.net_change else None
        object.__setattr__(self, "frame", frame)

    @property
    def net_change(self) -> bool:
        """Whether the announced nodes changed."""
        return bool(self.joined or self.left)

    def frame_for(self, node: str, version: int) -> str | None:
        """The frame for a client of ``node`` whose welcome saw the roster at ``version``
        (``None``: nothing to tell it)."""
        if version <= self.since:
            return self.frame
        here = self.here.suffix(bisect_right(self.here_versions, version))
        gone = self.gone.suffix(bisect_right(self.gone_versions, version))
        if node in here.nodes:  # its node changed on another node of the cluster: rare
            here = here.without(node)
        if not here and not gone:
            return None
        return presence_frame(joined=here, left=gone)


class Roster:
    """The nodes connected to one document, here and (in a cluster) on other nodes."""

    def __init__(self, remote: Iterable[str] = ()) -> None:
        self._connections: Counter[str] = Counter()
        self._remote = set(remote)
        self._announced = set(self._remote)
        self._announced_array = NodeArray(sorted(self._announced))
        self._version = 0
        self._since = 0
        """The version when this tick began."""
        self._changed: dict[str, int] = {}
        """The nodes whose presence changed during this tick, in the order of (and with
        the version of) their last change."""
        self._joining: dict[str, None] = {}
        """Present, not announced: in the order they came."""
        self._joining_array = NodeArray()
        self._leaving: set[str] = set()
        """Announced, gone."""
        self._staying: NodeArray | None = self._announced_array
        """The announced nodes not leaving (``None``: to be worked out again)."""

    @property
    def local_nodes(self) -> list[str]:
        """The nodes with a connection to the document here."""
        return sorted(self._connections)

    @property
    def version(self) -> int:
        """Bumped by every change: what a ``welcome`` built now has seen."""
        return self._version

    @property
    def changed(self) -> bool:
        """Whether a node joined or left during this tick."""
        return bool(self._changed)

    def connect(self, node: str) -> None:
        """A connection of ``node`` joined the document here."""
        self._connections[node] += 1
        if self._connections[node] == 1:
            self._update(node)

    def disconnect(self, node: str) -> None:
        """A connection of ``node`` left the document here."""
        self._connections[node] -= 1
        if self._connections[node] <= 0:
            del self._connections[node]
            self._update(node)

    def remote_changed(self, joined: Iterable[str], left: Iterable[str]) -> None:
        """Nodes joined or left the document on other nodes of the cluster."""
        for node in joined:
            self._remote.add(node)
            self._update(node)
        for node in left:
            self._remote.discard(node)
            self._update(node)

    def peers(self, node: str) -> NodeArray:
        """The ``welcome.peers`` of a client of ``node``: every node present but its own."""
        if self._staying is None:
            leaving = self._leaving
            self._staying = NodeArray(n for n in self._announced_array.nodes if n not in leaving)
        staying, joining = self._staying, self._joining_array
        # Worked out only for a node already here (a second connection): rare.
        if node in self._announced and node not in self._leaving:
            staying = staying.without(node)
        elif node in self._joining:
            joining = joining.without(node)
        return staying.concat(joining)

    def announce(self) -> Announcement | None:
        """The tick's changes, now announced (``None``: none)."""
        if not self._changed:
            return None
        here = [(n, v) for n, v in self._changed.items() if self._present(n)]
        gone = [(n, v) for n, v in self._changed.items() if not self._present(n)]
        announcement = Announcement(
            joined=NodeArray(sorted(self._joining)),
            left=NodeArray(sorted(self._leaving)),
            here=NodeArray(n for n, _ in here),
            here_versions=[v for _, v in here],
            gone=NodeArray(n for n, _ in gone),
            gone_versions=[v for _, v in gone],
            since=self._since,
        )
        self._since = self._version
        if announcement.net_change:
            self._announced |= self._joining.keys()
            self._announced -= self._leaving
            self._announced_array = NodeArray(sorted(self._announced))
        self._changed.clear()
        self._joining.clear()
        self._joining_array = NodeArray()
        self._leaving.clear()
        self._staying = self._announced_array
        return announcement

    def _present(self, node: str) -> bool:
        return node in self._connections or node in self._remote

    def _update(self, node: str) -> None:
        """``node`` may have come or gone: keep the tick's changes up to date."""
        self._version += 1
        self._changed.pop(node, None)  # to the end: changes stay in the order they happened
        self._changed[node] = self._version
        present = self._present(node)
        if node in self._announced:
            if present and node in self._leaving:
                self._leaving.discard(node)
                self._staying = None
            elif not present and node not in self._leaving:
                self._leaving.add(node)
                self._staying = None
        elif present and node not in self._joining:
            self._joining[node] = None
            self._joining_array = self._joining_array.plus(node)
        elif not present and node in self._joining:
            del self._joining[node]
            self._joining_array = NodeArray(self._joining)
