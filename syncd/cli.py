"""The ``syncd`` command line."""

from __future__ import annotations

import argparse

from syncd import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``syncd`` command."""
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Terminal-first real-time key-value sync.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    build_parser().parse_args(argv)
    return 0
