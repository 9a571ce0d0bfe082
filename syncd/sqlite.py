"""The SQLite binding of the history: a recent SQLite where a wheel of it exists.

The history's hot statement (:mod:`syncd.history`) hands SQLite a JSON array and
lets ``json_each`` expand it. SQLite 3.45 and later parse JSON once into their binary
form and reuse it, so the same insert takes 1.5 µs of CPU an entry with SQLite 3.51
against 2.6 µs with the 3.40 that Python links on Debian 12. ``pysqlite3-binary``
bundles it (a Linux x86-64 wheel, pinned in ``pyproject.toml``) behind the same API
as the standard library's ``sqlite3``, which stays the binding everywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["sqlite3"]

if TYPE_CHECKING:
    import sqlite3
else:
    try:
        from pysqlite3 import dbapi2 as sqlite3
    except ImportError:
        import sqlite3
