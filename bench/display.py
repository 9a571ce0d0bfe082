"""What every benchmark shows: its progress bar while it runs, a Markdown report after."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["progress_bar", "save_report", "table"]


@contextmanager
def progress_bar(console: Console) -> Iterator[Progress]:
    """A progress bar with a description, a count and the time elapsed."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        yield bar


def table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, text_columns: int = 1
) -> list[str]:
    """A Markdown table: the first ``text_columns`` aligned left, the numbers right."""
    rule = ["---" if i < text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


@dataclass(frozen=True)
class Check:
    """One done-when threshold of an issue, and what the run measured."""

    name: str
    measured: str
    threshold: str
    met: bool | None
    """``None`` when the run did not measure it (a quick or partial run)."""


def checks_table(checks: Iterable[Check]) -> list[str]:
    """The "done when" table: each check, what was measured, and its verdict."""
    verdicts = {True: "met", False: "**not met**", None: "not measured"}
    return table(
        ["check", "measured", "threshold", "verdict"],
        ([c.name, c.measured, c.threshold, verdicts[c.met]] for c in checks),
        text_columns=4,
    )


def save_report(directory: Path, stem: str, markdown: str, samples_json: str) -> Path:
    """Write ``STEM.md`` and ``STEM.json`` (every sample) into ``directory``; returns the first."""
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / f"{stem}.md"
    report.write_text(markdown + "\n", encoding="utf-8")
    (directory / f"{stem}.json").write_text(samples_json + "\n", encoding="utf-8")
    return report


def start_run(
    *, verbose: bool, module: str, target: str, arguments: Sequence[str], from_shell: bool
) -> tuple[Console, str]:
    """A console on stderr with logging through it, and the command that started the
    run as a reader would type it: ``make TARGET`` when make ran it without arguments,
    else ``.venv/bin/python -m MODULE ARGUMENTS``."""
    console = Console(stderr=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    if "MAKELEVEL" in os.environ and from_shell and not arguments:
        return console, f"make {target}"
    return console, " ".join([f".venv/bin/python -m {module}", *arguments])
