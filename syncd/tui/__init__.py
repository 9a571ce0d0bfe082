"""``syncd tui``: the Textual terminal editor of one syncd document.

The app (:mod:`tui.app`) shows the document as a table, edits it through
modal screens (:mod:`tui.screens`) and reports the connection in a status bar
(:mod:`tui.widgets`). All syncing is :class:`syncd.client.Client`'s: the TUI
reads its local replica, writes through it and renders its events.
"""

from __future__ import annotations

__all__: list[str] = []
