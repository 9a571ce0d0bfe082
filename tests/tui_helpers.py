"""Helpers for the TUI tests: an app wired for tests, bounded waits, SVG snapshots.

Snapshots are SVG files in ``tests/snapshots/``, written by Textual's own
screenshot export. A test compares the app's screen with its file; with
``SYNCD_UPDATE_SNAPSHOTS=1`` it writes the file instead (look at it before
committing it). The server's random port and the SVG's content-derived id
prefix are replaced by fixed text first, so a snapshot does not depend on them.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from servers import TIMEOUT
from textual.pilot import Pilot

from syncd.client import Backoff
from syncd.crdt import format_timestamp
from syncd.tui.app import SyncdApp

__all__ = [
    "FAST",
    "FROZEN_NOW",
    "SNAPSHOTS",
    "assert_snapshot",
    "fixed_entry",
    "make_app",
    "notifications",
    "until",
]

FAST: Final = Backoff(initial=0.05, maximum=0.2, factor=2.0, jitter=0.5)
FROZEN_NOW: Final = 1_764_000_000_000
"""The wall clock of the snapshot tests: 2025-11-24 16:00:00 UTC."""
SNAPSHOTS: Final = Path(__file__).resolve().parent / "snapshots"
SHOWN_PORT: Final = "54321"


def make_app(url: str, doc: str = "notes", **options: Any) -> SyncdApp:
    """A TUI with a fixed node id and quick reconnections."""
    options.setdefault("node", "tui-test")
    options.setdefault("backoff", FAST)
    options.setdefault("timeout", TIMEOUT)
    return SyncdApp(url, doc, **options)


async def until(pilot: Pilot[Any], predicate: Callable[[], bool], what: str) -> None:
    """Let the app run until ``predicate()`` holds (bounded by :data:`TIMEOUT`)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                await pilot.pause(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def notifications(app: SyncdApp) -> list[str]:
    """The messages of the notifications on screen."""
    return [notification.message for notification in app._notifications]


def fixed_entry(key: str, value: Any, minutes: int, node: str = "cli-5e1f0a2b") -> dict[str, Any]:
    """A wire-form entry written ``minutes`` before :data:`FROZEN_NOW` by ``node``."""
    return {
        "key": key,
        "value": value,
        "ts": format_timestamp(FROZEN_NOW - minutes * 60_000, 0, node),
    }


def assert_snapshot(app: SyncdApp, name: str, port: int | None = None) -> None:
    """Compare the app's screen with ``tests/snapshots/NAME.svg`` (or write it)."""
    svg = app.export_screenshot(title="syncd tui")
    if port is not None:
        assert len(str(port)) == len(SHOWN_PORT), port
        svg = svg.replace(f"127.0.0.1:{port}", f"127.0.0.1:{SHOWN_PORT}")
    svg = re.sub(r"terminal-\d+", "terminal-syncd", svg)
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("SYNCD_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path}: run with SYNCD_UPDATE_SNAPSHOTS=1, then look at it"
    expected = path.read_text(encoding="utf-8")
    if svg != expected:
        actual = path.with_suffix(".actual.svg")
        actual.write_text(svg, encoding="utf-8")
        raise AssertionError(f"the screen differs from {path}: see {actual}")
