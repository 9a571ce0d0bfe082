"""The client commands of the ``syncd`` command line (contract §8), on :mod:`syncd.client`.

``get``, ``set``, ``rm``, ``dump``, ``load``, ``watch``, and the history's
``log``, ``restore`` and ``conflicts`` each open one
:class:`~syncd.client.Client`, do their work, and return an exit code:

    0  success
    1  ``get``: the key is absent
    2  usage error or invalid input (bad JSON, a key or value the protocol refuses)
    3  connection, auth or server failure

Every failure is one line on stderr, never a traceback.

**Several servers.** ``--url`` may list several URLs, comma-separated (the
nodes of a cluster): a command uses the first that answers.

**Offline writes.** ``set`` and ``rm`` that cannot reach the server keep the
write in an *outbox* (one file per write under ``$SYNCD_HOME/outbox/``, with
its original timestamp) and exit 3 saying so. Every later command that
connects to the same server (or cluster) and document delivers the outbox first. One file
per write means concurrent commands never overwrite each other's writes; two
commands delivering the same file at once is harmless (merging is idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from syncd.client import Client, Subscription
from syncd.crdt import (
    CrdtError,
    JSONValue,
    check_key,
    check_value,
    parse_timestamp,
    validate_node,
)
from syncd.errors import ServerError, SyncdError, SyncdTimeoutError, UsageError
from syncd.events import Acked, Change, Event, State, Status
from syncd.history import ts_bound
from syncd.history_wire import Version
from syncd.identity import default_node
from syncd.outbox import Outbox
from syncd.settings import DEFAULT_TIMEOUT, DOC_VARIABLE, TOKEN_VARIABLE, URL_VARIABLE, resolve
from syncd.urls import parse_urls

__all__ = [
    "COMMANDS",
    "EXIT_ABSENT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_client_options",
    "positive",
    "run",
]

EXIT_OK: Final = 0
EXIT_ABSENT: Final = 1
EXIT_USAGE: Final = 2
EXIT_FAILURE: Final = 3
EXIT_INTERRUPTED: Final = 130

LOAD_CHUNK: Final = 5_000
"""Keys ``load`` queues at a time before letting the sender run."""

logger = logging.getLogger(__name__)


# -- options shared by the client commands -------------------------------------------


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--doc``, ``--token``, ``--timeout`` and ``-v``, with their variables."""
    target = resolve()
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=target.url,
        help="server WebSocket URL, or several, comma-separated, tried in turn "
        f"(env {URL_VARIABLE}; default %(default)s)",
    )
    group.add_argument(
        "--doc",
        default=target.doc,
        help=f"document name (env {DOC_VARIABLE}; default %(default)s)",
    )
    group.add_argument(
        "--token",
        default=target.token,
        help=f"access token (env {TOKEN_VARIABLE})",
    )
    group.add_argument(
        "--timeout",
        type=positive(float),
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the server before giving up (default %(default)g)",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="log what the client does")


def positive(kind: Callable[[str], float], *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite positive number of ``kind`` (or zero, with ``zero``)."""

    def parse(text: str) -> float:
        value = kind(text)
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"must {'not be negative' if zero else 'be positive'}, got {text}"
            )
        return value

    parse.__name__ = getattr(kind, "__name__", "number")
    return parse


# -- running a command ---------------------------------------------------------------


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def run(args: argparse.Namespace) -> int:
    """Run the client command ``args.command``; its exit code."""
    command = COMMANDS[args.command]
    name = f"syncd {args.command}"
    if not args.verbose:
        # The commands report what matters in one line; the client's own logs are for -v.
        logging.getLogger("syncd").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(command(args))
    except UsageError as error:
        return _fail(name, str(error), EXIT_USAGE)
    except CrdtError as error:  # a key or value the protocol refuses
        return _fail(name, f"invalid input: {error}", EXIT_USAGE)
    except ServerError as error:
        return _fail(name, f"the server refused: {error}", EXIT_FAILURE)
    except SyncdError as error:  # connection failures, timeouts
        return _fail(name, str(error), EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail(name, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (``syncd dump | head``): nothing left to say.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _fail(name: str, message: str, code: int) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{name}: {first}", file=sys.stderr)
    return code


def _client(args: argparse.Namespace, *, give_up: bool = True) -> Client:
    try:
        urls = parse_urls(args.url)
        return Client(
            urls,
            args.doc,
            token=args.token,
            node=default_node("cli"),
            timeout=args.timeout,
            give_up_after=args.timeout if give_up else None,
        )
    except ValueError as error:  # a bad URL or document name
        raise UsageError(str(error)) from None


async def _open(args: argparse.Namespace, *, give_up: bool = True) -> Client:
    """A connected, synced client that has delivered the outbox."""
    client = _client(args, give_up=give_up)
    await client.connect()
    try:
        await Outbox(client.place, client.doc).deliver(client)
    except BaseException:
        await client.close()
        raise
    return client


# -- get, set, rm, dump --------------------------------------------------------------


async def get(args: argparse.Namespace) -> int:
    """``syncd get KEY``: print the value (strings as-is, else JSON); exit 1 if absent."""
    client = await _open(args)
    try:
        entry = client.entry(args.key)
    finally:
        await client.close()
    if entry is None or entry.deleted:
        print(f"syncd get: no such key: {args.key}", file=sys.stderr)
        return EXIT_ABSENT
    value = entry.value
    _print(value if isinstance(value, str) else _json(value))
    return EXIT_OK


async def set_(args: argparse.Namespace) -> int:
    """``syncd set KEY [VALUE]``: store VALUE (or stdin) as a string, or as JSON with --json."""
    text: str = args.value if args.value is not None else _read_stdin_value()
    value: JSONValue = _parse_json(text, "VALUE") if args.json else text
    return await _write(args, args.key, value, deleted=False)


async def rm(args: argparse.Namespace) -> int:
    """``syncd rm KEY``: delete the key (a tombstone, even if it is absent)."""
    return await _write(args, args.key, None, deleted=True)


async def _write(args: argparse.Namespace, key: str, value: JSONValue, *, deleted: bool) -> int:
    _check_key(key)
    if not deleted:
        _check_value(value, key)
    client = _client(args)
    try:
        await client.connect()
    except ServerError:
        raise
    except SyncdError as error:
        # Offline: keep the write, stamped now, for the next command that connects.
        change = client.replica.delete(key) if deleted else client.replica.set(key, value)
        pending = [p.wire() for p in client.replica.pending if p.ts == change.ts]
        Outbox(client.place, client.doc).save(pending)
        raise SyncdError(
            f"{error}; the write is saved and will be sent by the next syncd command "
            "that connects to this server"
        ) from None
    try:
        await Outbox(client.place, client.doc).deliver(client)
        if deleted:
            await client.delete(key)
        else:
            await client.set(key, value)
    finally:
        await client.close()
    return EXIT_OK


async def dump(args: argparse.Namespace) -> int:
    """``syncd dump [--at TIME]``: the whole document (as it was at TIME) as one JSON object."""
    at_ms = parse_time(args.at) if args.at is not None else None
    client = await _open(args)
    try:
        data = client.to_dict() if at_ms is None else await client.state_at(at_ms)
    finally:
        await client.close()
    ordered = {key: data[key] for key in sorted(data)}
    _print(json.dumps(ordered, ensure_ascii=False, indent=2 if args.pretty else None))
    return EXIT_OK


# -- log, restore, conflicts: the server's history -----------------------------------


def parse_time(text: str) -> int:
    """A time given on the command line, in ms since the Unix epoch: an ISO 8601 date
    and time (local time unless it names its zone) or a number of milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: give an ISO 8601 time (2026-05-01T12:00) or milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the local zone
    return int(moment.timestamp() * 1000)


def _show_time(ts: str) -> str:
    wall, _, _ = parse_timestamp(ts)
    return datetime.fromtimestamp(wall / 1000).astimezone().isoformat(timespec="milliseconds")


def _show_version(version: Version) -> str:
    if not version.known:
        return "(no longer in the history)"
    return "deleted" if version.deleted else _json(version.value)


def _version_json(version: Version) -> dict[str, Any]:
    shown: dict[str, Any] = {"ts": version.ts, "node": version.node, "time": _show_time(version.ts)}
    if version.deleted:
        shown["deleted"] = True
    elif version.known:
        shown["value"] = version.value
    return shown


async def log(args: argparse.Namespace) -> int:
    """``syncd log KEY``: the key's versions, newest first; exit 1 if it has none."""
    _check_key(args.key)
    client = await _open(args)
    shown = 0
    try:
        before: str | None = None
        while shown < args.limit:
            versions, before = await client.history(
                args.key, limit=min(args.limit - shown, 1000), before=before
            )
            for version in versions:
                if args.json:
                    _print(_json(_version_json(version)))
                else:
                    _print(f"{_show_time(version.ts)}  {version.node}  {_show_version(version)}")
            shown += len(versions)
            if before is None:
                break
    finally:
        await client.close()
    if shown == 0:
        print(f"syncd log: no history for {args.key}", file=sys.stderr)
        return EXIT_ABSENT
    return EXIT_OK


async def restore(args: argparse.Namespace) -> int:
    """``syncd restore KEY [--at TIME | --ts TS]``: write an earlier version again, as a
    new write (by default the version before the newest: undo the last change)."""
    _check_key(args.key)
    if args.ts is not None:
        try:
            parse_timestamp(args.ts)
        except CrdtError as error:
            raise UsageError(f"invalid --ts: {error}") from None
    at_ms = parse_time(args.at) if args.at is not None else None
    client = await _open(args)
    try:
        if args.ts is not None:
            # Versions before ts + "\x01" start with the one of ts itself, if any.
            found, _ = await client.history(args.key, limit=1, before=args.ts + "\x01")
            found = [v for v in found if v.ts == args.ts]
            wanted = f"with ts {args.ts}"
        elif at_ms is not None:
            found, _ = await client.history(args.key, limit=1, before=ts_bound(at_ms))
            wanted = f"at {args.at}"
        else:
            found, _ = await client.history(args.key, limit=2)
            found = found[1:]
            wanted = "before the newest"
        if not found:
            print(f"syncd restore: {args.key} has no version {wanted}", file=sys.stderr)
            return EXIT_ABSENT
        version = found[0]
        await client.restore(args.key, version)
    finally:
        await client.close()
    _print(f"restored {args.key} to {_show_version(version)} (from {version.ts})")
    return EXIT_OK


async def conflicts(args: argparse.Namespace) -> int:
    """``syncd conflicts``: recent overridden writes, newest first."""
    if args.node is not None:
        try:
            validate_node(args.node)
        except CrdtError as error:
            raise UsageError(f"invalid --node: {error}") from None
    client = await _open(args)
    shown = 0
    try:
        before: int | None = None
        while shown < args.limit:
            found, before = await client.conflicts(
                node=args.node, limit=min(args.limit - shown, 1000), before=before
            )
            for conflict in found:
                if args.json:
                    record = {
                        "key": conflict.key,
                        "lost": _version_json(conflict.lost),
                        "winner": _version_json(conflict.winner),
                    }
                    _print(_json(record))
                else:
                    _print(
                        f"{_show_time(conflict.lost.ts)}  {conflict.key}: {conflict.lost.node} "
                        f"wrote {_show_version(conflict.lost)}, overridden by "
                        f"{conflict.winner.node}'s {_show_version(conflict.winner)} "
                        f"({_show_time(conflict.winner.ts)})"
                    )
            shown += len(found)
            if before is None:
                break
    finally:
        await client.close()
    return EXIT_OK


# -- load ----------------------------------------------------------------------------


async def load(args: argparse.Namespace) -> int:
    """``syncd load FILE``: write every key of a JSON object, in batches, with a progress bar.

    Keys whose value already equals the file's are skipped, so running it again
    after an interruption only sends what is missing.
    """
    data = _read_object(args.file)
    canonical = {}
    for key, value in data.items():
        _check_key(key)
        canonical[key] = _check_value(value, key)
    started = time.perf_counter()
    client = await _open(args)
    todo: list[tuple[str, Any]] = []
    try:
        todo = [
            (key, data[key])
            for key, text in canonical.items()
            if (entry := client.entry(key)) is None or entry.deleted or entry.value_json != text
        ]
        skipped = len(data) - len(todo)
        console = Console(stderr=True)
        with (
            client.subscribe(Acked, Status) as events,
            Progress(
                TextColumn("[bold]loading"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                disable=not console.is_terminal or not todo,
            ) as progress,
        ):
            task = progress.add_task("load", total=len(todo))
            for start in range(0, len(todo), LOAD_CHUNK):
                await client.update(todo[start : start + LOAD_CHUNK], wait=False)
                await asyncio.sleep(0)  # let the first batches go out while the rest are queued
            while client.pending_count:
                event = await _next_event(events, client)
                if isinstance(event, Acked):
                    progress.update(task, completed=len(todo) - client.pending_count)
                elif isinstance(event, Status) and event.state is State.FAILED:
                    assert client.error is not None
                    raise client.error
            progress.update(task, completed=len(todo))
    except SyncdError as error:
        stored = len(todo) - client.pending_count
        raise SyncdError(
            f"{error} — {stored} keys were stored; run the same command again to resume"
        ) from None
    finally:
        await client.close()
    elapsed = time.perf_counter() - started
    print(
        f"syncd load: {len(todo)} key{'s' if len(todo) != 1 else ''} written, "
        f"{skipped} already up to date, in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return EXIT_OK


async def _next_event(events: Subscription[Event], client: Client) -> Event:
    """The next event; :class:`SyncdTimeoutError` if a synced server stops answering.

    While offline, the client retries and gives up by itself (``give_up_after``).
    """
    while True:
        try:
            return await events.get(timeout=client.timeout)
        except SyncdTimeoutError:
            if client.synced:
                raise SyncdTimeoutError(
                    f"the server acknowledged nothing for {client.timeout:g} s"
                ) from None


def _read_object(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {name}: {error}") from None
    data = _parse_json(text, name)
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected a JSON object {{key: value}}, got {_kind(data)}")
    return data


# -- watch ---------------------------------------------------------------------------


async def watch(args: argparse.Namespace) -> int:
    """``syncd watch``: print each change as one JSON line until interrupted (exit 0).

    The subscription starts before the connection, so nothing slips between the
    handshake and the first printed change: the handshake's own changes (every
    key, for a new client) are the ``--initial`` dump, or are skipped.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = _client(args, give_up=False)
    try:
        with client.subscribe(Change, Status) as events:
            printer = asyncio.create_task(_print_changes(client, events, initial=args.initial))
            stopping = asyncio.create_task(stop.wait())
            connecting = asyncio.create_task(_connect_and_deliver(client))
            tasks = {printer, stopping, connecting}
            try:
                while not (stopping.done() or printer.done()):
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    if connecting.done():
                        if connecting.exception() is not None:
                            break  # the first connection failed
                        tasks.discard(connecting)
            finally:
                for task in tasks:
                    task.cancel()
                outcomes = await asyncio.gather(connecting, printer, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await client.close()
    return EXIT_OK


async def _connect_and_deliver(client: Client) -> None:
    await client.connect()
    await Outbox(client.place, client.doc).deliver(client)


async def _print_changes(
    client: Client, events: Subscription[Change | Status], *, initial: bool
) -> None:
    """Print remote changes as JSON lines (a delta after a reconnect included), and
    the connection's ups and downs on stderr."""
    started = False
    async for event in events:
        if isinstance(event, Change):
            if not event.local and (started or (initial and not event.deleted)):
                _print(_json(event.to_json()))
        elif event.state is State.SYNCED:
            if not started:
                started = True
                where = f"document {client.doc!r} at {client.url}"
                print(f"syncd watch: watching {where}; Ctrl-C to stop", file=sys.stderr, flush=True)
            else:
                print(f"syncd watch: synced again at {client.url}", file=sys.stderr, flush=True)
        elif event.state is State.OFFLINE and started:
            print(f"syncd watch: {event.error}; {event}", file=sys.stderr, flush=True)
        elif event.state is State.FAILED:
            raise SyncdError(event.error or "the connection failed")


# -- input and output helpers --------------------------------------------------------


def _print(text: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(text + "\n")
    out.flush()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UsageError(f"{what}: JSON nested too deeply") from None
    except ValueError as error:
        raise UsageError(f"{what}: invalid JSON: {error}") from None


def _read_stdin_value() -> str:
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _check_key(key: str) -> None:
    """:class:`UsageError` if the core refuses ``key`` (checked before connecting)."""
    try:
        check_key(key)
    except CrdtError as error:
        raise UsageError(f"invalid key: {error}") from None


def _check_value(value: JSONValue, key: str) -> str:
    """The value's canonical JSON text; :class:`UsageError` if the core refuses it
    (held to the server's default limit: the welcome does not say the server's own)."""
    try:
        return check_value(value)
    except CrdtError as error:
        raise UsageError(f"invalid value for {key!r}: {error}") from None


COMMANDS: Final[dict[str, Command]] = {
    "get": get,
    "set": set_,
    "rm": rm,
    "dump": dump,
    "load": load,
    "log": log,
    "restore": restore,
    "conflicts": conflicts,
    "watch": watch,
}
