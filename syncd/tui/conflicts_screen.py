"""The conflicts view: the document's overridden writes, newest first, the user's own marked.

:class:`ConflictsScreen` reads the server's record of writes that lost their
merge (``conflicts`` requests, :meth:`syncd.client.Client.conflicts`) in a
worker, a page at a time: the next page loads when the cursor reaches the
"more" row. Opened for one lost write (the "your write lost" notice), it reads
on until that write's conflict is found (a few pages at most) and selects it.
``enter`` (or ``g``) closes the view on the conflict's key; ``r`` asks the app to write
the lost value again (:class:`ConflictsScreen.Restore`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from syncd.client import Client
from syncd.errors import SyncdError
from syncd.events import Write
from syncd.history_wire import Conflict, Version
from syncd.tui._format import compact, truncate, utc_time

__all__ = ["PAGE_SIZE", "ConflictsScreen"]

PAGE_SIZE: Final = 100
"""Conflicts read per request."""
SEARCH_PAGES: Final = 5
"""Pages read at most to find the conflict the view was opened for."""
MORE: Final = "more"
VALUE_WIDTH: Final = 24


def _value(version: Version) -> Text:
    if not version.known:
        return Text("(no longer in the history)", style="dim")
    if version.deleted:
        return Text("deleted", style="strike dim")
    return Text(truncate(compact(version.value), VALUE_WIDTH))


class ConflictsScreen(Screen[str | None]):
    """The overridden writes of the document; dismissed with a key to go to, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,x,q", "close", "Close"),
        Binding("g", "go", "Go to key"),
        Binding("r", "restore", "Restore lost value"),
    ]

    class Restore(Message):
        """The user asked to write the lost value of ``key`` again."""

        def __init__(self, key: str, version: Version) -> None:
            super().__init__()
            self.key = key
            self.version = version

    class _Page(Message):
        """A page of conflicts arrived (or the reason it did not)."""

        def __init__(self, conflicts: list[Conflict], next: int | None, error: str | None) -> None:
            super().__init__()
            self.conflicts = conflicts
            self.next = next
            self.error = error

    def __init__(self, client: Client, *, doc: str, find: Write | None = None) -> None:
        """``find``: the lost write whose conflict to select once read."""
        super().__init__()
        self.client = client
        self.doc = doc
        self.find = find
        self.conflicts: list[Conflict] = []
        self.next: int | None = None
        self.loading = False
        self._searched = 0
        self.table: DataTable[Any] = DataTable(id="conflicts", cursor_type="row")
        self.note = Static("", id="conflicts-note")

    def compose(self) -> ComposeResult:
        with Vertical(id="conflicts-view"):
            yield Static(
                Text.assemble(
                    ("Overridden writes of ", "bold"),
                    (self.doc, "bold"),
                    ("  (newest first; ★ marks yours)", "dim"),
                ),
                id="conflicts-title",
            )
            yield self.table
            yield self.note
        yield Footer()

    def on_mount(self) -> None:
        table = self.table
        table.add_column("", width=1, key="mine")
        table.add_column("time (UTC)", width=23, key="time")
        table.add_column("key", width=16, key="key")
        table.add_column("lost", width=VALUE_WIDTH, key="lost")
        table.add_column("by", width=14, key="by")
        table.add_column("overridden by", width=VALUE_WIDTH, key="winner")
        table.add_column("by", width=14, key="winner_by")
        table.focus()
        self._fetch_page(None)

    # -- pages --------------------------------------------------------------------------

    def _fetch_page(self, before: int | None) -> None:
        self.loading = True
        self.note.update(Text("Reading the conflicts…", style="dim"))
        self._fetch(before)

    @work(exclusive=True, group="conflicts page")
    async def _fetch(self, before: int | None) -> None:
        client = self.client
        if not client.synced:
            message = "Not connected: the conflicts are read from the server once connected."
            self.post_message(self._Page([], None, message))
            return
        try:
            found, next = await client.conflicts(limit=PAGE_SIZE, before=before)
        except SyncdError as error:
            self.post_message(self._Page([], None, f"Cannot read the conflicts: {error}"))
            return
        self.post_message(self._Page(found, next, None))

    @on(_Page)
    def _page(self, page: _Page) -> None:
        self.loading = False
        table = self.table
        if MORE in table.rows:
            table.remove_row(MORE)
        self.next = page.next
        own = self.client.node
        for conflict in page.conflicts:
            mine = conflict.lost.node == own
            table.add_row(
                Text("★", style="bold yellow") if mine else "",
                Text(utc_time(conflict.lost.ts).removesuffix(" UTC"), style="dim"),
                conflict.key,
                _value(conflict.lost),
                Text("you" if mine else conflict.lost.node, style="bold" if mine else ""),
                _value(conflict.winner),
                conflict.winner.node,
                key=str(len(self.conflicts)),
            )
            self.conflicts.append(conflict)
        if page.next is not None:
            table.add_row("", Text("more…", style="italic dim"), "", "", "", "", "", key=MORE)
        self.note.update(self._note(page.error))
        if page.error is None:
            self._select_found()
        else:
            self.find = None  # the note says why nothing is listed

    def _note(self, error: str | None) -> Text:
        if error is not None:
            return Text(error, style="bold red")
        if not self.conflicts:
            return Text(
                "No overridden writes recorded (or the server keeps no history: "
                "--history-retention 0).",
                style="dim",
            )
        more = " · more below" if self.next is not None else ""
        return Text(
            f"{len(self.conflicts)} overridden write{'s' if len(self.conflicts) != 1 else ''}{more}"
            " · enter goes to the key · "
            "r writes the lost value again",
            style="dim",
        )

    def _select_found(self) -> None:
        """Select the conflict of :attr:`find`, reading on for it a few pages at most."""
        find = self.find
        if find is None:
            return
        for index, conflict in enumerate(self.conflicts):
            if conflict.key == find.key and conflict.lost.ts == find.ts:
                self.table.move_cursor(row=index, scroll=True)
                self.find = None
                return
        self._searched += 1
        if self.next is not None and self._searched < SEARCH_PAGES:
            self._fetch_page(self.next)
            return
        self.find = None
        self.notify(
            f"No conflict recorded for your write of {truncate(find.key, 40)!r} (yet): the "
            "server may have applied it before a newer write replaced it; press h on the "
            "key to see its history",
            severity="warning",
            timeout=10,
        )

    @on(DataTable.RowSelected, "#conflicts")
    def _selected(self) -> None:
        self.action_go()

    @on(DataTable.RowHighlighted, "#conflicts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value == MORE and not self.loading:
            self._fetch_page(self.next)

    # -- actions ------------------------------------------------------------------------

    def highlighted_conflict(self) -> Conflict | None:
        """The conflict under the cursor (``None`` on the "more" row or an empty table)."""
        if self.table.row_count == 0:
            return None
        row = self.table.cursor_row
        return self.conflicts[row] if 0 <= row < len(self.conflicts) else None

    def action_go(self) -> None:
        """Close the view on the highlighted conflict's key (or load more, on "more")."""
        conflict = self.highlighted_conflict()
        if conflict is not None:
            self.dismiss(conflict.key)
        elif self.next is not None and not self.loading:
            self._fetch_page(self.next)

    def action_restore(self) -> None:
        """Ask the app to write the highlighted conflict's lost value again."""
        conflict = self.highlighted_conflict()
        if conflict is not None:
            self.post_message(self.Restore(conflict.key, conflict.lost))

    def action_close(self) -> None:
        """Close the view."""
        self.dismiss(None)
