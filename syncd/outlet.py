"""Writing frames to clients: each frame encoded once, each client written once per loop turn.

A broadcast goes to every client of a document, thousands of them. websockets'
own ``send`` and ``broadcast`` build and serialize the WebSocket frame again for
each client and write it at once, a ``send()`` system call each; the frames a
client gets in the same loop turn (a broadcast, a presence tick, an ack and the
broadcasts held for it) are a system call each too. Here:

- a frame is encoded once (:func:`encode`): ``syncd serve`` negotiates no
  extension (``compression=None``) and a server does not mask, so its bytes are
  the same for every client;
- the bytes are queued on the client's :class:`Outlet`, and at the end of the
  loop turn (:class:`Flusher`) everything queued for a client goes out in one
  ``transport.write`` (or sooner: a room flushes a broadcast's writes at once, to
  time them);
- a handshake's frames (``welcome``, ``entries``…, ``synced``) go out together
  (:func:`send_all`): one write for a small document, where ``send`` would make
  three, each with its own system call. The ``welcome`` comes already in UTF-8,
  in pieces (its thousands of peers are their arrays' bytes), and every payload
  is copied once, into that write, beside a header packed here (:func:`header`).

Frames keep their order on a connection: an outlet is written whole, in the
order its frames were queued. What websockets writes itself (pings, pongs, the
close frame) may fall between two turns' writes, never inside a frame; once a
connection is closing, what is still queued for it is discarded, as
``broadcast`` would skip it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from syncd.protocol import Encoded

__all__ = ["WRITE_BYTES", "Flusher", "Outlet", "encode", "header", "send_all"]

logger = logging.getLogger(__name__)

WRITE_BYTES = 1 << 16
"""Bytes of frames :func:`send_all` gathers into one write before it waits for the socket."""
_TEXT_SHORT = struct.Struct("!BB")
_TEXT_MEDIUM = struct.Struct("!BBH")
_TEXT_LONG = struct.Struct("!BBQ")


def header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` payload bytes (RFC 6455
    §5.2): what websockets' ``Frame.serialize`` writes, without copying the payload."""
    if length < 126:
        return _TEXT_SHORT.pack(0x81, length)
    if length < 1 << 16:
        return _TEXT_MEDIUM.pack(0x81, 126, length)
    return _TEXT_LONG.pack(0x81, 127, length)


def encode(frame: str) -> bytes:
    """``frame`` as one WebSocket text frame from the server: unmasked, no extension."""
    data = frame.encode()
    return header(len(data)) + data


async def send_all(connection: ServerConnection, frames: Iterable[str | Encoded]) -> None:
    """Send ``frames`` in order, :data:`WRITE_BYTES` or so in each write, waiting for the
    socket to take each write (a large document's snapshot is tens of megabytes, made
    frame by frame as it is sent); raises ``ConnectionClosed`` once the connection is
    closed, as ``send`` does."""
    chunk: Encoded = []
    size = 0
    for frame in frames:
        # A frame already in UTF-8 comes in pieces (a welcome: thousands of peers).
        pieces = [frame.encode()] if isinstance(frame, str) else frame
        length = sum(len(piece) for piece in pieces)
        # The header apart: the payload is copied once, by the write.
        chunk += (header(length), *pieces)
        size += length
        if size >= WRITE_BYTES:
            await _write(connection, chunk)
            chunk, size = [], 0
    if chunk:
        await _write(connection, chunk)


async def _write(connection: ServerConnection, chunk: Encoded) -> None:
    if connection.protocol.state is not State.OPEN:
        await connection.wait_closed()
        raise connection.close_exc
    connection.transport.write(b"".join(chunk))
    await connection.drain()


class Flusher:
    """Writes the outlets given something in a loop turn, once, when the turn ends."""

    def __init__(self) -> None:
        self._due: list[Outlet] = []

    def due(self, outlet: Outlet) -> None:
        """``outlet`` has its first frame of this turn."""
        if not self._due:
            asyncio.get_running_loop().call_soon(self.flush)
        self._due.append(outlet)

    def flush(self) -> None:
        """Write every outlet due: called by the loop at the end of the turn, or sooner
        by a caller that times its writes (a room pacing its broadcasts)."""
        due, self._due = self._due, []
        for outlet in due:
            outlet.flush()


class Outlet:
    """The frames queued for one connection and not yet written to its transport."""

    __slots__ = ("_flusher", "connection", "queued", "queued_bytes")

    def __init__(self, connection: ServerConnection, flusher: Flusher) -> None:
        if connection.protocol.extensions:
            # A compressing connection needs its own encoding of every frame.
            raise ValueError("frames encoded once cannot go to a connection with extensions")
        self.connection = connection
        self._flusher = flusher
        self.queued: list[bytes] = []
        self.queued_bytes = 0

    def unsent(self) -> int:
        """Bytes queued here or waiting in the transport's buffer."""
        transport = self.connection.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return buffered + self.queued_bytes

    def put(self, data: bytes) -> None:
        """Queue an encoded frame (:func:`encode`), written when this loop turn ends."""
        if not self.queued:
            self._flusher.due(self)
        self.queued.append(data)
        self.queued_bytes += len(data)

    def flush(self) -> None:
        """Write what is queued, in one piece; discard it if the connection is closing."""
        queued, self.queued, self.queued_bytes = self.queued, [], 0
        if not queued or self.connection.protocol.state is not State.OPEN:
            return
        try:
            self.connection.transport.write(queued[0] if len(queued) == 1 else b"".join(queued))
        except Exception as error:  # a transport already lost: the connection ends anyway
            logger.warning("could not write to %s: %s", self.connection.remote_address, error)
