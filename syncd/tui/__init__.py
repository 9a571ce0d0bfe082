"""``syncd tui``: the Textual terminal editor of one syncd document.

The app (:mod:`syncd.tui.app`) runs the client and reports the connection in
a status bar (:mod:`syncd.tui.widgets`); the document shows as a table
(:mod:`syncd.tui.document_table`) and is edited through modal screens
(:mod:`syncd.tui.screens`); the server's history of a key shows in a side pane
(:mod:`syncd.tui.history_pane`) and the overridden writes in a view of their own
(:mod:`syncd.tui.conflicts_screen`). All syncing is :class:`syncd.client.Client`'s: the TUI
reads its local replica, writes through it and renders its events.
"""

from __future__ import annotations

__all__: list[str] = []
