"""The ``syncd`` command line (contract §8)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from syncd import __version__
from syncd.errors import SyncdError
from syncd.logs import setup_logging

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_FAILURE = 3


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: a positive number of ``kind``."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = getattr(kind, "__name__", "number")
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``syncd`` command."""
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Terminal-first real-time key-value sync.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the sync server",
        description="Run the sync server: WebSocket protocol at /ws, /healthz, /metrics, "
        "and the web client at /.",
        epilog="example: syncd serve --port 8765 --data ./syncd-data --token s3cret",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free)")
    serve.add_argument(
        "--data", type=Path, default=Path("syncd-data"), help="data directory (TinyDB files)"
    )
    serve.add_argument("--token", help="secret a client needs to read and write")
    serve.add_argument("--read-token", help="secret for read-only access (needs --token)")
    serve.add_argument(
        "--max-frame-bytes", type=_positive(int), default=1 << 20, help="largest frame"
    )
    serve.add_argument(
        "--max-ops", type=_positive(int), default=1000, help="most entries in one ops message"
    )
    serve.add_argument(
        "--max-value-bytes", type=_positive(int), default=65_536, help="largest value (JSON bytes)"
    )
    serve.add_argument(
        "--max-skew",
        type=_positive(float),
        default=60.0,
        help="seconds a timestamp may be ahead of the server's clock",
    )
    serve.add_argument(
        "--queue-limit",
        type=_positive(int),
        default=8 << 20,
        help="bytes a client may have unsent before it is dropped (close 1013)",
    )
    serve.add_argument(
        "--tombstone-retention",
        type=_positive(float),
        default=30.0,
        help="days deleted keys are remembered",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from syncd.server import ServerConfig, run

    if args.read_token is not None and args.token is None:
        print("syncd serve: --read-token needs --token", file=sys.stderr)
        return EXIT_USAGE
    config = ServerConfig(
        host=args.host,
        port=args.port,
        data=args.data,
        token=args.token,
        read_token=args.read_token,
        max_frame_bytes=args.max_frame_bytes,
        max_ops=args.max_ops,
        max_value_bytes=args.max_value_bytes,
        max_skew=args.max_skew,
        queue_limit=args.queue_limit,
        tombstone_retention=args.tombstone_retention,
    )
    try:
        asyncio.run(run(config))
    except SyncdError as error:
        logger.error("%s", error)
        return EXIT_FAILURE
    except OSError as error:
        logger.error("cannot serve on %s:%s: %s", args.host, args.port, error)
        return EXIT_FAILURE
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    setup_logging(getattr(args, "verbose", False))
    if args.command == "serve":
        return _serve(args)
    raise AssertionError(f"unhandled command {args.command}")
