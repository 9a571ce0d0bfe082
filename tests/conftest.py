"""Fixtures that run real syncd servers on 127.0.0.1 (see ``tests/servers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from servers import RawClient, ServerProcess, running_server

from syncd.server import ServerConfig, SyncServer

ServerFactory = Callable[..., Awaitable[SyncServer]]
ClientFactory = Callable[..., Awaitable[RawClient]]
ProcessFactory = Callable[..., ServerProcess]


SYNCD_VARIABLES = ("SYNCD_URL", "SYNCD_DOC", "SYNCD_TOKEN", "SYNCD_READ_TOKEN")
"""What a user may have exported for the CLI, which would also configure the servers the
tests start (``serve`` reads the tokens) and the clients they run."""


@pytest.fixture(autouse=True)
def _no_syncd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from none of :data:`SYNCD_VARIABLES`; a test sets what it needs."""
    for name in SYNCD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start in-process servers: ``await make_server(token="t", max_ops=3)``.

    Each gets port 0, its own data directory (unless ``data`` is given) and no
    web client (unless ``web_root`` is given); all are stopped after the test.
    """
    async with AsyncExitStack() as stack:
        count = 0

        async def make(**overrides: Any) -> SyncServer:
            nonlocal count
            count += 1
            settings: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": 0,
                "data": tmp_path / f"data{count}",
                "web_root": tmp_path / "no-web-client",
                "close_timeout": 1.0,
            }
            settings.update(overrides)
            return await stack.enter_async_context(running_server(ServerConfig(**settings)))

        yield make


@pytest.fixture
async def server(make_server: ServerFactory) -> SyncServer:
    """An in-process server with the default settings."""
    return await make_server()


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Open raw clients: ``await connect(server.url, "node-a")``; all closed after the test."""
    clients: list[RawClient] = []

    async def make(url: str, node: str = "tester", **options: Any) -> RawClient:
        client = await RawClient.connect(url, node, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.connection.transport.abort()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ProcessFactory]:
    """Make ``syncd serve`` subprocesses: ``server_process(data_dir, "--token", "t")``.

    Every process still running at the end of the test is killed.
    """
    processes: list[ServerProcess] = []

    def make(data: Path | None = None, *args: str) -> ServerProcess:
        index = len(processes) + 1
        process = ServerProcess(
            data=data or tmp_path / f"proc{index}-data",
            logs=tmp_path / f"proc{index}-logs",
            args=args,
        )
        processes.append(process)
        return process

    yield make
    for process in processes:
        process.cleanup()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$SYNCD_HOME`` (node ids, stores, the CLI's outbox) and no ``SYNCD_*``
    settings from the environment."""
    for name in ("SYNCD_URL", "SYNCD_DOC", "SYNCD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNCD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
