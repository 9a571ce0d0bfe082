"""``python -m bench.server.pycrdt_server PORT``: pycrdt-websocket's server, as its docs run it.

pycrdt-websocket's ``WebsocketServer`` serves any ``pycrdt.Channel``; its docs pair it
with the ``websockets`` library's server (or an ASGI server). Here it runs on the same
``websockets`` server as syncd (version, asyncio implementation, no compression), so
the two differ only in what they do with a message. No store is given, so it never
touches the disk: each room is a ``pycrdt.Doc`` in memory. It stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from pycrdt.websocket import WebsocketServer, exception_logger
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["WebsocketChannel", "main"]

logger = logging.getLogger(__name__)


class WebsocketChannel:
    """A ``websockets`` server connection as the ``pycrdt.Channel`` pycrdt-websocket reads."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        self._path = connection.request.path if connection.request else "/"

    @property
    def path(self) -> str:
        """The room's name: the request path."""
        return self._path

    def __aiter__(self) -> WebsocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        """Send one binary message."""
        await self._connection.send(message)

    async def recv(self) -> bytes:
        """The next message, as bytes."""
        message = await self._connection.recv()
        return message if isinstance(message, bytes) else message.encode()


async def _serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with WebsocketServer(exception_handler=exception_logger, log=logger) as rooms:

        async def handle(connection: ServerConnection) -> None:
            await rooms.serve(WebsocketChannel(connection))

        async with serve(handle, "127.0.0.1", port, compression=None):
            logger.info("pycrdt-websocket listening on 127.0.0.1:%d", port)
            await stop.wait()


def main(argv: list[str]) -> int:
    """Serve on 127.0.0.1 at the port given, until SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    asyncio.run(_serve(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
