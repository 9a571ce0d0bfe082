"""The ``syncd tui`` app: one document of a syncd server as a live, editable table.

The app owns one :class:`~syncd.client.Client` (persisted in
``$SYNCD_HOME/tui/``, so writes made offline survive a restart) and renders
its events. Rendering is incremental: a change marks its key dirty and a
timer applies the dirty keys to the table ten times a second, so a burst of
remote changes costs work per changed key, never per key of the document, and
input stays responsive. Re-sorting (new keys, or recency order) is debounced
the same way. Filling the table (opening a document, a large handshake,
filtering) goes in chunks that leave room for input, and :class:`KeyTable`
keeps Textual's DataTable from doing work per row on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, cast

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label
from textual.widgets.data_table import CellDoesNotExist, Row, RowDoesNotExist, RowKey

from syncd.client import Backoff, Client, Subscription, normalize_url
from syncd.crdt import CrdtError, Entry, JSONValue, wall_clock_ms
from syncd.errors import ReadOnlyError, StoreFileError
from syncd.events import Acked, Change, Event, Overridden, Presence, Rejected, State, Status
from syncd.identity import default_node, syncd_home
from syncd.protocol import check_doc_name
from syncd.settings import DEFAULT_TIMEOUT, resolve
from syncd.tui._format import age, compact, truncate, writer_of
from syncd.tui.screens import ConfirmScreen, DocPickerScreen, Edit, EditorScreen, HelpScreen
from syncd.tui.widgets import ConnectionView, DetailPane, RowView, StatusBar

__all__ = ["SyncdApp", "store_path"]

KEY_WIDTH: Final = 20
VALUE_WIDTH: Final = 30
WRITER_WIDTH: Final = 14
WHEN_WIDTH: Final = 10
FLUSH_INTERVAL: Final = 0.1
"""Seconds between applying changed keys to the table."""
RESORT_DELAY: Final = 1.0
"""Seconds a re-sort waits for more changes (a burst is sorted once)."""
AGE_INTERVAL: Final = 5.0
"""Seconds between refreshes of the visible rows' "when" column."""
READ_ONLY: Final = (
    "Read-only: the server gave this connection read access only, so edits are refused"
)
_MISSING: Final = object()
DEFAULT_BACKOFF: Final = Backoff()
FILL_CHUNK: Final = 1_000
"""Rows added to the table between two looks at the input."""
FILL_PAUSE: Final = 0.02
"""Seconds between two chunks: time for the app to handle input and redraw."""
BULK: Final = 2_000
"""Changed keys that make a full, chunked refill cheaper than row-by-row updates."""
APPLY_CHUNK: Final = 1_000
"""Changed keys applied to the table per tick at most."""
REMOVE_LIMIT: Final = 50
"""Rows removed in one tick beyond which a refill is cheaper."""
COLUMNS: Final = ("mark", "key", "value", "writer", "when")


def store_path(url: str, doc: str) -> Path:
    """Where the TUI keeps its client store for ``doc`` on the server at ``url``."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return syncd_home() / "tui" / digest / f"{doc}.store"


def known_docs(url: str) -> list[str]:
    """The documents of ``url`` this install's TUI has opened, by name."""
    folder = store_path(url, "x").parent
    with contextlib.suppress(OSError):
        return sorted(p.name.removesuffix(".store") for p in folder.glob("*.store"))
    return []


class KeyTable(DataTable[Any]):
    """A :class:`~textual.widgets.DataTable` of fixed-width columns and one-line rows,
    made to stay fast with 100,000 rows (for Textual 8.2, whose internals it uses).

    DataTable measures every cell of every new row, and after *any* change
    (even one cell) rebuilds its row order and line offsets, O(rows) each: a
    quarter of a second per frame at 100,000 rows. Here the sizes follow from the row count,
    the line of a row is its index, and the row order is rebuilt only when rows
    are removed or reordered (appended rows extend it).
    """

    _ordered: tuple[object, int, list[Row]] | None = None
    """The row order, with the ``_row_locations`` and row count it was made from."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self.row_count + header)

    @property
    def _total_row_height(self) -> int:
        return self.row_count

    def _get_offsets(self, y: int) -> tuple[RowKey, int]:
        if self.show_header:
            if y < self.header_height:
                return self._header_row_key, y
            y -= self.header_height
        key = self._row_locations.get_key(y)
        if key is None:
            raise LookupError(f"no row at line {y}")
        return key, 0

    @property
    def ordered_rows(self) -> list[Row]:
        """The rows in the order shown (kept between changes of cells)."""
        # Removing and sorting rows replace ``_row_locations``; adding a row appends.
        locations, count = self._row_locations, self.row_count
        cached = self._ordered
        if cached is not None and cached[0] is locations and cached[1] <= count:
            rows = cached[2]
        else:
            rows = []
        for index in range(len(rows), count):
            key = locations.get_key(index)
            assert key is not None  # the indexes of the rows are 0 to count - 1
            rows.append(self.rows[key])
        self._ordered = (locations, count, rows)
        return rows


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
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("o", "open_doc", "Docs"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    sort_by: reactive[str] = reactive("key")
    """``key`` or ``recent``."""
    filter_text: reactive[str] = reactive("", init=False)

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
        self.url = normalize_url(target.url)
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
        self._events: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()
        self._flash: dict[str, float] = {}
        self._resort_at: float | None = None
        self._undo: list[_Undo] = []
        self._retry_at: float | None = None
        self._skew: str | None = None
        self._live = False
        """Whether the events being handled come after a handshake (changes then flash)."""

    # -- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: timers update them while a modal screen is on top.
        self.filter_box = Input(placeholder="filter keys and values", id="filter")
        self.table = KeyTable(id="table", cursor_type="row", zebra_stripes=True)
        self.count = Label("", id="count")
        self.detail = DetailPane(id="detail")
        self.status_bar = StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.filter_box
                yield self.table
                yield self.count
            yield self.detail
        yield self.status_bar
        yield Footer()

    async def on_mount(self) -> None:
        table = self.table
        table.add_column("", width=1, key="mark")
        table.add_column("key", width=KEY_WIDTH, key="key")
        table.add_column("value", width=VALUE_WIDTH, key="value")
        table.add_column("writer", width=WRITER_WIDTH, key="writer")
        table.add_column("when", width=WHEN_WIDTH, key="when")
        self.filter_box.display = False
        self.set_interval(FLUSH_INTERVAL, self._apply_changes)
        self.set_interval(1.0, self._show_status)
        self.set_interval(AGE_INTERVAL, self._refresh_ages)
        await self._open(self.doc)
        table.focus()

    async def on_unmount(self) -> None:
        await self._close()

    # -- the client -------------------------------------------------------------------

    async def _open(self, doc: str) -> None:
        """Connect to ``doc`` (in the background: the table works offline at once)."""
        self.doc = doc
        self.sub_title = doc
        self._undo.clear()
        self._skew = None
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
        self._load()
        self._events = asyncio.create_task(self._consume(events), name="syncd tui events")

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
            self.url,
            doc,
            token=self.token,
            node=self.node if store else f"{self.node}-{secrets.token_hex(3)}",
            store=store_path(self.url, doc) if store else None,
            timeout=self.timeout,
            backoff=self.backoff,
            wall=self.now,
        )

    async def _close(self) -> None:
        client, self.client = self.client, None
        tasks = [task for task in (self._events, self._loading) if task is not None]
        self._events = self._loading = None
        if client is not None:
            await client.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _consume(self, events: Subscription[Event]) -> None:
        """Render the client's events; yields to input every few hundred of a burst."""
        handled = 0
        async for event in events:
            self._handle(event)
            handled += 1
            if handled % 200 == 0:
                await asyncio.sleep(0)

    def _handle(self, event: Event) -> None:
        if isinstance(event, Change):
            self._dirty.add(event.key)
            if not event.local and self._live:
                # A change broadcast while we watch; not one brought by a handshake.
                self._flash[event.key] = self._time() + self.flash_seconds
                if self.sort_by == "recent":
                    self._schedule_resort()
        elif isinstance(event, Acked):
            self._dirty.update(write.key for write in event.writes)
            self._skew = None
            self._show_status()
        elif isinstance(event, Overridden):
            self._dirty.add(event.write.key)
            mine = "deleted" if event.deleted else compact(event.value)
            theirs = "deleted" if event.winner.deleted else compact(event.winner.value)
            self.notify(
                f"{event.write.key!r}: your write {truncate(mine, 60)} lost to "
                f"{truncate(theirs, 60)} by {event.winner.origin}, a newer write "
                "(the newest timestamp wins)",
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
            self._dirty.update(write.key for write in event.writes)
            self._show_status()
        elif isinstance(event, Status):
            if event.state is State.SYNCED and not self._live:
                # What the handshake brought: many changes are one sorted refill,
                # a few are sorted in at once.
                if len(self._dirty) > BULK:
                    self._load()
                else:
                    self._resort_at = self._time()
            self._live = event.state is State.SYNCED
            loop = asyncio.get_running_loop()
            self._retry_at = loop.time() + event.retry_in if event.retry_in is not None else None
            self._show_status()
        elif isinstance(event, Presence):
            self._show_status()

    # -- the table --------------------------------------------------------------------

    def _time(self) -> float:
        return asyncio.get_running_loop().time()

    def _visible(self, entry: Entry | None, key: str) -> bool:
        """Whether a key has a row: live, or deleted by a write still pending."""
        if entry is None or self.client is None:
            return False
        if entry.deleted and not self.client.replica.is_pending(key):
            return False
        if not self.filter_text:
            return True
        needle = self.filter_text.casefold()
        if needle in key.casefold():
            return True
        return not entry.deleted and needle in compact(entry.value).casefold()

    def _cells(self, entry: Entry, now_ms: int) -> list[Any]:
        assert self.client is not None
        flash = entry.key in self._flash
        style = "bold on dark_green" if flash else ""
        value = (
            Text("deleted", style="strike dim")
            if entry.deleted
            else Text(truncate(compact(entry.value), VALUE_WIDTH), style=style)
        )
        return [
            Text("●", style="bold yellow") if self.client.replica.is_pending(entry.key) else "",
            entry.key,
            value,
            Text(truncate(writer_of(entry.ts), WRITER_WIDTH), style=style or "dim"),
            Text(age(entry.ts, now_ms), style=style or "dim"),
        ]

    def _load(self) -> None:
        """Refill the table from the replica (opening a document, filtering, many changes).

        Rows are added in chunks, yielding to input between them: 100,000 keys take
        seconds to add, and the screen stays usable meanwhile.
        """
        if self._loading is not None:
            self._loading.cancel()
        cursor_key = self._selected_key()
        self.table.clear()
        self._dirty.clear()  # the load reads the replica as it is now
        if self.client is None:
            return
        entries = [
            e for e in self.client.replica.document.changes_since(0) if self._visible(e, e.key)
        ]
        if self.sort_by == "recent":
            entries.sort(key=lambda e: e.ts, reverse=True)
        else:
            entries.sort(key=lambda e: e.key)
        self._loading = asyncio.create_task(self._fill(entries, cursor_key), name="tui load")

    async def _fill(self, entries: list[Entry], cursor_key: str | None) -> None:
        table = self.table
        client = self.client
        cursor = 0  # where the fill put the cursor: if it is still there, the user has not moved
        for start in range(0, len(entries), FILL_CHUNK):
            now_ms = self.now()
            for entry in entries[start : start + FILL_CHUNK]:
                if entry.key not in table.rows and client is not None:
                    # The replica may have moved on since the list was made.
                    latest = client.entry(entry.key) or entry
                    table.add_row(*self._cells(latest, now_ms), key=entry.key)
            if start == 0:
                table.move_cursor(row=0)
            if cursor_key is not None and cursor_key in table.rows and table.cursor_row == cursor:
                cursor = table.get_row_index(cursor_key)
                table.move_cursor(row=cursor, scroll=True)
                cursor_key = None
            self._show_count()
            await asyncio.sleep(FILL_PAUSE)
        self._loading = None
        self._show_count()
        self._show_detail()

    def _apply_changes(self) -> None:
        """Apply the changed keys to the table: work per changed key only."""
        if self.client is None:
            return
        now = self._time()
        expired = [key for key, until in self._flash.items() if until <= now]
        for key in expired:
            del self._flash[key]
        if not self._live and len(self._dirty) > BULK:
            return  # a large handshake: its end refills the table in one go
        # At most APPLY_CHUNK keys a tick: a long burst is spread over several.
        dirty = set(itertools.islice(self._dirty, APPLY_CHUNK)) | set(expired)
        self._dirty.difference_update(dirty)
        table = self.table
        was_empty = table.row_count == 0
        now_ms = self.now()
        added = False
        gone: list[str] = []
        for key in dirty:
            entry = self.client.entry(key)
            present = key in table.rows
            if not present and self._loading is not None:
                self._dirty.add(key)  # the fill may still add it: decide once it is done
                continue
            if not self._visible(entry, key):
                if present:
                    gone.append(key)
                continue
            assert entry is not None
            cells = self._cells(entry, now_ms)
            if present:
                for column, cell in zip(COLUMNS, cells, strict=True):
                    table.update_cell(key, column, cell)
            else:
                table.add_row(*cells, key=key)
                added = True
        if len(gone) > REMOVE_LIMIT:
            self._load()  # each removal costs O(rows) in DataTable: refill once instead
            return
        for key in gone:
            table.remove_row(key)
        if added:
            if self._live:
                self._schedule_resort()
            else:
                self._resort_at = now  # a handshake's rows: sorted before they are seen
        if self._resort_at is not None and now >= self._resort_at:
            self._resort_at = None
            self._sort()
            if was_empty:
                table.move_cursor(row=0)  # the first rows: start at the top
        if dirty:
            self._show_count()
            self._show_detail()
            self._show_status()

    def _schedule_resort(self) -> None:
        if self._resort_at is None:
            self._resort_at = self._time() + RESORT_DELAY

    def _sort(self) -> None:
        client = self.client
        if client is None:
            return
        table = self.table
        key = self._selected_key()
        if self.sort_by == "recent":

            def recency(k: str) -> str:
                entry = client.entry(k)
                return entry.ts if entry is not None else ""

            table.sort("key", key=recency, reverse=True)
        else:
            table.sort("key")
        if key is not None and key in table.rows:
            table.move_cursor(row=table.get_row_index(key))

    def _refresh_ages(self) -> None:
        """Re-render the "when" column of the rows on screen (times move on)."""
        client = self.client
        if client is None:
            return
        table = self.table
        rows = table.ordered_rows
        first = int(table.scroll_offset.y)
        now_ms = self.now()
        for row in rows[first : first + table.size.height]:
            key = row.key.value
            entry = client.entry(key) if key is not None else None
            if key is not None and entry is not None and key not in self._flash:
                with contextlib.suppress(CellDoesNotExist, RowDoesNotExist):
                    table.update_cell(key, "when", Text(age(entry.ts, now_ms), style="dim"))

    def _selected_key(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        try:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return row_key.value

    def _show_count(self) -> None:
        total = len(self.client) if self.client is not None else 0
        shown = self.table.row_count
        sort = "key" if self.sort_by == "key" else "most recent"
        text = f"{shown:,} of {total:,} keys" if self.filter_text else f"{total:,} keys"
        self.count.update(f" {text} · sorted by {sort}")

    def _show_detail(self) -> None:
        pane = self.detail
        key = self._selected_key()
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
                retry_in=retry_in,
                peers=len(client.peers),
                pending=client.pending_count,
                readonly=client.readonly,
                skew=self._skew,
                error=status.error,
            )
        )

    @on(DataTable.RowHighlighted, "#table")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#table")
    def _selected(self) -> None:
        self.action_edit()

    # -- filtering and sorting --------------------------------------------------------

    def action_filter(self) -> None:
        """Show the filter box and type into it."""
        box = self.filter_box
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter."""
        box = self.filter_box
        box.value = ""
        box.display = False
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def watch_filter_text(self) -> None:
        self._load()

    def action_sort(self) -> None:
        """Toggle sorting by key and by most recent change."""
        self.sort_by = "recent" if self.sort_by == "key" else "key"

    def watch_sort_by(self) -> None:
        if self._loading is not None:
            self._load()  # the rows still to come would not be in order
        elif self.client is not None:
            self._sort()
            self._show_count()

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
        key = self._selected_key()
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
            if edit.key in self.table.rows:
                self.table.move_cursor(row=self.table.get_row_index(edit.key), scroll=True)

    def action_delete(self) -> None:
        """Delete the selected key, once confirmed."""
        key = self._selected_key()
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
        client = self.client
        if client is None:
            return
        entry = client.entry(key)
        before: JSONValue | object = (
            entry.value if entry is not None and not entry.deleted else _MISSING
        )
        try:
            if value is _MISSING:
                await client.delete(key, wait=False)
            else:
                await client.set(key, cast(JSONValue, value), wait=False)
        except ReadOnlyError:
            self.notify(READ_ONLY, severity="error", timeout=6)
            return
        except CrdtError as error:
            self.notify(f"Cannot write {key!r}: {error}", severity="error", timeout=8)
            return
        if undoable:
            self._undo.append(_Undo(key, before))
        self._apply_changes()

    def action_copy(self) -> None:
        """Copy the selected value to the clipboard (where the terminal allows: OSC 52)."""
        key = self._selected_key()
        entry = self.client.entry(key) if self.client is not None and key else None
        if entry is None or entry.deleted:
            return
        value = entry.value
        self.copy_to_clipboard(value if isinstance(value, str) else compact(value))
        self.notify(f"Copied the value of {truncate(key or '', 60)!r}", timeout=3)

    # -- documents, help, the command palette ------------------------------------------

    def action_open_doc(self) -> None:
        """Pick another document (or create one)."""
        docs = sorted(set(known_docs(self.url)) | {self.doc})

        async def picked(doc: str | None) -> None:
            if doc is not None and doc != self.doc:
                await self.switch_doc(doc)

        self.push_screen(DocPickerScreen(docs, self.doc), picked)

    async def switch_doc(self, doc: str) -> None:
        """Close the current document and open ``doc``."""
        await self._close()
        self._flash.clear()
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
        yield SystemCommand("Filter", "Filter keys and values as you type", self.action_filter)
        yield SystemCommand("Sort", "Sort by key or by most recent change", self.action_sort)
        yield SystemCommand(
            "Open a document", "Switch to or create a document", self.action_open_doc
        )
        yield SystemCommand("Help", "Bindings and how syncing works", self.action_help)
