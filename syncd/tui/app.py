"""The ``syncd tui`` app: one document of a syncd server as a live, editable table.

The app owns one :class:`~syncd.client.Client` (persisted in
``$SYNCD_HOME/tui/``, so writes made offline survive a restart). A worker
reads the client's events and posts them to the app in batches
(:class:`SyncdApp.ClientEvents`), one batch at a time, so a burst never floods
the app's queue ahead of a key press; the app tells the
:class:`~syncd.tui.document_table.DocumentTable` which keys changed and keeps
the status bar, the detail pane and the notifications up to date. Edits go
through modal screens (:mod:`syncd.tui.screens`) and the client. The server's
history shows in the side pane (:mod:`syncd.tui.history_pane`, ``h``) and in
the conflicts view (:mod:`syncd.tui.conflicts_screen`, ``x``); restoring an
old version or a lost write is a new write, like any edit
(:meth:`syncd.client.Client.restore`, shared with ``syncd restore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, cast

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer
from textual.worker import Worker

from syncd.client import Backoff, Client, Subscription
from syncd.client_store import store_file
from syncd.crdt import JSONValue, wall_clock_ms
from syncd.errors import ReadOnlyError, StoreFileError, SyncdError
from syncd.events import (
    Acked,
    Change,
    Event,
    Overridden,
    Presence,
    Rejected,
    State,
    Status,
    Write,
)
from syncd.history_wire import Version
from syncd.identity import default_node, syncd_home
from syncd.places import place_of
from syncd.protocol import check_doc_name
from syncd.settings import DEFAULT_TIMEOUT, resolve
from syncd.tui._format import compact, truncate, utc_time
from syncd.tui.conflicts_screen import ConflictsScreen
from syncd.tui.document_table import DocumentTable
from syncd.tui.history_pane import HistoryPane
from syncd.tui.screens import ConfirmScreen, DocPickerScreen, Edit, EditorScreen, HelpScreen
from syncd.tui.widgets import ConnectionView, DetailPane, RowView, StatusBar
from syncd.urls import parse_urls

__all__ = ["SyncdApp", "store_path"]

READ_ONLY: Final = (
    "Read-only: the server gave this connection read access only, so edits are refused"
)
_MISSING: Final = object()
DEFAULT_BACKOFF: Final = Backoff()
EVENT_BATCH: Final = 2_000
"""Client events posted to the app in one message at most."""
MAIN_SCREEN_ACTIONS: Final = frozenset(
    {"add", "edit", "delete", "copy", "filter", "sort", "open_doc", "history", "conflicts"}
)
"""Actions on the table's selection: off while the conflicts view covers the table."""


def store_path(url: str, doc: str) -> Path:
    """Where the TUI keeps its client store for ``doc`` of a place (a cluster or a URL:
    :mod:`syncd.places`)."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return syncd_home() / "tui" / digest / f"{doc}.store"


def known_docs(url: str) -> list[str]:
    """The documents of ``url`` this install's TUI has opened, by name."""
    folder = store_path(url, "x").parent
    with contextlib.suppress(OSError):
        return sorted(p.name.removesuffix(".store") for p in folder.glob("*.store"))
    return []


@dataclass(frozen=True)
class _Undo:
    """How to undo one of our writes: the key and what it held before."""

    key: str
    before: JSONValue | object


class SyncdApp(App[None]):
    """The terminal editor of one syncd document."""

    CSS_PATH = "syncd.tcss"
    TITLE = "syncd"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add"),
        Binding("e,enter", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("u", "undo", "Undo"),
        Binding("c", "copy", "Copy"),
        Binding("h", "history", "History"),
        Binding("x", "conflicts", "Conflicts"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("o", "open_doc", "Docs"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class ClientEvents(Message):
        """Events of the app's client, in the order it published them."""

        def __init__(self, client: Client, events: list[Event]) -> None:
            super().__init__()
            self.client = client
            self.events = events
            self.handled = asyncio.Event()
            """Set once the app has handled them: the worker waits for it."""

    def __init__(
        self,
        url: str | None = None,
        doc: str | None = None,
        *,
        token: str | None = None,
        node: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: Backoff = DEFAULT_BACKOFF,
        now: Callable[[], int] = wall_clock_ms,
        flash_seconds: float = 1.5,
    ) -> None:
        """``now`` reads the wall clock in milliseconds: the client stamps writes with it
        and the "when" column is relative to it (tests freeze it)."""
        super().__init__()
        target = resolve(url, doc, token)
        self.urls = parse_urls(target.url)
        self.url = self.urls[0]
        self.doc = check_doc_name(target.doc)
        self.token = target.token
        self.node = node or default_node("tui")
        self.timeout = timeout
        self.backoff = backoff
        self.now = now
        self.flash_seconds = flash_seconds
        self.client: Client | None = None
        self.shared_store = False
        """Whether the document's store was unusable (most often: another TUI has it),
        so edits made offline are not kept after quitting."""
        self._events: Worker[None] | None = None
        self._undo: list[_Undo] = []
        self._retry_at: float | None = None
        self._skew: str | None = None
        self._lost: Write | None = None
        """Our write the last "your write lost" notice was about: the conflicts view
        selects its conflict."""

    @property
    def _loading(self) -> Worker[None] | None:
        """The table's fill in progress, if any."""
        return self.document.filling

    # -- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: timers update them while a modal screen is on top.
        self.document = DocumentTable(now=self.now, flash_seconds=self.flash_seconds, id="left")
        self.table = self.document.table
        self.count = self.document.count
        self.detail = DetailPane(id="detail")
        self.history = HistoryPane(id="history")
        self.status_bar = StatusBar(id="status")
        with Horizontal(id="main"):
            yield self.document
            yield self.detail
            yield self.history
        yield self.status_bar
        yield Footer()

    async def on_mount(self) -> None:
        self.set_interval(1.0, self._show_status)
        await self._open(self.doc)
        self.table.focus()

    async def on_unmount(self) -> None:
        await self._close()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        covered = isinstance(self.screen, ConflictsScreen)
        return not (covered and action in MAIN_SCREEN_ACTIONS)

    # -- the client -------------------------------------------------------------------

    async def _open(self, doc: str) -> None:
        """Connect to ``doc`` (in the background: the table works offline at once)."""
        self.doc = doc
        self.sub_title = doc
        self._undo.clear()
        self._skew = None
        self._lost = None
        self._close_history()
        self.shared_store = False
        try:
            client, events = await self._connect(doc, store=True)
        except StoreFileError as error:
            # Most often another TUI on this machine has the document open: work
            # without a store, under a node id of our own (two writers must never
            # share one).
            client, events = await self._connect(doc, store=False)
            self.shared_store = True
            self.notify(
                f"{error}: edits made here while offline are not kept after quitting",
                title="Working without a local copy",
                severity="warning",
                timeout=8,
            )
        self.client = client
        self.document.show(client)
        self._events = self._consume(client, events)

    async def _connect(self, doc: str, *, store: bool) -> tuple[Client, Subscription[Event]]:
        """A client of ``doc``, connecting in the background, and its events."""
        client = self._client(doc, store=store)
        events = client.events()
        try:
            await client.connect(wait=False)
        except BaseException:
            events.close()
            raise
        return client, events

    def _client(self, doc: str, *, store: bool) -> Client:
        return Client(
            self.urls,
            doc,
            token=self.token,
            node=self.node if store else f"{self.node}-{secrets.token_hex(3)}",
            store=store_file(place_of(self.urls), lambda key: store_path(key, doc))
            if store
            else None,
            timeout=self.timeout,
            backoff=self.backoff,
            wall=self.now,
        )

    async def _close(self) -> None:
        client, self.client = self.client, None
        events, self._events = self._events, None
        self.document.show(None)
        if client is not None:
            await client.close()
        if events is not None:
            events.cancel()

    @work(exclusive=True, group="client events")
    async def _consume(self, client: Client, events: Subscription[Event]) -> None:
        """Post the client's events to the app, a batch at a time, until the client closes.

        A batch is what the client has queued (up to :data:`EVENT_BATCH`); the
        next waits until the app has handled it, so input queued meanwhile is
        handled between two batches of a burst.
        """
        with events:
            while batch := await _queued_events(events, EVENT_BATCH):
                message = self.ClientEvents(client, batch)
                if not self.post_message(message):
                    return  # the app is closing
                await message.handled.wait()

    @on(ClientEvents)
    def _client_events(self, message: ClientEvents) -> None:
        try:
            if message.client is self.client:  # not a document closed since
                for event in message.events:
                    self._handle(event)
        finally:
            message.handled.set()

    def _handle(self, event: Event) -> None:
        if isinstance(event, Change):
            self.document.changed(event.key, remote=not event.local)
            if not event.local:
                self._history_grew([event.key])
        elif isinstance(event, Acked):
            self.document.touched(write.key for write in event.writes)
            self._history_grew(write.key for write in event.writes)
            self._skew = None
            self._show_status()
        elif isinstance(event, Overridden):
            self.document.touched([event.write.key])
            self._lost = event.write
            mine = "deleted" if event.deleted else compact(event.value)
            theirs = "deleted" if event.winner.deleted else compact(event.winner.value)
            self.notify(
                f"{event.write.key!r}: your write {truncate(mine, 60)} lost to "
                f"{truncate(theirs, 60)} by {event.winner.origin}, a newer write "
                "(the newest timestamp wins). Press x to open the conflict",
                title="Your change was overridden",
                severity="warning",
                timeout=12,
            )
        elif isinstance(event, Rejected):
            if event.code == "clock_skew":
                self._skew = "the server refused a write: check this computer's clock"
            elif event.retry_after is None:
                self.notify(
                    f"The server refused {len(event.writes)} change(s): {event.message}; "
                    "undone, the server's value is shown",
                    severity="error",
                    timeout=10,
                )
            self.document.touched(write.key for write in event.writes)
            self._show_status()
        elif isinstance(event, Status):
            self.document.connection(synced=event.state is State.SYNCED)
            loop = asyncio.get_running_loop()
            self._retry_at = loop.time() + event.retry_in if event.retry_in is not None else None
            self._show_status()
        elif isinstance(event, Presence):
            self._show_status()

    # -- the detail pane and the status bar ----------------------------------------------

    def _time(self) -> float:
        return asyncio.get_running_loop().time()

    def _show_detail(self) -> None:
        pane = self.detail
        key = self.document.selected_key()
        entry = self.client.entry(key) if self.client is not None and key is not None else None
        if key is None or entry is None or self.client is None:
            pane.show(None)
            return
        pane.show(
            RowView(key, entry.value, entry.deleted, entry.ts, self.client.replica.is_pending(key))
        )

    def _show_status(self) -> None:
        client = self.client
        if client is None:
            return
        status = client.status
        retry_in = None
        if status.state is State.OFFLINE and self._retry_at is not None:
            retry_in = max(math.ceil(self._retry_at - self._time()), 0)
        state = {
            State.SYNCED: "connected",
            State.CONNECTING: "connecting",
            State.OFFLINE: "reconnecting" if retry_in is not None else "offline",
            State.FAILED: "failed",
            State.CLOSED: "closed",
        }[status.state]
        self.status_bar.show(
            ConnectionView(
                state=state,
                url=client.url,
                doc=client.doc,
                server=client.server_node,
                retry_in=retry_in,
                peers=len(client.peers),
                pending=client.pending_count,
                readonly=client.readonly,
                skew=self._skew,
                error=status.error,
            )
        )

    @on(DocumentTable.RowsChanged)
    def _rows_changed(self) -> None:
        self._show_detail()
        self._show_status()

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#table")
    def _selected(self) -> None:
        self.action_edit()

    # -- filtering and sorting --------------------------------------------------------

    def action_filter(self) -> None:
        """Show the filter box and type into it."""
        self.document.open_filter()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter."""
        self.document.clear_filter()

    def action_sort(self) -> None:
        """Toggle sorting by key and by most recent change."""
        self.document.toggle_sort()

    # -- editing ----------------------------------------------------------------------

    def _writable(self) -> Client | None:
        client = self.client
        if client is None:
            return None
        if client.readonly:
            self.notify(READ_ONLY, severity="error", timeout=6)
            return None
        return client

    def action_add(self) -> None:
        """Add a key, in the editor."""
        if (client := self._writable()) is not None:
            self.push_screen(
                EditorScreen(None, "", max_bytes=client.replica.max_value_bytes), self._edited
            )

    def action_edit(self) -> None:
        """Edit the selected value, in the editor."""
        key = self.document.selected_key()
        if key is None:
            self.action_add()
            return
        if (client := self._writable()) is not None:
            entry = client.entry(key)
            value = entry.value if entry is not None and not entry.deleted else ""
            self.push_screen(
                EditorScreen(key, value, max_bytes=client.replica.max_value_bytes), self._edited
            )

    async def _edited(self, edit: Edit | None) -> None:
        if edit is not None:
            await self._write(edit.key, edit.value)
            self.document.select(edit.key)

    def action_delete(self) -> None:
        """Delete the selected key, once confirmed."""
        key = self.document.selected_key()
        if key is None or self._writable() is None:
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._write(key, _MISSING)

        self.push_screen(ConfirmScreen(f"Delete {truncate(key, 60)!r}?"), answered)

    async def action_undo(self) -> None:
        """Undo our last change, by writing back what the key held before."""
        if not self._undo:
            self.notify("Nothing to undo", timeout=3)
            return
        if self._writable() is None:
            return
        undo = self._undo.pop()
        await self._write(undo.key, undo.before, undoable=False)
        self.notify(f"Undid the change of {truncate(undo.key, 60)!r}", timeout=3)

    async def _write(self, key: str, value: JSONValue | object, *, undoable: bool = True) -> None:
        """Write ``value`` under ``key`` (``_MISSING``: delete it), sent in the background."""

        async def write(client: Client) -> Change:
            if value is _MISSING:
                return await client.delete(key, wait=False)
            return await client.set(key, cast(JSONValue, value), wait=False)

        await self._change(key, write, undoable=undoable)

    async def _change(
        self, key: str, write: Callable[[Client], Awaitable[Change]], *, undoable: bool = True
    ) -> bool:
        """Make one write to ``key`` with the client (sent in the background); whether
        it was made. Our writes can be undone: the key's value before is kept."""
        client = self.client
        if client is None:
            return False
        entry = client.entry(key)
        before: JSONValue | object = (
            entry.value if entry is not None and not entry.deleted else _MISSING
        )
        try:
            await write(client)
        except ReadOnlyError:
            self.notify(READ_ONLY, severity="error", timeout=6)
            return False
        except SyncdError as error:  # a key or value the core refuses, a value forgotten
            self.notify(f"Cannot write {key!r}: {error}", severity="error", timeout=8)
            return False
        if undoable:
            self._undo.append(_Undo(key, before))
        self.document.apply_changes()
        return True

    async def _restore(self, key: str, version: Version) -> None:
        """Write ``version`` of ``key`` again, as a new write (it can be undone)."""
        if self._writable() is None:
            return

        async def write(client: Client) -> Change:
            return await client.restore(key, version, wait=False)

        if await self._change(key, write):
            shown = "deleted" if version.deleted else truncate(compact(version.value), 60)
            self.notify(
                f"Restored {truncate(key, 60)!r} to {shown} "
                f"(written by {version.node} at {utc_time(version.ts)}); u undoes it",
                timeout=5,
            )

    # -- history and conflicts -----------------------------------------------------------

    def action_history(self) -> None:
        """Show the selected key's history in the side pane."""
        key = self.document.selected_key()
        if key is None or self.client is None:
            self.notify("Select a key to see its history", timeout=3)
            return
        self.detail.display = False
        self.history.display = True
        self.history.open(self.client, key)
        self.history.options.focus()

    def _close_history(self) -> None:
        if self.history.display:
            self.history.display = False
            self.detail.display = True
            self.table.focus()

    def _history_grew(self, keys: Iterable[str]) -> None:
        """The server has new versions of ``keys``: read the history shown again."""
        if self.history.display and self.history.key in set(keys):
            self.history.reload()

    @on(HistoryPane.Closed)
    def _history_closed(self) -> None:
        self._close_history()

    @on(HistoryPane.Restore)
    @on(ConflictsScreen.Restore)
    async def _restore_asked(self, message: HistoryPane.Restore | ConflictsScreen.Restore) -> None:
        await self._restore(message.key, message.version)

    def action_conflicts(self) -> None:
        """Show the document's overridden writes (selecting the last notice's, if any)."""
        client = self.client
        if client is None:
            return
        find, self._lost = self._lost, None

        def closed(key: str | None) -> None:
            if key is not None:
                self.document.select(key)

        self.push_screen(ConflictsScreen(client, doc=self.doc, find=find), closed)

    def action_copy(self) -> None:
        """Copy the selected value to the clipboard (where the terminal allows: OSC 52)."""
        key = self.document.selected_key()
        entry = self.client.entry(key) if self.client is not None and key else None
        if entry is None or entry.deleted:
            return
        value = entry.value
        self.copy_to_clipboard(value if isinstance(value, str) else compact(value))
        self.notify(f"Copied the value of {truncate(key or '', 60)!r}", timeout=3)

    # -- documents, help, the command palette ------------------------------------------

    def action_open_doc(self) -> None:
        """Pick another document (or create one)."""
        docs = sorted(set(known_docs(place_of(self.urls).key)) | {self.doc})

        async def picked(doc: str | None) -> None:
            if doc is not None and doc != self.doc:
                await self.switch_doc(doc)

        self.push_screen(DocPickerScreen(docs, self.doc), picked)

    async def switch_doc(self, doc: str) -> None:
        """Close the current document and open ``doc``."""
        await self._close()
        await self._open(doc)
        self._show_status()

    def action_help(self) -> None:
        """Show the help screen."""
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Add a key", "Add a key and its value", self.action_add)
        yield SystemCommand("Edit the value", "Edit the selected value", self.action_edit)
        yield SystemCommand("Delete the key", "Delete the selected key", self.action_delete)
        yield SystemCommand("Undo", "Undo your last change", self.action_undo)
        yield SystemCommand("Copy the value", "Copy the selected value", self.action_copy)
        yield SystemCommand(
            "History", "The selected key's versions; restore one", self.action_history
        )
        yield SystemCommand(
            "Conflicts", "Overridden writes of the document, yours marked", self.action_conflicts
        )
        yield SystemCommand("Filter", "Filter keys and values as you type", self.action_filter)
        yield SystemCommand("Sort", "Sort by key or by most recent change", self.action_sort)
        yield SystemCommand(
            "Open a document", "Switch to or create a document", self.action_open_doc
        )
        yield SystemCommand("Help", "Bindings and how syncing works", self.action_help)


async def _queued_events(events: Subscription[Event], limit: int) -> list[Event]:
    """The next event (waiting for it), then the events already queued behind it, up to
    ``limit``; empty once the client is closed."""
    batch: list[Event] = []
    with contextlib.suppress(StopAsyncIteration):
        batch.append(await anext(events))
        # A zero timeout ends the batch at the first wait: a queued event is taken
        # without one, so the wait means the queue is empty.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0):
                while len(batch) < limit:
                    batch.append(await anext(events))
    return batch
