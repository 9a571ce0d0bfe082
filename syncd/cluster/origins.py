"""The web origins of a cluster's nodes, from the URLs they advertise.

A page served by one node may open a WebSocket to another node of the same
cluster; that node must then accept the first node's ``Origin``. Each node
advertises ``ws://HOST:PORT/ws`` (or ``wss://``) in its heartbeat; the page it
serves has the origin ``http://HOST:PORT`` (or ``https://``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["node_origin", "origins_of", "page_origin"]

_PAGE_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
_DEFAULT_PORT = {"http": 80, "https": 443}


def _normalize(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]`` as a browser writes it: lower case, default port left out."""
    host = host.lower()
    if ":" in host:  # an IPv6 literal is written in brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORT.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def node_origin(url: str) -> str | None:
    """The origin of the pages a node serves, from its advertised URL; None if malformed."""
    try:
        parts = urlsplit(url)
        scheme = _PAGE_SCHEME.get(parts.scheme.lower())
        if scheme is None or not parts.hostname:
            return None
        return _normalize(scheme, parts.hostname, parts.port)
    except ValueError:  # a port out of range or not a number
        return None


def page_origin(origin: str) -> str | None:
    """A browser's ``Origin`` header in the form of :func:`node_origin`; None if malformed."""
    try:
        parts = urlsplit(origin.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORT or not parts.hostname or parts.path not in ("", "/"):
            return None
        return _normalize(scheme, parts.hostname, parts.port)
    except ValueError:
        return None


def origins_of(urls: Iterable[str]) -> frozenset[str]:
    """The origins of every well-formed URL of ``urls``."""
    return frozenset(origin for url in urls if (origin := node_origin(url)) is not None)
