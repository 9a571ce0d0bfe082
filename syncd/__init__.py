"""syncd: terminal-first real-time key-value sync built on a Last-Write-Wins CRDT.

``syncd.connect(url, doc)`` opens a document for a script (:mod:`syncd.sync`);
:class:`syncd.Client` is the asyncio client it wraps (:mod:`syncd.client`).
"""

from importlib.metadata import version

__version__ = version("syncd")

from syncd.client import Client
from syncd.sync import SyncClient, connect

__all__ = ["Client", "SyncClient", "__version__", "connect"]
