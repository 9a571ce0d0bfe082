"""A synchronous face of :class:`syncd.client.Client`, for scripts.

::

    import syncd

    with syncd.connect("ws://127.0.0.1:8765/ws", "notes") as document:
        document["title"] = "hello"      # applied locally, sent in the background
        print(document.get("title"), len(document), sorted(document))
        del document["draft"]
    # leaving the block waits until the server has every write

The client runs in an event loop on a background thread; every method here
hands its work to that loop and waits for it. Reads come from the local
replica and never block on the network. ``document[key] = value`` does not wait for
the server (a script can write thousands of keys quickly); :meth:`SyncClient.set`
with ``wait=True`` and :meth:`SyncClient.flush` do.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from syncd.client import Client
from syncd.crdt import JSONValue
from syncd.events import Change, Status

__all__ = ["SyncClient", "connect"]

T = TypeVar("T")

_MISSING: Any = object()


class SyncClient:
    """A document as a mutable mapping, kept in sync by a background client."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="syncd client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def open(self, wait: bool = True) -> SyncClient:
        """Connect (see :meth:`Client.connect`); on failure, the thread is stopped."""
        try:
            self._call(self.client.connect(wait=wait))
        except BaseException:
            self._stop_loop()
            raise
        return self

    def close(self) -> None:
        """Disconnect (without waiting for pending writes: see :meth:`flush`)."""
        if self._closed:
            return
        try:
            self._call(self.client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Deliver pending writes unless leaving on an error, then close."""
        try:
            if kind is None and not self.client.readonly and self.client.pending_count:
                self.flush()
        finally:
            self.close()

    # -- reading ----------------------------------------------------------------------

    @property
    def status(self) -> Status:
        """The connection status."""
        return self.client.status

    @property
    def peers(self) -> frozenset[str]:
        """The other clients of the document."""
        return self.client.peers

    def __getitem__(self, key: str) -> JSONValue:
        value = self.client.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        result: JSONValue = value
        return result

    def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """The value of ``key``, or ``default``."""
        return self.client.get(key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.client

    def __len__(self) -> int:
        return len(self.client)

    def __iter__(self) -> Iterator[str]:
        return iter(self.client.keys())

    def keys(self) -> list[str]:
        """The live keys, sorted."""
        return self.client.keys()

    def items(self) -> list[tuple[str, JSONValue]]:
        """The live keys and values, sorted by key."""
        return self.client.items()

    def values(self) -> list[JSONValue]:
        """The values, in key order."""
        return [value for _, value in self.client.items()]

    def to_dict(self) -> dict[str, JSONValue]:
        """The whole document."""
        return self.client.to_dict()

    # -- writing ----------------------------------------------------------------------

    def __setitem__(self, key: str, value: JSONValue) -> None:
        self._call(self.client.set(key, value, wait=False))

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._call(self.client.delete(key, wait=False))

    def set(self, key: str, value: JSONValue, *, wait: bool = True) -> Change:
        """Write a key; with ``wait``, return once the server has it."""
        return self._call(self.client.set(key, value, wait=wait))

    def delete(self, key: str, *, wait: bool = True) -> Change:
        """Delete a key (a tombstone even if it is absent)."""
        return self._call(self.client.delete(key, wait=wait))

    def update(self, items: Mapping[str, JSONValue], *, wait: bool = True) -> None:
        """Write many keys at once."""
        self._call(self.client.update(items, wait=wait))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has every write made so far."""
        self._call(self.client.flush(timeout))

    def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until connected and synced."""
        self._call(self.client.wait_synced(timeout))


def connect(
    url: str | Sequence[str] | None = None,
    doc: str | None = None,
    *,
    wait: bool = True,
    store: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SyncClient:
    """Connect to a document and return it as a :class:`SyncClient`.

    Takes the arguments of :class:`~syncd.client.Client` (``url`` may list several
    servers: a comma-separated string or a list). With ``wait`` (the
    default), return once synced, or raise if the server cannot be reached.
    """
    return SyncClient(Client(url, doc, store=store, **options)).open(wait)
