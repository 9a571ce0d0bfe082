"""Fuzz the client's side of the protocol: server frames through a ``Replica``.

The input's first byte picks where the replica stands (waiting for a welcome,
with or without a resume point and pending writes, or synced with messages in
flight); each line after it is one frame from the server. ``Replica.receive``
may only raise ``UnexpectedFrame`` (the client then drops the connection, as
the harness does, and says hello again). After every frame: the local
document's snapshot reloads equal, every pending write is still in the local
document unless something newer replaced it, and the ``ops`` frames the replica
asks to send are valid for a server.

Run: ``python -m fuzz.replica [CORPUS_DIR] -max_total_time=60``.
"""

from __future__ import annotations

from typing import Final

from fuzz.harness import BASE_WALL, check_reloads, lines, run
from syncd.crdt import Document
from syncd.errors import UnexpectedFrame
from syncd.protocol import as_text, entries_frame, synced_frame, welcome_pieces
from syncd.replica import Replica

__all__ = ["fuzz_one", "replica_at"]

EPOCH: Final = "e-91c2"
SERVER_TIME: Final = f"{BASE_WALL:013d}-00000-srv-1"


def replica_at(choice: int) -> Replica:
    """A replica that has said hello (choices 0–2) or finished a handshake, a snapshot
    (3) or a delta (4), with one message of pending writes in flight."""
    replica = Replica("tui-3f9a", max_ops=4, max_value_bytes=64, wall=lambda: BASE_WALL)
    if choice % 5 in (1, 2, 3, 4):
        replica.set("a", 1)
        replica.set("b", {"x": [True, None]})
        replica.delete("c")
    if choice % 5 in (2, 4):
        replica.restore(None, EPOCH, 3)
    replica.hello_frame()
    if choice % 5 >= 3:
        full = choice % 5 == 3
        replica.receive(
            as_text(
                welcome_pieces(
                    doc="default",
                    node="srv-1",
                    epoch=EPOCH,
                    seq=3,
                    time=SERVER_TIME,
                    full=full,
                    readonly=False,
                    peers=["web-77c1"],
                )
            )
        )
        entry = f'{{"key":"k","ts":"{BASE_WALL:013d}-00001-web-77c1","value":"v"}}'
        replica.receive(entries_frame(entry))
        replica.receive(synced_frame(3))
        replica.outgoing(window=1)
    return replica


def fuzz_one(data: bytes) -> None:
    """Feed server frames to a replica, checking it after each."""
    choice, frames = lines(data)
    replica = replica_at(choice)
    for text in frames:
        try:
            replica.receive(text)
        except UnexpectedFrame:
            replica.disconnected()
            replica.hello_frame()
        check(replica)


def check(replica: Replica) -> None:
    """What must hold of a replica whatever the server sent."""
    check_reloads(replica.document)
    for pending in replica.pending:
        entry = replica.document.entry(pending.key)
        assert entry is not None and entry.ts >= pending.ts, (pending, entry)
    server = Document()
    for frame in replica.outgoing():
        server.apply_frame(frame)  # raises if the replica wrote an invalid frame


if __name__ == "__main__":
    run(fuzz_one, "replica")
