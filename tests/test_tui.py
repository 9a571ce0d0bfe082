"""``syncd tui`` driven by Textual's pilot against real syncd servers on 127.0.0.1.

Each test runs the app in its own event loop next to an in-process server
(``make_server``) and checks what the server holds through a second client
(:class:`syncd.client.Client`), so an edit is only "done" once another client
sees it. Every wait is bounded (:func:`tui_helpers.until`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import ServerFactory
from servers import TIMEOUT
from textual.widgets import DataTable, Static
from tui_helpers import FAST, FROZEN_NOW, make_app, notifications, until

from syncd.cli import main
from syncd.client import Backoff, Client
from syncd.crdt import JSONValue, format_timestamp
from syncd.server import SyncServer
from syncd.tui._format import age
from syncd.tui.app import READ_ONLY, SyncdApp, store_path
from syncd.tui.screens import EditorScreen, HelpScreen
from syncd.tui.widgets import ConnectionView, StatusBar

ClientMaker = Callable[..., Awaitable[Client]]


pytestmark = pytest.mark.usefixtures("home")


@pytest.fixture
async def observer() -> AsyncIterator[ClientMaker]:
    """Connected clients of document ``notes`` that watch what the TUI writes."""
    made: list[Client] = []

    async def make(url: str, node: str = "observer", **options: Any) -> Client:
        made.append(Client(url, "notes", node=node, backoff=FAST, timeout=TIMEOUT, **options))
        await made[-1].connect()
        return made[-1]

    yield make
    for client in made:
        await client.close()


def table(app: SyncdApp) -> DataTable[Any]:
    return app.query_one("#table", DataTable)


def cell(app: SyncdApp, key: str, column: str) -> str:
    return str(table(app).get_cell(key, column))


async def connected(pilot: Any, app: SyncdApp) -> None:
    await until(pilot, lambda: app.client is not None and app.client.synced, "the TUI syncs")


async def type_text(pilot: Any, text: str) -> None:
    """Type ``text`` key by key."""
    keys = {" ": "space", '"': "quotation_mark", "{": "left_curly_bracket"}
    await pilot.press(*[keys.get(char, char) for char in text])


async def until_value(pilot: Any, client: Client, key: str, value: JSONValue) -> None:
    await until(pilot, lambda: client.get(key) == value, f"{key} = {value!r} on the server")


async def test_add_edit_delete_undo(make_server: ServerFactory, observer: ClientMaker) -> None:
    server = await make_server()
    other = await observer(server.url)
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        # Add: a key and a JSON value.
        await pilot.press("a")
        assert isinstance(app.screen, EditorScreen)
        await type_text(pilot, "title")
        await pilot.press("tab")
        await type_text(pilot, '{"draft": 1}')
        await pilot.press("ctrl+s")
        await until_value(pilot, other, "title", {"draft": 1})
        await until(pilot, lambda: "title" in table(app).rows, "the row appears")
        assert cell(app, "title", "value") == '{"draft":1}'
        assert cell(app, "title", "writer") == "tui-test"
        # Edit: enter opens the selected row; plain-string mode stores the text as is.
        await pilot.press("enter")
        assert isinstance(app.screen, EditorScreen)
        await pilot.press("f7", *"hello", "tab", "space", "ctrl+s")
        await until_value(pilot, other, "title", "hello")
        # Undo writes back the JSON value as a new write.
        await pilot.press("u")
        await until_value(pilot, other, "title", {"draft": 1})
        # Delete, after confirming.
        await pilot.press("d", "y")
        await until(pilot, lambda: "title" not in other, "the delete reaches the server")
        await until(pilot, lambda: "title" not in table(app).rows, "the row goes")
        # Undo of the delete brings the value back.
        await pilot.press("u")
        await until_value(pilot, other, "title", {"draft": 1})
        await until(pilot, lambda: app.client is not None and app.client.pending_count == 0, "acks")


async def test_delete_needs_confirmation(make_server: ServerFactory, observer: ClientMaker) -> None:
    server = await make_server()
    other = await observer(server.url)
    await other.set("keep", 1)
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: "keep" in table(app).rows, "the row appears")
        await pilot.press("d", "n")
        assert not isinstance(app.screen, EditorScreen)
        await pilot.pause(0.1)
        assert app.client is not None and app.client.pending_count == 0
        assert "keep" in table(app).rows


async def test_remote_write_appears_and_flashes(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server()
    app = make_app(server.url, flash_seconds=0.3)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        other = await observer(server.url)
        await until(pilot, lambda: app.client is not None and len(app.client.peers) == 1, "peer")
        await other.set("remote", {"from": "elsewhere"})
        await until(pilot, lambda: "remote" in table(app).rows, "the remote row appears")
        value = table(app).get_cell("remote", "value")
        assert str(value) == '{"from":"elsewhere"}'
        assert "on dark_green" in str(value.style), "a remote change is highlighted"
        assert cell(app, "remote", "writer") == "observer"
        await until(
            pilot,
            lambda: "dark_green" not in str(table(app).get_cell("remote", "value").style),
            "the highlight fades",
        )


async def test_invalid_json_is_refused_with_the_reason(make_server: ServerFactory) -> None:
    server = await make_server()
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("a", *"k", "tab")
        await type_text(pilot, "{oops")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, EditorScreen), "the editor stays open"
        error = str(app.screen.query_one("#error", Static).content)
        assert error.startswith("Invalid JSON: Expecting property name"), error
        assert "line 1, column 2" in error
        assert app.client is not None and "k" not in app.client
        # The same text is fine as a plain string.
        await pilot.press("tab", "space", "ctrl+s")
        await until(pilot, lambda: app.client is not None and app.client.get("k") == "{oops", "k")


async def test_read_only_refuses_edits(make_server: ServerFactory, observer: ClientMaker) -> None:
    server = await make_server(token="write", read_token="read")
    writer = await observer(server.url, token="write")
    await writer.set("fixed", "value")
    app = make_app(server.url, token="read")
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: "fixed" in table(app).rows, "the row appears")
        assert app.client is not None and app.client.readonly
        for key in ("a", "e", "d", "enter"):
            await pilot.press(key)
            assert not isinstance(app.screen, EditorScreen)
        assert READ_ONLY in notifications(app)
        assert "READ-ONLY" in str(app.query_one("#status", Static).content)
        assert writer.get("fixed") == "value"


async def restart(make_server: ServerFactory, server: SyncServer) -> SyncServer:
    port, data = server.port, server.config.data
    await server.stop()
    return await make_server(port=port, data=data)


async def test_offline_edit_survives_downtime_and_restart(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server()
    port, data = server.port, server.config.data
    first = make_app(server.url)
    async with first.run_test(size=(140, 32)) as pilot:
        await connected(pilot, first)
        await server.stop()
        await until(pilot, lambda: first.client is not None and not first.client.synced, "offline")
        await pilot.press("a", *"todo", "tab", *"1", "ctrl+s")
        await until(pilot, lambda: "todo" in table(first).rows, "the offline row")
        assert cell(first, "todo", "mark") == "●", "marked pending"
        status = str(first.query_one("#status", Static).content)
        assert "1 pending" in status and ("reconnecting" in status or "connecting" in status)
    # A new TUI, still offline, shows the pending edit from its store.
    second = make_app(f"ws://127.0.0.1:{port}/ws")
    async with second.run_test(size=(140, 32)) as pilot:
        await until(pilot, lambda: "todo" in table(second).rows, "the saved row")
        assert cell(second, "todo", "mark") == "●"
        server = await make_server(port=port, data=data)
        other = await observer(server.url)
        await until_value(pilot, other, "todo", 1)
        await until(pilot, lambda: cell(second, "todo", "mark") == "", "acknowledged")


async def test_overridden_write_is_shown(make_server: ServerFactory, observer: ClientMaker) -> None:
    server = await make_server()
    port, data = server.port, server.config.data
    # Slow reconnections: the other client writes before this one is back.
    app = make_app(server.url, backoff=Backoff(initial=2.0, maximum=2.0, jitter=0.0))
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await server.stop()
        await until(pilot, lambda: app.client is not None and not app.client.synced, "offline")
        await pilot.press("a", *"color", "tab", *"mine", "tab", "space", "ctrl+s")
        await until(pilot, lambda: "color" in table(app).rows, "the offline row")
        server = await make_server(port=port, data=data)
        other = await observer(server.url)
        await other.set("color", "theirs")  # newer than the TUI's pending write
        await until(
            pilot,
            lambda: any("lost to" in message for message in notifications(app)),
            "the override is reported",
        )
        message = next(m for m in notifications(app) if "lost to" in m)
        assert '"mine"' in message and '"theirs"' in message and "observer" in message
        await until(pilot, lambda: cell(app, "color", "value") == '"theirs"', "the winner shown")


async def test_filter_sort_help_and_documents(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server()
    other = await observer(server.url)
    await other.update({"apple": 1, "banana": 2, "cherry": 3})
    await other.set("apple", 10)  # the most recent change
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: table(app).row_count == 3, "three rows")
        await pilot.press("slash", *"an")
        await until(pilot, lambda: table(app).row_count == 1, "filtered")
        assert "banana" in table(app).rows
        assert "1 of 3 keys" in str(app.query_one("#count", Static).content)
        await pilot.press("escape")
        assert table(app).row_count == 3
        await pilot.press("s")
        assert table(app).ordered_rows[0].key.value == "apple"
        await pilot.press("c")  # copies the selected value (OSC 52, where the terminal allows)
        assert app.clipboard == "2"  # banana: the selection follows its row
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Add a key", "Undo", "Open a document", "Help"} <= titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        # Open another document by name, then come back through the list.
        await pilot.press("o", *"other", "enter")
        await until(pilot, lambda: app.doc == "other" and app.client is not None, "switched")
        await connected(pilot, app)
        assert table(app).row_count == 0
        await pilot.press("o", "tab", "enter")  # the list: "notes" comes first
        await until(pilot, lambda: app.doc == "notes", "back")
        await until(pilot, lambda: table(app).row_count == 3, "the rows again")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--doc", ".hidden", "invalid document name"),
        ("--url", "ftp://host/x", "invalid server URL"),
    ],
)
def test_bad_arguments_are_usage_errors(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tui", option, value]) == 2
    assert message in capsys.readouterr().err


async def test_many_remote_deletes_at_once(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server()
    other = await observer(server.url)
    await other.update({f"k{i:03d}": i for i in range(300)})
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: table(app).row_count == 300, "the rows")
        for i in range(0, 300, 2):  # more removals than one tick does row by row
            await other.delete(f"k{i:03d}", wait=False)
        await other.flush()
        await until(pilot, lambda: table(app).row_count == 150, "the deleted rows go")
        assert "k001" in table(app).rows and "k000" not in table(app).rows
        assert "150 keys" in str(app.count.content)


async def test_a_second_tui_on_the_same_document_works_without_a_store(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server()
    # Another client (as a second TUI would) holds this document's store.
    first = await observer(server.url, node="tui-first", store=store_path(server.url, "notes"))
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        assert app.shared_store
        assert any("in use by another client" in message for message in notifications(app))
        assert app.client is not None and app.client.node.startswith("tui-test-")
        await pilot.press("a", *"both", "tab", *"2", "ctrl+s")
        await until_value(pilot, first, "both", 2)


def test_status_bar_shows_every_state() -> None:
    def line(**fields: Any) -> str:
        view = ConnectionView(**{"state": "connected", "url": "ws://h:1/ws", "doc": "d", **fields})
        return StatusBar.render_view(view).plain

    assert line().startswith(" ● connected  ws://h:1/ws · d  0 peers online  0 pending")
    assert "reconnecting in 4 s" in line(state="reconnecting", retry_in=4)
    assert "failed: unauthorized" in line(state="failed", error="unauthorized")
    assert "1 peer online" in line(peers=1) and "3 pending" in line(pending=3)
    assert "READ-ONLY" in line(readonly=True)
    assert "⚠ clock skew: check the clock" in line(skew="check the clock")
    assert " ws://h:1/ws (srv-1a2b) · d " in line(server="srv-1a2b")


async def test_status_bar_names_the_server_node_and_shows_a_move(
    make_server: ServerFactory,
) -> None:
    first = await make_server()
    app = make_app(first.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        shown = f"{first.url} ({first.data.node}) · notes"
        await until(pilot, lambda: shown in str(app.status_bar.content), "the first node")
        # Another node takes over the address: the TUI reconnects and says so.
        port = first.port
        await first.stop()
        second = await make_server(port=port)
        assert second.data.node != first.data.node
        shown = f"{second.url} ({second.data.node}) · notes"
        await until(pilot, lambda: shown in str(app.status_bar.content), "the second node")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(2, "just now"), (42, "42 s ago"), (125, "2 min ago"), (7300, "2 h ago"), (90_000, "1 d ago")],
)
def test_when_is_relative_to_the_app_clock(seconds: int, shown: str) -> None:
    ts = format_timestamp(FROZEN_NOW - seconds * 1000, 0, "n")
    assert age(ts, FROZEN_NOW) == shown
