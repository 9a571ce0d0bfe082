"""Crash-safe file writes, and a TinyDB storage built on them.

TinyDB's stock ``JSONStorage`` rewrites its file in place, which a crash can
leave half-written. :func:`atomic_write` writes a new file beside the old one,
fsyncs it, renames it over the old one and fsyncs the folder, so a reader sees
either the old content or the new, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

__all__ = ["AtomicJSONStorage", "atomic_write", "fsync_path", "temporary_path"]


def temporary_path(path: Path) -> Path:
    """Where :func:`atomic_write` stages the new content of ``path``."""
    return path.with_name(path.name + ".tmp")


def fsync_path(path: Path) -> None:
    """Make a file's content durable (a file written and closed by someone else), or a
    folder's entries (created, renamed or removed files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: write a new file, fsync, rename, fsync the folder.

    If that fails, the new file is deleted and ``path`` is left as it was.
    """
    staged = temporary_path(path)
    try:
        with open(staged, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    except BaseException:
        # A write that failed (a full disk) must not keep holding the space it took.
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that writes its JSON file with :func:`atomic_write`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        data: dict[str, dict[str, Any]] = json.loads(text)
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        atomic_write(self.path, json.dumps(data, ensure_ascii=False))
