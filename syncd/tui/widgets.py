"""The widgets around the table: the status bar and the detail pane of the selected row."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.content import Content
from textual.widgets import Static

from syncd.crdt import JSONValue
from syncd.tui._format import pretty, utc_time, writer_of

__all__ = ["ConnectionView", "DetailPane", "RowView", "StatusBar"]


@dataclass(frozen=True)
class ConnectionView:
    """What the status bar shows, computed by the app from the client."""

    state: str
    """``connected``, ``connecting``, ``reconnecting``, ``offline``, ``failed`` or ``closed``."""
    url: str
    doc: str
    server: str | None = None
    """The node id of the server connected to (from its welcome), once known."""
    retry_in: int | None = None
    peers: int = 0
    pending: int = 0
    readonly: bool = False
    skew: str | None = None
    """Why the server refused a write for clock skew, if it did."""
    error: str | None = None


class StatusBar(Static):
    """One line: connection state, URL, server node and document, peers, pending writes,
    badges. The server node shows which node of a cluster answers, so a move shows."""

    def show(self, view: ConnectionView) -> None:
        """Render ``view``."""
        self.update(self.render_view(view))

    @staticmethod
    def render_view(view: ConnectionView) -> Content:
        """The status line of ``view``."""
        parts: list[tuple[str, str]] = []
        if view.state == "connected":
            parts.append((" ● connected ", "bold $success"))
        elif view.state == "reconnecting" and view.retry_in is not None:
            parts.append((f" ◌ reconnecting in {view.retry_in} s ", "bold $warning"))
        elif view.state == "failed":
            parts.append((f" ✖ failed: {view.error or 'unknown error'} ", "bold $error"))
        else:
            parts.append((f" ◌ {view.state} ", "bold $warning"))
        server = f" ({view.server})" if view.server else ""
        parts.append((f" {view.url}{server} · {view.doc} ", "$text-muted"))
        parts.append((f" {view.peers} peer{'s' if view.peers != 1 else ''} online ", ""))
        parts.append((f" {view.pending} pending ", "bold $warning" if view.pending else ""))
        if view.readonly:
            parts.append((" READ-ONLY ", "bold $text on $error"))
        if view.skew:
            parts.append((f" ⚠ clock skew: {view.skew} ", "bold $error"))
        return Content.assemble(*parts)


@dataclass(frozen=True)
class RowView:
    """The selected row, for the detail pane."""

    key: str
    value: JSONValue
    deleted: bool
    ts: str
    pending: bool


class DetailPane(Static):
    """The full value of the selected row, with its writer, time and sync state."""

    def show(self, row: RowView | None) -> None:
        """Render ``row`` (``None``: nothing selected)."""
        self.update(self.render_row(row))

    @staticmethod
    def render_row(row: RowView | None) -> RenderableType:
        """The pane's content for ``row``."""
        if row is None:
            return Text("No key selected.\nPress a to add one.", style="dim")
        head = Text()
        head.append(row.key, style="bold")
        head.append("\n")
        head.append(f"by {writer_of(row.ts)}\n{utc_time(row.ts)}\n", style="dim")
        if row.pending:
            head.append("● pending: unacknowledged\n", style="yellow")
        if row.deleted:
            return Group(head, Text("deleted", style="strike dim"))
        body = Syntax(pretty(row.value), "json", word_wrap=True, background_color="default")
        return Group(head, body)
