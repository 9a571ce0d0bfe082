"""Logging set-up for the command line: rich's handler on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["setup_logging"]


def setup_logging(verbose: bool = False) -> None:
    """Send every ``syncd`` log record to stderr, one record per line.

    On a terminal rich formats them; redirected to a file or a pipe each record is one
    plain line, which rich would otherwise wrap at 80 columns.
    """
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        handlers=[handler],
        force=True,
    )
    # websockets logs every handshake and frame; syncd logs what matters itself.
    logging.getLogger("websockets").setLevel(logging.WARNING)
