"""The Redis side of ``make bench-cluster``: a throw-away ``redis-server``, and a TCP
proxy that cuts one node off from it.

:class:`RedisServer` runs Debian's ``redis-server`` on a free 127.0.0.1 port with
its files in the run's temporary folder (append-only file on, as docs/cluster.md
advises). :class:`CutProxy` forwards a 127.0.0.1 port to it; :meth:`CutProxy.cut`
closes every connection and stops listening (a partition), :meth:`CutProxy.heal`
listens again on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.server.servers import HOST

__all__ = ["CutProxy", "RedisServer", "free_port"]

REDIS_SERVER: Final = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT: Final = 15.0
COPY_BYTES: Final = 65_536


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in a subprocess, its files under ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        """The URL nodes are given with ``--cluster``."""
        return f"redis://{HOST}:{self.port}/0"

    async def ready(self) -> None:
        """Wait (bounded) until it answers PING."""
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                client = Redis(host=HOST, port=self.port)
                try:
                    await client.ping()
                    return
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)  # a process has no event to await: poll briefly
                finally:
                    await client.aclose()

    async def peak_memory(self) -> int:
        """``used_memory_peak`` in bytes."""
        client = Redis(host=HOST, port=self.port, decode_responses=True)
        try:
            return int((await client.info("memory"))["used_memory_peak"])
        finally:
            await client.aclose()

    def stop(self) -> None:
        """Kill it and reap it."""
        self.process.kill()
        self.process.wait(START_TIMEOUT)


class CutProxy:
    """Forwards ``HOST:port`` to ``HOST:target_port`` until :meth:`cut`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The Redis URL through the proxy."""
        return f"redis://{HOST}:{self.port}/0"

    async def start(self) -> None:
        """Listen (on the same port again after a cut)."""
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close every connection and stop listening."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def heal(self) -> None:
        """Listen again."""
        await self.start()

    async def close(self) -> None:
        """Cut, and end every forwarding task."""
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._copy(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(COPY_BYTES):
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the other side went away, or the proxy was cut
        finally:
            self._writers.discard(sink)
            sink.transport.abort()
