"""A minimal WebSocket client (RFC 6455) for the load generator, on a bare asyncio protocol.

The benchmark's clients share two cores with the server they measure, so every
microsecond they spend is taken from it. This client does only what the three
servers need: the opening handshake, unmasked frames in (text, binary, ping, close,
fragments reassembled), masked frames out, pong. It offers no extension, so no
server compresses. Each message is handed to a callback with the
``time.monotonic_ns()`` at which its bytes arrived; several frames to send can be
written with one system call (:meth:`Connection.send_many`).

``CLOCK_MONOTONIC`` is one clock for every process of the machine, so an arrival
time taken in a reader process can be compared with a send time taken in the writer.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable, Iterable
from typing import cast

from websockets.utils import apply_mask

__all__ = ["BINARY", "TEXT", "Connection", "MessageHandler", "WireError", "connect"]

TEXT = 0x1
BINARY = 0x2
_CONTINUATION = 0x0
_CLOSE = 0x8
_PING = 0x9
_PONG = 0xA
_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 16_384

MessageHandler = Callable[[int, bytes, int], None]
"""Called with (opcode, payload, arrival time in ``monotonic_ns``) for each message."""


class WireError(Exception):
    """The server broke the protocol, refused the handshake or closed the connection."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + mask + apply_mask(payload, mask)


class Connection(asyncio.Protocol):
    """One client connection; ``opened`` resolves once the server accepted the upgrade."""

    def __init__(self, host: str, port: int, path: str, on_message: MessageHandler) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.on_message = on_message
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        """What arrived and was not handed on yet: a frame's (or the upgrade answer's) start."""
        self._missing = 0
        """Bytes the frame that ``_chunks`` starts still lacks, once its head is known: reads
        are only collected until they have come, not joined and parsed again each time."""
        self._handshaking = True
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if len(data) < self._missing:
            self._chunks.append(data)
            self._missing -= len(data)
            return
        self._missing = 0
        if self._chunks:
            self._chunks.append(data)
            buffer, self._chunks = b"".join(self._chunks), []
        else:
            buffer = data
        if self._handshaking:
            end = buffer.find(_HEAD_END)
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._fail(WireError("the server's handshake answer is too long"))
                self._chunks = [buffer]
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(WireError(f"handshake refused: {status.decode(errors='replace')}"))
                return
            self._handshaking = False
            buffer = buffer[end + len(_HEAD_END) :]
            if not self.opened.done():
                self.opened.set_result(None)
        rest = self._parse(buffer, now)
        if rest:
            self._chunks = [rest]

    def connection_lost(self, exc: Exception | None) -> None:
        error = WireError(f"connection lost: {exc}" if exc else "connection closed")
        if not self.opened.done():
            self.opened.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- frames -------------------------------------------------------------------

    def _parse(self, buffer: bytes, now: int) -> bytes:
        """Hand every complete message in ``buffer`` on; return what is left over (and
        note in ``_missing`` how much its frame lacks, if its head is there)."""
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                head = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                head = 10
            if second & 0x80:
                self._fail(WireError("the server sent a masked frame"))
                return b""
            end = offset + head + length
            if end > size:
                self._missing = end - size
                break
            payload = buffer[offset + head : end]
            offset = end
            self._frame_received(first & 0x80 != 0, first & 0x0F, payload, now)
        return buffer[offset:]

    def _frame_received(self, fin: bool, opcode: int, payload: bytes, now: int) -> None:
        if opcode in (TEXT, BINARY):
            if fin:
                self.on_message(opcode, payload, now)
            else:
                self._fragment_opcode, self._fragments = opcode, [payload]
        elif opcode == _CONTINUATION:
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), []
                self.on_message(self._fragment_opcode, message, now)
        elif opcode == _PING:
            self._write(_frame(_PONG, payload))
        elif opcode == _CLOSE:
            self._write(_frame(_CLOSE, payload[:2]))
            if self._transport is not None:
                self._transport.close()

    def _fail(self, error: WireError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- sending ------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send one message: a text frame for ``str``, a binary frame for ``bytes``."""
        self._write(self._encode(message))

    def send_many(self, messages: Iterable[str | bytes]) -> None:
        """Send several messages with one write (one system call)."""
        self._write(b"".join(self._encode(message) for message in messages))

    @staticmethod
    def _encode(message: str | bytes) -> bytes:
        if isinstance(message, str):
            return _frame(TEXT, message.encode())
        return _frame(BINARY, message)

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size() if self._transport else 0

    def abort(self) -> None:
        """Cut the connection at once, without a close handshake."""
        if self._transport is not None:
            self._transport.abort()

    async def close(self, timeout: float = 2.0) -> None:
        """Send a close frame and wait (at most ``timeout`` s) for the server to close."""
        self._write(_frame(_CLOSE, struct.pack("!H", 1000)))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()


async def connect(
    host: str, port: int, path: str, on_message: MessageHandler, timeout: float = 10.0
) -> Connection:
    """Open a connection and complete the opening handshake (within ``timeout`` s)."""
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(lambda: Connection(host, port, path, on_message), host, port),
        timeout,
    )
    await asyncio.wait_for(asyncio.shield(connection.opened), timeout)
    return connection
