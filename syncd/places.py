"""Where a client's local files belong: a *place*, the cluster when known, else the URL.

Every node of a cluster is a full replica of its documents, so what a client
keeps locally (the TUI's replica, the CLI's outbox of offline writes) belongs
to the cluster, not to the node it happened to reach. A ``welcome`` names the
cluster (contract §4); :func:`remember_cluster` keeps, in a small index under
``syncd_home()``, which URLs belong to which cluster, and :func:`place_of`
finds the place of the URLs a client is given:

- a URL the index knows to be a node of cluster ``ID``: place ``cluster:ID``;
- otherwise (a server alone, or a node not reached yet): the first URL itself,
  exactly as before clusters existed.

Files kept under a URL before its cluster was known are still accepted by the
cluster's place (:meth:`Place.accepts`), and moved there once by their owners.

The index (``clusters.json``) is written atomically under an ``flock``, so
clients learning clusters at the same time never lose each other's entries;
if it cannot be read or written, clients behave as with a server alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from syncd.files import atomic_write
from syncd.identity import syncd_home

__all__ = ["Place", "known_clusters", "place_of", "remember_cluster"]

logger = logging.getLogger(__name__)

CLUSTER_PREFIX = "cluster:"


@dataclass(frozen=True)
class Place:
    """Where a client's local files belong.

    ``key`` is ``cluster:ID`` or a URL; ``members`` are the URLs whose files
    (kept before the cluster was known) belong here too.
    """

    key: str
    cluster: str | None
    members: tuple[str, ...]

    def accepts(self, saved: str | None) -> bool:
        """Whether a file saved for place (or URL) ``saved`` belongs here."""
        return saved is not None and (saved == self.key or saved in self.members)


def _index_path() -> Path:
    return syncd_home() / "clusters.json"


def known_clusters() -> dict[str, str]:
    """The index: each URL seen in a ``welcome`` that named a cluster, and that cluster."""
    path = _index_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as error:
        logger.warning("ignoring unreadable %s: %s", path, error)
        return {}
    urls = data.get("urls") if isinstance(data, dict) else None
    if not isinstance(urls, dict):
        return {}
    return {u: c for u, c in urls.items() if isinstance(u, str) and isinstance(c, str) and c}


def place_of(urls: Sequence[str], cluster: str | None = None) -> Place:
    """The place of a client of ``urls`` (normalized); ``cluster`` if a welcome named one."""
    index = known_clusters()
    if cluster is None:
        cluster = next((index[url] for url in urls if url in index), None)
    if cluster is None:
        return Place(urls[0], None, (urls[0],))
    members = [url for url, known in index.items() if known == cluster]
    members += [url for url in urls if url not in members and index.get(url, cluster) == cluster]
    return Place(CLUSTER_PREFIX + cluster, cluster, tuple(members))


def remember_cluster(url: str, cluster: str) -> None:
    """Note that ``url`` is a node of ``cluster`` (a no-op if the index says so already)."""
    if known_clusters().get(url) == cluster:
        return
    path = _index_path()
    try:
        with _locked(path):
            urls = known_clusters()
            urls[url] = cluster
            atomic_write(path, json.dumps({"urls": urls}, ensure_ascii=False, indent=1))
    except OSError as error:
        logger.warning("cannot note the cluster of %s in %s: %s", url, path, error)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` exclusively: one read-modify-write of the index at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
