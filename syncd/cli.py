"""The ``syncd`` command line (contract §8).

``serve`` runs the server; the client commands (``get``, ``set``, ``rm``,
``dump``, ``load``, ``watch``) are implemented in :mod:`syncd.commands` and only
registered here, as is ``tui``, the Textual editor (:mod:`syncd.tui.app`,
imported only when it runs). A usage error is one line on stderr and exit code 2.

The server's tokens are secrets, and a command line is readable by every user
of the machine (``ps``): each can also come from a file (``--token-file``) or
the environment (``SYNCD_TOKEN``, ``SYNCD_READ_TOKEN``). A flag and a file for
the same token together are a usage error; either wins over the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from websockets.frames import CloseCode

from syncd import __version__
from syncd.cluster.config import AckMode, ClusterConfig, check_cluster_url
from syncd.commands import add_client_options, positive
from syncd.commands import run as run_client_command
from syncd.errors import SyncdError
from syncd.logs import setup_logging
from syncd.server import ServerConfig

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_FAILURE = 3
TOKEN_VARIABLE = "SYNCD_TOKEN"
READ_TOKEN_VARIABLE = "SYNCD_READ_TOKEN"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


class _StartupError(Exception):
    """``syncd serve`` cannot start with what it was told (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``syncd`` command."""
    parser = _Parser(
        prog="syncd",
        description="Terminal-first real-time key-value sync.",
        epilog="Run 'syncd COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the sync server",
        description="Run the sync server: WebSocket protocol at /ws, /healthz, /metrics, "
        "and the web client at /.",
        epilog=textwrap.fill(
            "Each token comes from its flag or its file (not both), else from its "
            f"variable (${TOKEN_VARIABLE}, ${READ_TOKEN_VARIABLE}). A flag's value is "
            "visible to every user of the machine (ps): prefer the file or the variable.",
            79,
        )
        + "\n\nexample: syncd serve --port 8765 --data ./syncd-data --token-file ~/.syncd-token",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_serve_options(serve)
    _add_cluster_options(serve)
    serve.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    _add_client_commands(commands)
    return parser


def _add_serve_options(serve: argparse.ArgumentParser) -> None:
    """The server's options, their defaults those of :class:`ServerConfig`."""
    default = ServerConfig()
    serve.add_argument(
        "--host", default=default.host, help="address to listen on (default %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=default.port,
        help="port to listen on (0: any free; default %(default)s)",
    )
    serve.add_argument(
        "--data",
        type=Path,
        default=default.data,
        help="data directory (TinyDB files; default %(default)s)",
    )
    token = serve.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help=f"secret a client needs to read and write (default: ${TOKEN_VARIABLE}; "
        "without any token every client may read and write)",
    )
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read --token from the first line of PATH",
    )
    read_token = serve.add_mutually_exclusive_group()
    read_token.add_argument(
        "--read-token",
        help=f"secret for read-only access, needs a --token (default: ${READ_TOKEN_VARIABLE})",
    )
    read_token.add_argument(
        "--read-token-file",
        type=Path,
        metavar="PATH",
        help="read --read-token from the first line of PATH",
    )
    serve.add_argument(
        "--max-frame-bytes",
        type=positive(int),
        default=default.max_frame_bytes,
        help="largest frame (default %(default)s)",
    )
    serve.add_argument(
        "--max-ops",
        type=positive(int),
        default=default.max_ops,
        help="most entries in one ops message (default %(default)s)",
    )
    serve.add_argument(
        "--max-value-bytes",
        type=positive(int),
        default=default.max_value_bytes,
        help="largest value (JSON bytes; default %(default)s)",
    )
    serve.add_argument(
        "--max-skew",
        type=positive(float),
        default=default.max_skew,
        help="seconds a timestamp may be ahead of the server's clock (default %(default)g)",
    )
    serve.add_argument(
        "--queue-limit",
        type=positive(int),
        default=default.queue_limit,
        help="bytes a client may have unsent before it is dropped "
        f"(close {CloseCode.TRY_AGAIN_LATER:d}; default %(default)s)",
    )
    serve.add_argument(
        "--tombstone-retention",
        type=positive(float),
        default=default.tombstone_retention,
        help="days deleted keys are remembered (default %(default)g)",
    )
    serve.add_argument(
        "--history-retention",
        type=positive(float, zero=True),
        default=default.history_retention,
        help="days the history keeps every version of every key and every overridden "
        "write (0: keep no history; default %(default)g)",
    )
    serve.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page origin that may connect, e.g. http://127.0.0.1:5173 (repeatable; "
        "'*' allows any). Clients without an Origin header and the server's own web client "
        "are always allowed",
    )
    serve.add_argument(
        "--rate-limit",
        type=positive(float, zero=True),
        default=default.rate_limit,
        help="messages per second a connection may send on average "
        "(0: no limit; default %(default)g)",
    )
    serve.add_argument(
        "--rate-burst",
        type=positive(int),
        default=default.rate_burst,
        help="messages a connection may send at once above its rate (default %(default)s)",
    )
    serve.add_argument(
        "--evict-after",
        type=positive(float),
        default=default.evict_after,
        help="seconds a document with no clients stays in memory (default %(default)g)",
    )
    serve.add_argument(
        "--open-timeout",
        type=positive(float),
        default=default.open_timeout,
        help="seconds a connection has to complete its opening handshake (default %(default)g)",
    )
    serve.add_argument(
        "--fold-min-bytes",
        type=positive(int),
        default=default.fold_min_bytes,
        help="log bytes before a document's log may be folded into its file (default %(default)s)",
    )


def _cluster_url(text: str) -> str:
    try:
        return check_cluster_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_cluster_options(serve: argparse.ArgumentParser) -> None:
    default = ClusterConfig(url="")  # only its defaults are read
    group = serve.add_argument_group(
        "cluster", "several nodes serving the same documents through Redis (docs/cluster.md)"
    )
    group.add_argument(
        "--cluster",
        type=_cluster_url,
        metavar="REDIS_URL",
        help="join the cluster of this Redis, e.g. redis://127.0.0.1:6379/0",
    )
    group.add_argument(
        "--cluster-ack",
        choices=[mode.value for mode in AckMode],
        default=default.ack.value,
        help="acknowledge a write once fsync'd here (local), or here and in Redis (redis); "
        "default %(default)s",
    )
    group.add_argument(
        "--cluster-advertise",
        metavar="URL",
        help="WebSocket URL the other nodes reach this one at (default ws://HOST:PORT/ws)",
    )
    group.add_argument(
        "--cluster-retention",
        type=positive(int),
        default=default.retention,
        help="most stream entries kept for a node that is behind (past them: snapshot; "
        "default %(default)s)",
    )
    group.add_argument(
        "--cluster-check-interval",
        type=positive(float),
        default=default.check_interval,
        help="seconds between comparisons of document digests with the other nodes "
        "(default %(default)g)",
    )


def _client_command(
    commands: Any, name: str, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 79),
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return command


def _add_client_commands(commands: Any) -> None:
    get = _client_command(
        commands,
        "get",
        "print a key's value",
        "Print the value of KEY: a string as it is, anything else as JSON. "
        "Exit code 1 if the key is absent.",
        "  syncd get greeting\n  syncd get --doc notes title",
    )
    get.add_argument("key", metavar="KEY")
    set_ = _client_command(
        commands,
        "set",
        "store a value under a key",
        "Store VALUE under KEY, as a string (or as JSON with --json). Without VALUE, "
        "the value is read from stdin (one trailing newline is dropped). Returns once the "
        "server has stored it.",
        "  syncd set greeting hello\n  syncd set --json config '{\"retries\": 3}'\n"
        "  date | syncd set last-run",
    )
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE", nargs="?", help="the value (default: stdin)")
    set_.add_argument("--json", action="store_true", help="parse VALUE as JSON")
    rm = _client_command(
        commands,
        "rm",
        "delete a key",
        "Delete KEY. Deleting an absent key still records the delete (exit code 0).",
        "  syncd rm greeting",
    )
    rm.add_argument("key", metavar="KEY")
    dump = _client_command(
        commands,
        "dump",
        "print the whole document as JSON",
        "Print the whole document as one JSON object {key: value}, keys sorted.",
        "  syncd dump > backup.json\n  syncd dump --pretty --doc notes",
    )
    dump.add_argument("--pretty", action="store_true", help="indent the JSON")
    dump.add_argument(
        "--at",
        metavar="TIME",
        help="the document as it was at TIME (from the server's history): "
        "ISO 8601 (2026-05-01T12:00, local time unless a zone is given) or ms since 1970",
    )
    log = _client_command(
        commands,
        "log",
        "show a key's history",
        "Print the versions of KEY the server's history holds, newest first: time, "
        "node, and the value as JSON or 'deleted'. Exit code 1 if it has none.",
        "  syncd log greeting\n  syncd log --limit 5 --json config",
    )
    log.add_argument("key", metavar="KEY")
    log.add_argument(
        "--limit", type=positive(int), default=100, help="most versions (default %(default)s)"
    )
    log.add_argument("--json", action="store_true", help="one JSON object a line")
    restore = _client_command(
        commands,
        "restore",
        "write an earlier version of a key again",
        "Write an earlier version of KEY again, as a new write (itself in the history, so "
        "it can be undone the same way): by default the version before the newest, or the "
        "version it had at TIME (--at) or the one with timestamp TS (--ts, as 'syncd log "
        "--json' shows it). Exit code 1 if there is no such version.",
        "  syncd restore greeting\n  syncd restore --at 2026-05-01T12:00 config",
    )
    restore.add_argument("key", metavar="KEY")
    which = restore.add_mutually_exclusive_group()
    which.add_argument("--at", metavar="TIME", help="the version the key had at TIME")
    which.add_argument("--ts", metavar="TS", help="the version with this timestamp")
    conflicts = _client_command(
        commands,
        "conflicts",
        "show recent overridden writes",
        "Print the writes that lost to a newer write of the same key (Last-Write-Wins "
        "dropped them), newest first, as the server's history recorded them.",
        "  syncd conflicts\n  syncd conflicts --node cli-1a2b --json",
    )
    conflicts.add_argument("--node", metavar="NODE", help="only the writes of this node")
    conflicts.add_argument(
        "--limit", type=positive(int), default=100, help="most conflicts (default %(default)s)"
    )
    conflicts.add_argument("--json", action="store_true", help="one JSON object a line")
    load = _client_command(
        commands,
        "load",
        "import a JSON object of keys and values",
        "Write every key of FILE, a JSON object {key: value} ('-' reads stdin), in batches, "
        "with a progress bar. Keys that already hold the file's value are skipped, so "
        "running it again after an interruption sends only what is missing.",
        "  syncd load backup.json\n  syncd dump --doc a | syncd load --doc b -",
    )
    load.add_argument("file", metavar="FILE")
    watch = _client_command(
        commands,
        "watch",
        "print each change as a JSON line",
        "Print every change to the document as one JSON line "
        '{"key", "value" | "deleted": true, "ts", "origin", "seq"}, from now on, '
        "until interrupted (Ctrl-C exits 0). Survives server restarts: changes missed "
        "while disconnected are printed on reconnection.",
        "  syncd watch\n  syncd watch --initial | jq -r .key",
    )
    watch.add_argument("--initial", action="store_true", help="first print every key as it is now")
    tui = _client_command(
        commands,
        "tui",
        "edit the document in the terminal",
        "Open the Textual editor of the document: a live table of its keys, with add, edit, "
        "delete and undo. Works offline: edits wait, also across restarts, and are sent "
        "when the server is back. Press ? in the editor for its keys.",
        "  syncd tui\n  syncd tui --url 10.0.0.5:8765 --doc notes",
    )
    for command in (get, set_, rm, dump, load, watch, log, restore, conflicts, tui):
        add_client_options(command)


def _secret(value: str | None, path: Path | None, flag: str, variable: str) -> str | None:
    """A token from its flag, else its file (first line, stripped), else its variable."""
    if value is not None:
        return value
    if path is None:
        return os.environ.get(variable) or None
    try:
        with path.open(encoding="utf-8") as file:
            line = file.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise _StartupError(f"{flag}-file {path}: cannot read it: {reason}") from None
    if not line:
        raise _StartupError(f"{flag}-file {path}: its first line is empty")
    return line


def _serve(args: argparse.Namespace) -> int:
    from syncd.server import run

    try:
        token = _secret(args.token, args.token_file, "--token", TOKEN_VARIABLE)
        read_token = _secret(
            args.read_token, args.read_token_file, "--read-token", READ_TOKEN_VARIABLE
        )
        if read_token is not None and token is None:
            raise _StartupError(
                f"--read-token needs --token (or --token-file, or ${TOKEN_VARIABLE})"
            )
    except _StartupError as error:
        print(f"syncd serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    config = ServerConfig(
        host=args.host,
        port=args.port,
        data=args.data,
        token=token,
        read_token=read_token,
        max_frame_bytes=args.max_frame_bytes,
        max_ops=args.max_ops,
        max_value_bytes=args.max_value_bytes,
        max_skew=args.max_skew,
        queue_limit=args.queue_limit,
        tombstone_retention=args.tombstone_retention,
        history_retention=args.history_retention,
        allowed_origins=tuple(args.allowed_origin),
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        evict_after=args.evict_after,
        open_timeout=args.open_timeout,
        fold_min_bytes=args.fold_min_bytes,
        cluster=_cluster_config(args),
    )
    try:
        asyncio.run(run(config))
    # Plain prints, not the log: rich wraps a long message (a path) over several lines.
    except SyncdError as error:
        print(f"syncd serve: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(f"syncd serve: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _cluster_config(args: argparse.Namespace) -> ClusterConfig | None:
    if args.cluster is None:
        return None
    return ClusterConfig(
        url=args.cluster,
        ack=AckMode(args.cluster_ack),
        advertise=args.cluster_advertise,
        retention=args.cluster_retention,
        check_interval=args.cluster_check_interval,
    )


def _tui(args: argparse.Namespace) -> int:
    from syncd.tui.app import SyncdApp

    try:
        app = SyncdApp(args.url, args.doc, token=args.token, timeout=args.timeout)
    except ValueError as error:  # a bad URL or document name
        print(f"syncd tui: {error}", file=sys.stderr)
        return EXIT_USAGE
    # Logging to stderr would draw over the screen: the TUI shows what matters itself.
    logging.getLogger("syncd").setLevel(logging.CRITICAL)
    app.run()
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
    if args.command == "tui":
        return _tui(args)
    return run_client_command(args)
