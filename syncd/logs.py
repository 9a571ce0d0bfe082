"""Logging set-up for the command line: rich's handler on stderr."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["setup_logging"]


def setup_logging(verbose: bool = False) -> None:
    """Send every ``syncd`` log record through rich to stderr."""
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[handler],
        force=True,
    )
    # websockets logs every handshake and frame; syncd logs what matters itself.
    logging.getLogger("websockets").setLevel(logging.WARNING)
