"""SVG snapshots of ``syncd tui``: the main screen, the editor, the help screen, offline.

The data has fixed timestamps, the app's clock is frozen (:data:`FROZEN_NOW`)
and the server has a fixed node id (:data:`SERVER_NODE`), so the screens do not
depend on when the tests run. Update the files with
``SYNCD_UPDATE_SNAPSHOTS=1 pytest tests/test_tui_snapshots.py`` and look at
them (e.g. ``rsvg-convert``) before committing them.
"""

from __future__ import annotations

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


pytestmark = pytest.mark.usefixtures("home")


async def seeded(make_server: ServerFactory, tmp_path: Path) -> SyncServer:
    """A server of node id :data:`SERVER_NODE` whose document ``notes`` holds :data:`DATA`."""
    data = tmp_path / "seeded"
    data.mkdir()
    # The server's own file of its node id (TinyDB), as it would have written it.
    server_file = {"server": {"1": {"node": SERVER_NODE}}}
    (data / "server.json").write_text(json.dumps(server_file), encoding="utf-8")
    server = await make_server(data=data)
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
