"""The document as a table: a filter box, one row per key, and a line counting the keys.

:class:`DocumentTable` reads a :class:`~syncd.client.Client`'s replica; the app
tells it which keys changed. Rendering is incremental: a change marks its key
dirty and a timer applies the dirty keys to the table ten times a second, so a
burst of remote changes costs work per changed key, never per key of the
document, and input stays responsive. Re-sorting (new keys, or recency order)
is debounced the same way. Filling the table (opening a document, a large
handshake, filtering) runs in a worker, in chunks that leave room for input,
and :class:`~syncd.tui._key_table.KeyTable` keeps Textual's DataTable from
doing work per row on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Label
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist
from textual.worker import Worker

from syncd.client import Client
from syncd.crdt import Entry
from syncd.tui._format import age, compact, truncate, writer_of
from syncd.tui._key_table import KeyTable

__all__ = ["DocumentTable"]

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


class DocumentTable(Vertical):
    """The keys of one document (live ones, and deletes still pending), filtered and sorted."""

    class RowsChanged(Message):
        """Rows were added, updated or removed: the selected row may show something new."""

    sort_by: reactive[str] = reactive("key")
    """``key`` or ``recent``."""
    filter_text: reactive[str] = reactive("", init=False)

    def __init__(
        self, *, now: Callable[[], int], flash_seconds: float, id: str | None = None
    ) -> None:
        """``now`` reads the wall clock in milliseconds (the "when" column is relative to it);
        a remote change is highlighted for ``flash_seconds``."""
        super().__init__(id=id)
        self.now = now
        self.flash_seconds = flash_seconds
        self.client: Client | None = None
        self.filter_box = Input(placeholder="filter keys and values", id="filter")
        self.table = KeyTable(id="table", cursor_type="row", zebra_stripes=True)
        self.count = Label("", id="count")
        self.filling: Worker[None] | None = None
        """The fill in progress, if any."""
        self.live = False
        """Whether the changes come after a handshake (remote changes then flash)."""
        self._dirty: set[str] = set()
        self._flash: dict[str, float] = {}
        self._resort_at: float | None = None

    def compose(self) -> ComposeResult:
        yield self.filter_box
        yield self.table
        yield self.count

    def on_mount(self) -> None:
        table = self.table
        table.add_column("", width=1, key="mark")
        table.add_column("key", width=KEY_WIDTH, key="key")
        table.add_column("value", width=VALUE_WIDTH, key="value")
        table.add_column("writer", width=WRITER_WIDTH, key="writer")
        table.add_column("when", width=WHEN_WIDTH, key="when")
        self.filter_box.display = False
        self.set_interval(FLUSH_INTERVAL, self.apply_changes)
        self.set_interval(AGE_INTERVAL, self._refresh_ages)

    # -- what the app tells it -----------------------------------------------------------

    def show(self, client: Client | None) -> None:
        """Show the replica of ``client`` (``None``: nothing), from a fresh fill."""
        self.client = client
        self.live = False
        self._flash.clear()
        self._resort_at = None
        self.load()

    def changed(self, key: str, *, remote: bool) -> None:
        """``key`` changed in the replica; a remote change after the handshake flashes."""
        self._dirty.add(key)
        if remote and self.live:
            self._flash[key] = self._time() + self.flash_seconds
            if self.sort_by == "recent":
                self._schedule_resort()

    def touched(self, keys: Iterable[str]) -> None:
        """The rows of ``keys`` need drawing again (their writes were acked or refused)."""
        self._dirty.update(keys)

    def connection(self, *, synced: bool) -> None:
        """The client's connection is synced (after a handshake) or not."""
        if synced and not self.live:
            # What the handshake brought: many changes are one sorted refill,
            # a few are sorted in at once.
            if len(self._dirty) > BULK:
                self.load()
            else:
                self._resort_at = self._time()
        self.live = synced

    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return row_key.value

    def select(self, key: str) -> None:
        """Move the cursor to the row of ``key``, if it has one."""
        if key in self.table.rows:
            self.table.move_cursor(row=self.table.get_row_index(key), scroll=True)

    # -- filtering and sorting ----------------------------------------------------------

    def open_filter(self) -> None:
        """Show the filter box and type into it."""
        box = self.filter_box
        box.display = True
        box.focus()

    def clear_filter(self) -> None:
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
        self.load()

    def toggle_sort(self) -> None:
        """Sort by key, or by most recent change."""
        self.sort_by = "recent" if self.sort_by == "key" else "key"

    def watch_sort_by(self) -> None:
        if self.filling is not None:
            self.load()  # the rows still to come would not be in order
        elif self.client is not None:
            self._sort()
            self._show_count()

    # -- the rows ------------------------------------------------------------------------

    def load(self) -> None:
        """Refill the table from the replica (opening a document, filtering, many changes).

        Rows are added in chunks by a worker, yielding to input between them:
        100,000 keys take seconds to add, and the screen stays usable meanwhile.
        """
        if self.filling is not None:
            self.filling.cancel()
            self.filling = None
        cursor_key = self.selected_key()
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
        self.filling = self._fill(entries, cursor_key)

    @work(exclusive=True, group="fill")
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
        self.filling = None
        self._show_count()
        self.post_message(self.RowsChanged())

    def apply_changes(self) -> None:
        """Apply the changed keys to the table: work per changed key only."""
        if self.client is None:
            return
        now = self._time()
        expired = [key for key, until in self._flash.items() if until <= now]
        for key in expired:
            del self._flash[key]
        if not self.live and len(self._dirty) > BULK:
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
            if not present and self.filling is not None:
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
            self.load()  # each removal costs O(rows) in DataTable: refill once instead
            return
        for key in gone:
            table.remove_row(key)
        if added:
            if self.live:
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
            self.post_message(self.RowsChanged())

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

    def _schedule_resort(self) -> None:
        if self._resort_at is None:
            self._resort_at = self._time() + RESORT_DELAY

    def _sort(self) -> None:
        client = self.client
        if client is None:
            return
        table = self.table
        key = self.selected_key()
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

    def _show_count(self) -> None:
        total = len(self.client) if self.client is not None else 0
        shown = self.table.row_count
        sort = "key" if self.sort_by == "key" else "most recent"
        keys = "key" if total == 1 else "keys"
        text = f"{shown:,} of {total:,} {keys}" if self.filter_text else f"{total:,} {keys}"
        self.count.update(f" {text} · sorted by {sort}")
