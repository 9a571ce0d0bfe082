"""The history of one key, in the side pane: its versions, newest first, paged, restorable.

:class:`HistoryPane` reads the server's history of the key (``history``
requests, :meth:`syncd.client.Client.history`) in a worker, a page at a time:
the next page loads when the cursor reaches the "more" row at the end (moving
down onto it, or enter). ``r`` asks the app to write the highlighted version
again (:class:`HistoryPane.Restore`): the app does the writing, as for any
edit. A server that keeps no history answers every key with an empty page;
for a key the server has acknowledged, that is what the pane says.
"""

from __future__ import annotations

from typing import ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from syncd.client import Client
from syncd.errors import SyncdError
from syncd.history_wire import Version
from syncd.tui._format import compact, truncate, utc_time

__all__ = ["NO_HISTORY", "PAGE_SIZE", "HistoryPane", "version_prompt"]

PAGE_SIZE: Final = 50
"""Versions read per request."""
MORE: Final = "more"
"""The id of the row that loads the next page."""
VALUE_WIDTH: Final = 44
NO_HISTORY: Final = (
    "The server has no history of this key: it keeps none (it runs with --history-retention 0)."
)


def version_prompt(version: Version, *, own_node: str, current: bool) -> Text:
    """One version as two lines: its time and writer, then its value."""
    text = Text()
    text.append(utc_time(version.ts)[: len("2026-01-01 00:00:00")], style="dim")
    text.append(f"  {version.node}", style="bold" if version.node == own_node else "")
    if version.node == own_node:
        text.append(" (you)", style="bold cyan")
    if current:
        text.append("  current", style="green")
    text.append("\n  ")
    if not version.known:
        text.append("(no longer in the history)", style="dim")
    elif version.deleted:
        text.append("deleted", style="strike dim")
    else:
        text.append(truncate(compact(version.value), VALUE_WIDTH))
    return text


class HistoryPane(Vertical):
    """The versions of one key (:meth:`open`), newest first; ``r`` restores one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "restore", "Restore version"),
        Binding("escape,h", "close", "Close history"),
    ]

    class Restore(Message):
        """The user asked to write ``version`` of ``key`` again."""

        def __init__(self, key: str, version: Version) -> None:
            super().__init__()
            self.key = key
            self.version = version

    class Closed(Message):
        """The user closed the pane."""

    class _Page(Message):
        """A page of versions arrived (or the reason it did not)."""

        def __init__(
            self,
            generation: int,
            versions: list[Version],
            next: str | None,
            error: str | None,
        ) -> None:
            super().__init__()
            self.generation = generation
            self.versions = versions
            self.next = next
            self.error = error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.client: Client | None = None
        self.key: str | None = None
        self.versions: list[Version] = []
        """The versions shown, newest first."""
        self.next: str | None = None
        """Where the next page starts (``None``: no more)."""
        self.loading = False
        self._generation = 0
        """Counts opens: a page of an earlier open is dropped."""
        self.title = Static("", id="history-title")
        self.options = OptionList(id="versions")
        self.note = Static("", id="history-note")

    def compose(self) -> ComposeResult:
        yield self.title
        yield self.options
        yield self.note

    # -- what the app tells it -----------------------------------------------------------

    def open(self, client: Client, key: str) -> None:
        """Show the history of ``key``, read from the first page."""
        self.client, self.key = client, key
        self.title.update(Text.assemble(("History of ", "dim"), (key, "bold"), (" (UTC)", "dim")))
        self.reload()

    def reload(self) -> None:
        """Read the history again from the newest version (it has grown)."""
        self._generation += 1
        self.versions, self.next = [], None
        self.options.clear_options()
        self._fetch_page(None)

    # -- pages --------------------------------------------------------------------------

    def _fetch_page(self, before: str | None) -> None:
        if self.client is None or self.key is None:
            return
        self.loading = True
        self.note.update(Text("Reading the history…", style="dim"))
        self._fetch(self.client, self.key, before, self._generation)

    @work(exclusive=True, group="history page")
    async def _fetch(self, client: Client, key: str, before: str | None, generation: int) -> None:
        if not client.synced:
            message = "Not connected: the history is read from the server once connected."
            self.post_message(self._Page(generation, [], None, message))
            return
        try:
            versions, next = await client.history(key, limit=PAGE_SIZE, before=before)
        except SyncdError as error:
            self.post_message(self._Page(generation, [], None, f"Cannot read the history: {error}"))
            return
        self.post_message(self._Page(generation, versions, next, None))

    @on(_Page)
    def _page(self, page: _Page) -> None:
        if page.generation != self._generation:
            return  # an earlier key's, or read before a reload
        self.loading = False
        options = self.options
        if options.option_count and options.get_option_at_index(-1).id == MORE:
            options.remove_option_at_index(options.option_count - 1)
        self.next = page.next
        client, key = self.client, self.key or ""
        entry = client.entry(key) if client is not None else None
        own = client.node if client is not None else ""
        start = len(self.versions)
        self.versions.extend(page.versions)
        options.add_options(
            Option(
                version_prompt(
                    version, own_node=own, current=entry is not None and entry.ts == version.ts
                ),
                id=str(start + index),
            )
            for index, version in enumerate(page.versions)
        )
        if page.next is not None:
            options.add_option(Option(Text("more…", style="italic dim"), id=MORE))
        if options.highlighted is None and options.option_count:
            options.highlighted = 0
        # A key the server has acknowledged has at least one version, if it keeps any.
        acknowledged = (
            entry is not None and client is not None and not client.replica.is_pending(key)
        )
        self.note.update(self._note(page.error, acknowledged=acknowledged))

    def _note(self, error: str | None, *, acknowledged: bool) -> Text:
        if error is not None:
            return Text(error, style="bold red")
        if not self.versions:
            if acknowledged:
                return Text(NO_HISTORY, style="yellow")
            return Text("No versions on the server yet.", style="dim")
        more = " · more below" if self.next is not None else ""
        return Text(f"{len(self.versions)} versions{more} · r restores", style="dim")

    @on(OptionList.OptionHighlighted, "#versions")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id == MORE and not self.loading:
            self._fetch_page(self.next)

    @on(OptionList.OptionSelected, "#versions")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == MORE and not self.loading:
            self._fetch_page(self.next)

    # -- actions ------------------------------------------------------------------------

    def highlighted_version(self) -> Version | None:
        """The version under the cursor (``None`` on the "more" row or an empty list)."""
        index = self.options.highlighted
        if index is None or index >= len(self.versions):
            return None
        return self.versions[index]

    def action_restore(self) -> None:
        """Ask the app to write the highlighted version again."""
        version = self.highlighted_version()
        if version is not None and self.key is not None:
            self.post_message(self.Restore(self.key, version))

    def action_close(self) -> None:
        """Close the pane."""
        self.post_message(self.Closed())
