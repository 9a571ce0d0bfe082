"""The outbox of offline writes: what ``syncd set`` and ``syncd rm`` could not deliver.

A write the server could not be reached for is kept, with its original
timestamp, in one file under ``$SYNCD_HOME/outbox/DOC-HASH/`` (the hash names
the *place*, :mod:`syncd.places`: the server's cluster when known, else its
URL, and the document), and delivered by the next command that connects to the
same place and document — any node of the cluster. Writes kept under a node's
URL before its cluster was known are delivered too. One file per write means concurrent commands
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
from syncd.places import Place

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)


class Outbox:
    """Writes that ``set`` and ``rm`` could not deliver, one file each, per place and doc."""

    def __init__(self, place: Place, doc: str) -> None:
        self.place, self.doc = place, doc
        self.directory = _directory(place.key, doc)
        self._folders = [self.directory] + [
            _directory(url, doc) for url in place.members if url != place.key
        ]
        """Where saved writes are read from: the place's folder, then its members' (older)."""

    def save(self, entries: list[dict[str, Any]]) -> list[Path]:
        """Keep entries (wire form) for a later command; returns their files."""
        saved = []
        for entry in entries:
            path = self.directory / f"{entry['ts']}-{secrets.token_hex(3)}.json"
            record = {"place": self.place.key, "doc": self.doc, "entry": entry}
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(record, ensure_ascii=False))
            saved.append(path)
        return saved

    def read(self) -> list[tuple[Path, dict[str, Any]]]:
        """The saved entries and their files (unreadable files are skipped)."""
        found = []
        for folder in self._folders:
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    entry = record["entry"]
                    # Files from before places kept the server's URL under "url".
                    saved_for = record.get("place", record.get("url"))
                    if self.place.accepts(saved_for) and record.get("doc") == self.doc:
                        found.append((path, entry))
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                    logger.warning("skipping unreadable outbox file %s: %s", path, error)
                except RecursionError:
                    logger.warning("skipping unreadable outbox file %s: nested too deeply", path)
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


def _directory(key: str, doc: str) -> Path:
    digest = hashlib.sha256(f"{key}\n{doc}".encode()).hexdigest()[:16]
    return syncd_home() / "outbox" / f"{doc}-{digest}"
