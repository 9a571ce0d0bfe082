"""SVG snapshots of ``syncd tui``: the main screen, the editor, the help screen, offline,
a key's history and the conflicts view.

The data has fixed timestamps, the app's clock is frozen (:data:`FROZEN_NOW`)
and the server has a fixed node id (:data:`SERVER_NODE`), so the screens do not
depend on when the tests run. Update the files with
``SYNCD_UPDATE_SNAPSHOTS=1 pytest tests/test_tui_snapshots.py`` and look at
them (e.g. ``rsvg-convert``) before committing them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Final

import pytest
from conftest import ServerFactory
from servers import TIMEOUT, free_port
from textual.pilot import Pilot
from tui_helpers import FROZEN_NOW, assert_snapshot, fixed_entry, make_app, until

from syncd.client import Backoff, Client
from syncd.server import SyncServer
from syncd.tui.app import SyncdApp
from syncd.tui.conflicts_screen import ConflictsScreen
from syncd.tui.screens import EditorScreen, HelpScreen

SIZE: Final = (130, 30)
NEVER: Final = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
"""Reconnect so rarely that an offline screen shows a fixed countdown."""
SERVER_NODE: Final = "srv-5e7a1c09"
"""The server's node id, shown in the status bar."""
DATA: Final = [
    fixed_entry("config/retries", 3, minutes=2),
    fixed_entry("config/endpoints", ["https://a.example", "https://b.example"], minutes=9),
    fixed_entry("greeting", "hello, world", minutes=42, node="tui-7c3e9d11"),
    fixed_entry("profile", {"name": "Ada", "langs": ["en", "fr"], "admin": True}, minutes=180),
    fixed_entry(
        "readme",
        "syncd keeps every screen of a document in step: edit here, see it everywhere. " * 3,
        minutes=60 * 26,
        node="web-19b2f4c0",
    ),
    fixed_entry("visits", 1024, minutes=0),
]
LATER: Final = [
    fixed_entry("greeting", "hi there", minutes=20, node="web-19b2f4c0"),
    fixed_entry("greeting", "hello again", minutes=5, node="tui-test"),
]
"""Newer versions of a key of :data:`DATA` (``tui-test`` is the TUI's own node)."""
LOST: Final = [
    fixed_entry("config/retries", 5, minutes=30, node="tui-test"),
    fixed_entry("visits", 1000, minutes=3, node="web-19b2f4c0"),
]
"""Writes older than :data:`DATA`'s of their keys: they lose, as conflicts."""


pytestmark = pytest.mark.usefixtures("home")


async def seeded(make_server: ServerFactory, tmp_path: Path, **options: Any) -> SyncServer:
    """A server of node id :data:`SERVER_NODE` whose document ``notes`` holds :data:`DATA`
    (``options``: more server settings)."""
    data = tmp_path / "seeded"
    data.mkdir()
    # The server's own file of its node id (TinyDB), as it would have written it.
    server_file = {"server": {"1": {"node": SERVER_NODE}}}
    (data / "server.json").write_text(json.dumps(server_file), encoding="utf-8")
    server = await make_server(data=data, **options)
    async with Client(server.url, "notes", node="seeder", timeout=TIMEOUT) as client:
        client.resend(DATA)
        await client.flush()
    return server


async def loaded(pilot: Pilot[Any], app: SyncdApp) -> None:
    """Wait until the table shows :data:`DATA`, sorted by key."""
    first = min(entry["key"] for entry in DATA)
    await until(
        pilot,
        lambda: app.table.row_count == len(DATA) and app.table.ordered_rows[0].key == first,
        "the rows, sorted",
    )


async def test_main_screen(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await seeded(make_server, tmp_path)
    app = make_app(server.url, now=lambda: FROZEN_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "down", "down")
        await pilot.pause()
        assert_snapshot(app, "main", server.port)


async def test_editor(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await seeded(make_server, tmp_path)
    app = make_app(server.url, now=lambda: FROZEN_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "down", "down", "enter")  # profile: a JSON object
        assert isinstance(app.screen, EditorScreen)
        await pilot.press("comma")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert_snapshot(app, "editor", server.port)


async def test_help(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await seeded(make_server, tmp_path)
    app = make_app(server.url, now=lambda: FROZEN_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        assert_snapshot(app, "help", server.port)


async def test_offline() -> None:
    port = free_port()
    app = make_app(f"ws://127.0.0.1:{port}/ws", now=lambda: FROZEN_NOW, backoff=NEVER)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "reconnecting" in str(app.status_bar.content), "offline")
        await pilot.press("a", *"draft", "tab", *"42", "ctrl+s")
        await pilot.press("a", *"note", "tab", *"offline", "tab", "space", "ctrl+s")
        await until(pilot, lambda: app.table.row_count == 2, "the pending rows")
        # A fresh attempt, so the countdown shows its full length (60 s).
        assert app.client is not None
        app.client.reconnect_now()
        await until(pilot, lambda: "reconnecting in 60 s" in str(app.status_bar.content), "60 s")
        assert_snapshot(app, "offline", port)


async def with_history(server: SyncServer) -> None:
    """Add :data:`LATER` to the seeded document, and :data:`LOST` as writes that lose
    (sent by a client that had not seen the newer entries: a conflict each)."""
    async with Client(server.url, "notes", node="seeder", timeout=TIMEOUT) as client:
        for entry in LATER:  # one at a time: a client keeps one pending write per key
            client.resend([entry])
            await client.flush()
    late = Client(server.url, "notes", node="late", timeout=TIMEOUT)
    late.resend(LOST)
    async with late:
        await until_recorded(late, len(LOST))


async def until_recorded(client: Client, count: int) -> None:
    """Wait until the server has recorded ``count`` conflicts (bounded by ``TIMEOUT``)."""
    async with asyncio.timeout(TIMEOUT):
        while len((await client.conflicts())[0]) < count:
            await asyncio.sleep(0.02)


async def test_history(make_server: ServerFactory, tmp_path: Path) -> None:
    # The entries are dated before FROZEN_NOW: a retention of 30 days would expire them.
    server = await seeded(make_server, tmp_path, history_retention=36_500.0)
    await with_history(server)
    app = make_app(server.url, now=lambda: FROZEN_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "down", "h")  # greeting
        await until(pilot, lambda: len(app.history.versions) == 3, "the versions")
        await pilot.press("down")
        await pilot.pause()
        assert_snapshot(app, "history", server.port)


async def test_conflicts(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await seeded(make_server, tmp_path)
    await with_history(server)
    app = make_app(server.url, now=lambda: FROZEN_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: len(screen.conflicts) == len(LOST), "the conflicts")
        await pilot.pause()
        assert_snapshot(app, "conflicts", server.port)
