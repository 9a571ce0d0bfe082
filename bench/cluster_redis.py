"""A real ``redis-server`` for the cluster's tests and benchmark, and a TCP proxy that
can cut one node off from it.

:class:`RedisProcess` runs Debian's ``redis-server`` on a free 127.0.0.1 port with
its files in a folder of the caller's (append-only file on, no RDB snapshots, as
docs/cluster.md advises); never a system service. It can be killed, wiped and
started again on the same port and folder. :class:`TcpProxy` forwards a port to
it; :meth:`TcpProxy.cut` closes every connection and stops listening (a
partition between one node and Redis), :meth:`TcpProxy.heal` listens again on the
same port. ``make bench-cluster`` and the tests (``tests/test_cluster*.py``,
``tests/cluster_chaos.py``) share it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.server.servers import HOST

__all__ = ["REDIS_SERVER", "RedisProcess", "TcpProxy", "free_port"]

REDIS_SERVER: Final = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT: Final = 15.0
"""Seconds Redis has to answer PING after starting, or to exit after a kill."""


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RedisProcess:
    """``redis-server`` in a subprocess, restartable on the same port and folder."""

    folder: Path
    args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL nodes are given with ``--cluster``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it and wait (bounded) until it answers PING."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            *self.args,
        ]
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if self.process.poll() is not None:
                    log_text = (self.folder / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server exited:\n{log_text}")
                client = self.client()
                try:
                    await client.ping()
                    return
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)  # no event to await for a process: poll briefly
                finally:
                    await client.aclose()

    def client(self) -> Redis:
        """A client of its own (replies decoded), for checks and figures."""
        return Redis(host=HOST, port=self.port, decode_responses=True)

    async def peak_memory(self) -> int:
        """``used_memory_peak`` in bytes."""
        client = self.client()
        try:
            return int((await client.info("memory"))["used_memory_peak"])
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """``kill -9`` it and reap it."""
        assert self.process is not None
        self.process.kill()
        await asyncio.to_thread(self.process.wait, START_TIMEOUT)

    def wipe(self) -> None:
        """Delete its files (while stopped): it restarts empty."""
        for path in self.folder.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "redis.log":
                path.unlink()

    def cleanup(self) -> None:
        """Kill it if it still runs (at the end of a test or a run)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_TIMEOUT)


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; :meth:`cut` partitions it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The Redis URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Listen (on the same port as before, after a cut)."""
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close every connection and stop listening: the node cannot reach Redis."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def heal(self) -> None:
        """Listen again."""
        await self.start()

    async def close(self) -> None:
        """Cut, and stop every forwarding task."""
        if self._server is not None:
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
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()
