"""The outbox of offline writes: what ``syncd set`` and ``syncd rm`` could not deliver.

A write the server could not be reached for is kept, with its original
timestamp, in one file under ``$SYNCD_HOME/outbox/DOC-HASH/`` (the hash names
the server URL and document), and delivered by the next command that connects
to the same server and document. One file per write means concurrent commands
never overwrite each other's writes; two commands delivering the same file at
once is harmless (merging is idempotent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from syncd.client import Client
from syncd.files import atomic_write
from syncd.identity import syncd_home

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)


class Outbox:
    """Writes that ``set`` and ``rm`` could not deliver, one file each, per server and doc."""

    def __init__(self, url: str, doc: str) -> None:
        digest = hashlib.sha256(f"{url}\n{doc}".encode()).hexdigest()[:16]
        self.url, self.doc = url, doc
        self.directory = syncd_home() / "outbox" / f"{doc}-{digest}"

    def save(self, entries: list[dict[str, Any]]) -> list[Path]:
        """Keep entries (wire form) for a later command; returns their files."""
        saved = []
        for entry in entries:
            path = self.directory / f"{entry['ts']}-{secrets.token_hex(3)}.json"
            record = {"url": self.url, "doc": self.doc, "entry": entry}
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(record, ensure_ascii=False))
            saved.append(path)
        return saved

    def read(self) -> list[tuple[Path, dict[str, Any]]]:
        """The saved entries and their files (unreadable files are skipped)."""
        found = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                entry = record["entry"]
                if record.get("url") == self.url and record.get("doc") == self.doc:
                    found.append((path, entry))
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
                logger.warning("skipping unreadable outbox file %s: %s", path, error)
        return found

    async def deliver(self, client: Client) -> int:
        """Send the saved writes through ``client``, then delete their files."""
        found = self.read()
        if not found or client.readonly:
            return 0
        client.resend([entry for _, entry in found])
        await client.flush()
        for path, _ in found:
            path.unlink(missing_ok=True)
        return len(found)
