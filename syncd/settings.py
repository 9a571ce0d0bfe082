"""Where a client connects when not told: the default server URL and document, and the
``SYNCD_URL``, ``SYNCD_DOC`` and ``SYNCD_TOKEN`` variables (contract §8); and how long
a client waits for the server by default.

Every client — the CLI commands, :class:`syncd.Client`, :func:`syncd.connect` and the
TUI — resolves its target with :func:`resolve`, so each applies the same order: what
the caller gave, else the variable, else the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from syncd.protocol import DEFAULT_DOC

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "DOC_VARIABLE",
    "TOKEN_VARIABLE",
    "URL_VARIABLE",
    "Target",
    "resolve",
]

DEFAULT_URL: Final = "ws://127.0.0.1:8765/ws"
"""The server a client connects to when neither told nor ``$SYNCD_URL`` says."""
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a client waits for the server (connecting, syncing, an acknowledgement)."""
URL_VARIABLE: Final = "SYNCD_URL"
DOC_VARIABLE: Final = "SYNCD_DOC"
TOKEN_VARIABLE: Final = "SYNCD_TOKEN"


@dataclass(frozen=True, slots=True)
class Target:
    """Server URLs (as the user wrote them: one, several comma-separated, or a list), a
    document name and an optional token."""

    url: str | Sequence[str]
    doc: str
    token: str | None


def resolve(
    url: str | Sequence[str] | None = None,
    doc: str | None = None,
    token: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """The target of a client: each of ``url``, ``doc`` and ``token`` as given, else
    from its ``SYNCD_*`` variable, else the default (``token``: none).

    An empty value counts as not given, except an explicit ``token=""``. Nothing is
    validated here: the client checks the URL and the document name.
    """
    env = os.environ if environ is None else environ
    return Target(
        url=url or env.get(URL_VARIABLE) or DEFAULT_URL,
        doc=doc or env.get(DOC_VARIABLE) or DEFAULT_DOC,
        token=token if token is not None else env.get(TOKEN_VARIABLE) or None,
    )
