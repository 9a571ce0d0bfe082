"""Server URLs as users type them: one (``host:port``, ``http://…``) or several.

A client may be given several URLs of one service (the nodes of a cluster, or
stand-ins for each other): a comma-separated string on the command line and in
``$SYNCD_URL``, or a list in the Python API. :func:`parse_urls` turns either
into the normalized WebSocket URLs, in order; :func:`normalize_url` does one.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

__all__ = ["normalize_url", "parse_urls"]


def normalize_url(url: str) -> str:
    """A WebSocket URL from what a user typed: ``host:port`` and ``http://`` work too.

    No scheme means ``ws://``; no path means ``/ws``. Raises ``ValueError`` if the
    result is not a valid WebSocket URL.
    """
    text = url.strip()
    if "://" not in text:
        text = "ws://" + text
    try:
        parts = urlsplit(text)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path if parts.path not in ("", "/") else "/ws"
        result = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
        parse_uri(result)  # also reads the port: a ValueError if it is not a number
    except (InvalidURI, ValueError):
        raise ValueError(f"invalid server URL {url!r} (expected ws://HOST:PORT/ws)") from None
    return result


def parse_urls(urls: str | Sequence[str]) -> list[str]:
    """The normalized URLs of a comma-separated string or a list, in order, without repeats.

    Raises ``ValueError`` naming the first invalid URL, or if there is none.
    """
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"a server URL must be a string, got {item!r}")
        if not item.strip():
            continue  # "a,b," or a stray comma: nothing to connect to
        url = normalize_url(item)
        if url not in result:
            result.append(url)
    if not result:
        raise ValueError("no server URL given (expected ws://HOST:PORT/ws, comma-separated)")
    return result
