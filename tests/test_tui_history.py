"""The TUI's history pane (``h``), restore, and the conflicts view (``x``), driven by
Textual's pilot against real syncd servers on 127.0.0.1 (issue #13).

What the TUI writes is checked through a second client, and the server's
records through the client's history requests. Every wait is bounded
(:func:`tui_helpers.until`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from conftest import ServerFactory
from servers import TIMEOUT, free_port
from textual.widgets import DataTable
from tui_helpers import FAST, make_app, notifications, until

from syncd.client import Backoff, Client
from syncd.crdt import JSONValue, parse_timestamp, wall_clock_ms
from syncd.events import State
from syncd.history_wire import Conflict
from syncd.tui.app import READ_ONLY, SyncdApp
from syncd.tui.conflicts_screen import PAGE_SIZE as CONFLICTS_PAGE
from syncd.tui.conflicts_screen import ConflictsScreen
from syncd.tui.history_pane import NO_HISTORY, PAGE_SIZE

ClientMaker = Callable[..., Awaitable[Client]]

pytestmark = pytest.mark.usefixtures("home")

WAITING = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)
"""Reconnect only when told to (:meth:`Client.reconnect_now`)."""


@pytest.fixture
async def observer() -> AsyncIterator[ClientMaker]:
    """Connected clients of document ``notes``; closed after the test."""
    made: list[Client] = []

    async def make(url: str, node: str = "observer", **options: Any) -> Client:
        options.setdefault("backoff", FAST)
        made.append(Client(url, "notes", node=node, timeout=TIMEOUT, **options))
        await made[-1].connect()
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def connected(pilot: Any, app: SyncdApp) -> None:
    await until(pilot, lambda: app.client is not None and app.client.synced, "the TUI syncs")


async def select(pilot: Any, app: SyncdApp, key: str) -> None:
    await until(pilot, lambda: key in app.table.rows, f"the row of {key}")
    app.document.select(key)
    await until(pilot, lambda: app.document.selected_key() == key, f"{key} selected")


def shown_values(app: SyncdApp) -> list[JSONValue]:
    """The values of the versions in the history pane, newest first."""
    return [None if v.deleted else v.value for v in app.history.versions]


def note(app: SyncdApp) -> str:
    return str(app.history.note.content)


async def until_value(pilot: Any, client: Client, key: str, value: JSONValue) -> None:
    await until(pilot, lambda: client.get(key) == value, f"{key} = {value!r} on the server")


async def test_history_restore_and_undo(make_server: ServerFactory, observer: ClientMaker) -> None:
    server = await make_server()
    other = await observer(server.url)
    for value in ("one", "two", "three"):
        await other.set("k", value)
    for count in range(PAGE_SIZE + 10):
        await other.set("many", count)
    app = make_app(server.url)
    async with app.run_test(size=(140, 40)) as pilot:
        await connected(pilot, app)
        await select(pilot, app, "k")
        await pilot.press("h")
        assert app.history.display and not app.detail.display
        await until(pilot, lambda: len(app.history.versions) == 3, "three versions")
        assert shown_values(app) == ["three", "two", "one"]
        assert [v.node for v in app.history.versions] == ["observer"] * 3
        assert "3 versions" in note(app)

        # One key press restores the highlighted version, as a new write.
        await pilot.press("down", "r")
        await until_value(pilot, other, "k", "two")
        assert any("Restored 'k' to \"two\"" in m for m in notifications(app))
        await until(pilot, lambda: shown_values(app)[:1] == ["two"], "the restore in the history")
        assert shown_values(app) == ["two", "three", "two", "one"]
        assert app.history.versions[0].node == "tui-test"

        # The restore is a change like any other: u undoes it, with one more version.
        await pilot.press("u")
        await until_value(pilot, other, "k", "three")
        await until(pilot, lambda: len(app.history.versions) == 5, "the undo in the history")
        assert shown_values(app)[:2] == ["three", "two"]

        # A long history comes a page at a time, as the cursor goes down.
        await pilot.press("escape")
        assert app.detail.display and not app.history.display
        await select(pilot, app, "many")
        await pilot.press("h")
        await until(pilot, lambda: len(app.history.versions) == PAGE_SIZE, "the first page")
        assert "more below" in note(app)
        await pilot.press("end")
        await until(pilot, lambda: len(app.history.versions) == PAGE_SIZE + 10, "the next page")
        assert shown_values(app) == list(range(PAGE_SIZE + 9, -1, -1))
        assert "more below" not in note(app)


async def test_read_only_reads_the_history_but_cannot_restore(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server(token="write", read_token="read")
    writer = await observer(server.url, token="write")
    await writer.set("k", "old")
    await writer.set("k", "new")
    app = make_app(server.url, token="read")
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await select(pilot, app, "k")
        await pilot.press("h")
        await until(pilot, lambda: shown_values(app) == ["new", "old"], "the versions")
        await pilot.press("down", "r")
        await until(pilot, lambda: READ_ONLY in notifications(app), "the refusal")
        assert app.client is not None and app.client.pending_count == 0
    assert writer.get("k") == "new"


async def test_history_off_is_said_clearly(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    server = await make_server(history_retention=0)
    other = await observer(server.url)
    await other.set("k", "value")
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await select(pilot, app, "k")
        await pilot.press("h")
        await until(pilot, lambda: NO_HISTORY in note(app), "the reason")
        await pilot.press("r")  # nothing to restore: nothing happens
        await pilot.press("escape", "x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: "history-retention 0" in str(screen.note.content), "the note")
        await pilot.press("escape")
        assert not isinstance(app.screen, ConflictsScreen)
    assert other.get("k") == "value"


async def test_offline_history_and_conflicts_say_they_need_a_connection(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    app = make_app(server.url)
    async with app.run_test(size=(140, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("a", *"k", "tab", *"1", "ctrl+s")
        await select(pilot, app, "k")
        await server.stop()
        await until(pilot, lambda: app.client is not None and not app.client.synced, "offline")
        await pilot.press("h")
        await until(pilot, lambda: "Not connected" in note(app), "the reason")
        await pilot.press("escape", "x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: "Not connected" in str(screen.note.content), "the reason")


async def later_than(pilot: Any, ts: str) -> None:
    """Wait until the wall clock has passed the time of ``ts``: a write made now is newer."""
    await until(pilot, lambda: wall_clock_ms() > parse_timestamp(ts)[0], "the clock moves on")


async def recorded(pilot: Any, client: Client, count: int) -> list[Conflict]:
    """The document's conflicts, once the server has ``count`` (bounded by ``TIMEOUT``)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(found := (await client.conflicts(limit=1000))[0]) < count:
                await pilot.pause(0.02)
    except TimeoutError:
        raise AssertionError(f"fewer than {count} conflicts recorded") from None
    return found


def conflict_rows(screen: ConflictsScreen) -> list[list[str]]:
    table: DataTable[Any] = screen.table
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(len(screen.conflicts))]


@pytest.mark.parametrize("loser", ["tui", "other"])
async def test_offline_conflict_in_the_conflicts_view(
    make_server: ServerFactory, observer: ClientMaker, loser: str
) -> None:
    """Both write one key offline; the later write's client reconnects first, so the
    other write loses on the server. The TUI's own lost write is marked, and the
    notice of it leads to its conflict."""
    server = await make_server()
    port, data = server.port, server.config.data
    other = await observer(server.url, backoff=WAITING)
    app = make_app(server.url, backoff=WAITING)
    async with app.run_test(size=(160, 32)) as pilot:
        await connected(pilot, app)
        client = app.client
        assert client is not None
        await server.stop()
        # Offline: waiting out the backoff, which reconnect_now() cuts short.
        waiting = (client, other)
        await until(pilot, lambda: all(c.state is State.OFFLINE for c in waiting), "both wait")
        first_value, second_value = ("mine", "theirs") if loser == "tui" else ("theirs", "mine")
        if loser == "tui":
            await pilot.press("a", *"color", "tab", *first_value, "tab", "space", "ctrl+s")
            await until(pilot, lambda: client.pending_count == 1, "the TUI's write")
            entry = client.entry("color")
            assert entry is not None
            lost_ts = entry.ts
            await later_than(pilot, lost_ts)
            await other.set("color", second_value, wait=False)
            winner, late = other, client
        else:
            lost_ts = (await other.set("color", first_value, wait=False)).ts
            await later_than(pilot, lost_ts)
            await pilot.press("a", *"color", "tab", *second_value, "tab", "space", "ctrl+s")
            await until(pilot, lambda: client.pending_count == 1, "the TUI's write")
            winner, late = client, other

        await make_server(port=port, data=data)
        for reconnecting in (winner, late):
            reconnecting.reconnect_now()
            await until(pilot, settled(reconnecting), f"{reconnecting.node} is back and acked")
        (conflict,) = await recorded(pilot, other, 1)
        assert (conflict.key, conflict.lost.ts, conflict.lost.value) == (
            "color",
            lost_ts,
            first_value,
        )
        await until(pilot, lambda: client.get("color") == second_value, "the TUI shows the winner")

        # A later conflict of another writer comes first in the list (newest first).
        await other.set("shape", "circle")
        late_writer = Client(
            server_url(port), "notes", node="late", wall=lambda: wall_clock_ms() - 60_000
        )
        await late_writer.set("shape", "square", wait=False)  # offline, a minute ago
        try:
            await late_writer.connect()
            await recorded(pilot, other, 2)
        finally:
            await late_writer.close()

        if loser == "tui":
            notice = next(m for m in notifications(app) if "lost to" in m)
            assert "Press x to open the conflict" in notice
        await pilot.press("x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: len(screen.conflicts) == 2, "the conflicts listed")
        rows = conflict_rows(screen)
        assert [row[2:5] for row in rows] == [
            ["shape", '"square"', "late"],
            ["color", f'"{first_value}"', "you" if loser == "tui" else "observer"],
        ]
        assert [row[5] for row in rows] == ['"circle"', f'"{second_value}"']
        assert [row[0] for row in rows] == ["", "★" if loser == "tui" else ""]
        # Opened from the notice, the view selects the TUI's conflict.
        await until(
            pilot, lambda: screen.table.cursor_row == (1 if loser == "tui" else 0), "cursor"
        )
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, ConflictsScreen), "closed")
        assert app.document.selected_key() == ("color" if loser == "tui" else "shape")


def settled(client: Client) -> Callable[[], bool]:
    """Whether ``client`` is synced with nothing pending."""
    return lambda: client.synced and not client.pending_count


def server_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def test_conflicts_page_on_and_the_notice_finds_its_conflict(
    make_server: ServerFactory, observer: ClientMaker
) -> None:
    """The TUI's lost write has more than a page of later conflicts above it: the view
    reads on to select it, and the list pages on as the cursor goes down."""
    port = free_port()
    # Never connected yet, the TUI stamps by its own clock: a minute slow.
    app = make_app(server_url(port), backoff=WAITING, now=lambda: wall_clock_ms() - 60_000)
    async with app.run_test(size=(160, 32)) as pilot:
        await until(pilot, lambda: app.client is not None, "the client")
        client = app.client
        assert client is not None
        await pilot.press("a", *"color", "tab", *"mine", "tab", "space", "ctrl+s")
        await until(pilot, lambda: client.pending_count == 1, "the offline write")
        entry = client.entry("color")
        assert entry is not None
        await until(pilot, lambda: client.state is State.OFFLINE, "waiting to reconnect")
        server = await make_server(port=port)
        other = await observer(server.url)
        await other.set("color", "theirs")
        client.reconnect_now()
        await until(pilot, lambda: any("lost to" in m for m in notifications(app)), "the notice")
        await recorded(pilot, other, 1)

        # More than a page of later conflicts, from a writer a minute slow too.
        many = CONFLICTS_PAGE + 5
        await other.update([(f"k{i:03}", "new") for i in range(many)])
        late = Client(server.url, "notes", node="late", wall=lambda: wall_clock_ms() - 60_000)
        await late.update([(f"k{i:03}", "old") for i in range(many)], wait=False)
        try:
            await late.connect()
            await recorded(pilot, other, many + 1)
        finally:
            await late.close()

        await pilot.press("x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: len(screen.conflicts) == many + 1, "both pages read")
        assert screen.table.cursor_row == many, "the TUI's conflict, at the end, is selected"
        assert (screen.conflicts[many].key, screen.conflicts[many].lost.ts) == ("color", entry.ts)
        assert conflict_rows(screen)[many][0] == "★"
        await pilot.press("escape")

        # Opened again without a notice: one page, then the next as the cursor gets there.
        await pilot.press("x")
        assert isinstance(app.screen, ConflictsScreen)
        screen = app.screen
        await until(pilot, lambda: len(screen.conflicts) == CONFLICTS_PAGE, "one page")
        assert screen.table.cursor_row == 0 and "more below" in str(screen.note.content)
        await pilot.press("ctrl+end")  # onto the "more" row
        await until(pilot, lambda: len(screen.conflicts) == many + 1, "the next page")
