"""syncd: terminal-first real-time key-value sync built on a Last-Write-Wins CRDT."""

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("syncd")
