"""The ``syncd`` client commands end to end (contract §8), as subprocesses.

Each command runs as ``python -m syncd …`` with its own ``$SYNCD_HOME``, against
a real server on 127.0.0.1: in the test's event loop for most tests, a
``syncd serve`` process for the ones that kill it. Checked: what goes to
stdout, the one-line message on stderr, the exit code (0 success, 1 key
absent, 2 usage error or invalid input, 3 connection, auth or server failure),
the environment variables, and the 100,000-key load (under 20 seconds, and
resumable after ``kill -9`` of the server).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from conftest import ProcessFactory, ServerFactory
from servers import REPO, TIMEOUT, free_port

from syncd.cli import build_parser
from syncd.client import Client
from syncd.server import ServerConfig, SyncServer

LOAD_TIMEOUT: Final = 60.0
"""The most a 100,000-key load may take before the test gives up (the goal is 20 s)."""


@dataclass(frozen=True)
class Run:
    """What a finished command did."""

    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        """stderr, which must be at most one line."""
        lines = self.err.splitlines()
        assert len(lines) <= 1, f"more than one line on stderr: {self.err!r}"
        assert "Traceback" not in self.err
        return lines[0] if lines else ""


class Syncd:
    """Runs ``syncd`` commands with a given environment."""

    def __init__(self, home: Path, url: str) -> None:
        self.url = url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        self.env.update(SYNCD_HOME=str(home), SYNCD_URL=url, COLUMNS="100")

    def command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "syncd", *args]

    async def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 4 * TIMEOUT,
    ) -> Run:
        process = await self.start(*args, env=env, stdin=input is not None)
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(input.encode() if input is not None else None)
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())

    async def start(
        self, *args: str, env: dict[str, str] | None = None, stdin: bool = False
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command(args),
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


@pytest.fixture
def syncd(server: SyncServer, tmp_path: Path) -> Syncd:
    """Commands aimed (through ``$SYNCD_URL``) at an in-process server."""
    return Syncd(tmp_path / "home", server.url)


@pytest.fixture
async def reader(server: SyncServer) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """A library client, to check what the commands wrote."""
    clients: list[Client] = []

    async def make(doc: str = "default", **options: Any) -> Client:
        clients.append(Client(server.url, doc, node="checker", timeout=TIMEOUT, **options))
        await clients[-1].connect()
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


async def line(stream: asyncio.StreamReader | None) -> str:
    """The next line of a running command's output (bounded)."""
    assert stream is not None
    async with asyncio.timeout(TIMEOUT):
        return (await stream.readline()).decode()


# -- get, set, rm, dump --------------------------------------------------------------


async def test_set_get_rm_and_dump(syncd: Syncd) -> None:
    assert await syncd("set", "greeting", "hello") == Run(0, "", "")
    assert await syncd("get", "greeting") == Run(0, "hello\n", "")
    assert (await syncd("set", "--json", "config", '{"retries": 3, "hosts": ["a"]}')).code == 0
    assert (await syncd("get", "config")).out == '{"hosts": ["a"], "retries": 3}\n'
    assert (await syncd("set", "--json", "n", "1.50")).code == 0
    assert (await syncd("get", "n")).out == "1.5\n"
    assert (await syncd("rm", "config")).code == 0
    dump = await syncd("dump")
    assert dump.code == 0 and json.loads(dump.out) == {"greeting": "hello", "n": 1.5}
    assert list(json.loads(dump.out)) == ["greeting", "n"], "keys sorted"
    pretty = await syncd("dump", "--pretty")
    assert pretty.out.startswith("{\n  ") and json.loads(pretty.out) == json.loads(dump.out)


async def test_get_prints_strings_as_they_are_and_the_rest_as_json(syncd: Syncd) -> None:
    await syncd("set", "text", input="two\nlines\n")
    await syncd("set", "--json", "quoted", '"a string"')
    await syncd("set", "--json", "null", "null")
    assert (await syncd("get", "text")).out == "two\nlines\n"
    assert (await syncd("get", "quoted")).out == "a string\n"
    assert (await syncd("get", "null")).out == "null\n"


async def test_get_of_an_absent_key_exits_1(syncd: Syncd) -> None:
    absent = await syncd("get", "nothing")
    assert (absent.code, absent.out) == (1, "")
    assert absent.message == "syncd get: no such key: nothing"
    await syncd("set", "k", "v")
    await syncd("rm", "k")
    assert (await syncd("get", "k")).code == 1


async def test_rm_of_an_absent_key_writes_a_tombstone(
    syncd: Syncd, reader: Callable[..., Awaitable[Client]]
) -> None:
    assert await syncd("rm", "never-written") == Run(0, "", "")
    entry = (await reader()).entry("never-written")
    assert entry is not None and entry.deleted


async def test_set_reads_the_value_from_stdin(
    syncd: Syncd, reader: Callable[..., Awaitable[Client]]
) -> None:
    assert (await syncd("set", "from-stdin", input="piped\n")).code == 0
    assert (await syncd("set", "--json", "obj", input='{"a": [1, 2]}')).code == 0
    client = await reader()
    assert client.get("from-stdin") == "piped" and client.get("obj") == {"a": [1, 2]}


async def test_documents_and_environment_variables(syncd: Syncd, server: SyncServer) -> None:
    await syncd("set", "k", "in notes", env={"SYNCD_DOC": "notes"})
    await syncd("set", "--doc", "other", "k", "in other")
    assert (await syncd("get", "k", env={"SYNCD_DOC": "notes"})).out == "in notes\n"
    assert (await syncd("get", "--doc", "other", "k", env={"SYNCD_DOC": "notes"})).out == (
        "in other\n"
    ), "a flag beats the environment"
    assert (await syncd("get", "k")).code == 1, "the default document is 'default'"
    unreachable = {"SYNCD_URL": f"ws://127.0.0.1:{free_port()}/ws"}
    assert (
        await syncd("get", "--url", server.url, "--doc", "notes", "k", env=unreachable)
    ).code == 0
    assert (await syncd("get", "k", env=unreachable)).code == 3


# -- exit codes and messages ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("get",), None, "syncd get: the following arguments are required: KEY"),
        (("set", "--json", "k", "{oops"), None, "syncd set: VALUE: invalid JSON"),
        (("set", "--json", "k", "NaN"), None, "syncd set: VALUE: invalid JSON: NaN"),
        (("set", "", "v"), None, "syncd set: invalid key: key must not be empty"),
        (
            ("set", "k"),
            "x" * 70_000,
            "syncd set: invalid value for 'k': value is 70002 bytes of JSON, over the limit",
        ),
        (("get", "--doc", ".hidden", "k"), None, "syncd get: invalid document name"),
        (("get", "--url", "ftp://x", "k"), None, "syncd get: invalid server URL"),
        (("get", "--timeout", "-1", "k"), None, "syncd get: argument --timeout: must be"),
        (("frobnicate",), None, "syncd: argument COMMAND: invalid choice"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(
    syncd: Syncd, args: tuple[str, ...], stdin: str | None, expected: str
) -> None:
    run = await syncd(*args, input=stdin)
    assert run.code == 2 and run.out == ""
    assert run.message.startswith(expected), run.message


async def test_connection_failures_exit_3_with_one_line(syncd: Syncd) -> None:
    port = free_port()
    run = await syncd("get", "k", "--url", f"127.0.0.1:{port}")
    assert run.code == 3
    assert (
        run.message == f"syncd get: cannot connect to ws://127.0.0.1:{port}/ws: connection refused"
    )
    run = await syncd("dump", "--url", syncd.url.replace("/ws", "/elsewhere"))
    assert run.code == 3 and "HTTP 404" in run.message


async def test_auth_failures_exit_3_with_one_line(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = await make_server(token="write", read_token="read")
    syncd = Syncd(tmp_path / "home", server.url)
    run = await syncd("get", "k")
    assert run.code == 3 and "unauthorized: a valid token is required" in run.message
    run = await syncd("get", "k", "--token", "guess")
    assert run.code == 3 and "unauthorized: wrong token" in run.message
    assert (await syncd("set", "k", "v", env={"SYNCD_TOKEN": "write"})).code == 0
    assert (await syncd("get", "k", "--token", "read")).out == "v\n"
    run = await syncd("set", "k", "mine", "--token", "read")
    assert run.code == 3 and "read-only" in run.message


@pytest.mark.parametrize("command", ["get", "set", "rm", "dump", "load", "watch", "tui"])
async def test_every_command_has_help_with_an_example(syncd: Syncd, command: str) -> None:
    run = await syncd(command, "--help")
    assert run.code == 0
    assert f"usage: syncd {command}" in run.out and "examples:\n  syncd " + command in run.out
    assert "SYNCD_URL" in run.out and "--token" in run.out


async def test_serve_help_shows_every_default_of_the_server_config(syncd: Syncd) -> None:
    args = build_parser().parse_args(["serve"])
    default = ServerConfig()
    options = [
        *("host", "port", "data", "max_frame_bytes", "max_ops", "max_value_bytes", "max_skew"),
        *("queue_limit", "tombstone_retention", "rate_limit", "rate_burst", "evict_after"),
        *("open_timeout", "fold_min_bytes"),
    ]
    assert {name: getattr(args, name) for name in options} == {
        name: getattr(default, name) for name in options
    }
    shown = " ".join((await syncd("serve", "--help")).out.split())
    for name in options:
        value = getattr(default, name)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        option = f"--{name.replace('_', '-')} {name.upper()} "
        help = shown.split(option, 1)[1].split(" --", 1)[0]
        assert f"default {text})" in help, (name, help)


async def test_dump_into_a_closed_pipe_is_quiet(syncd: Syncd) -> None:
    await syncd("set", "k", "v" * 1000)
    process = await syncd.start("dump")
    assert process.stdout is not None
    process.stdout.feed_eof()  # nobody reads: the output goes nowhere
    async with asyncio.timeout(4 * TIMEOUT):
        _, err = await process.communicate()
    assert process.returncode == 0 and b"Traceback" not in err


# -- offline writes ------------------------------------------------------------------


async def test_a_write_made_offline_is_delivered_by_the_next_command(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    syncd = Syncd(tmp_path / "home", f"ws://127.0.0.1:{port}/ws")
    offline = await syncd("set", "written", "while the server was down")
    assert offline.code == 3
    assert "connection refused; the write is saved" in offline.message
    assert (await syncd("rm", "other")).code == 3
    await make_server(port=port)
    assert (await syncd("get", "written")).out == "while the server was down\n"
    assert not list((tmp_path / "home" / "outbox").rglob("*.json")), "delivered, then forgotten"
    assert (await syncd("get", "written")).code == 0


# -- load ----------------------------------------------------------------------------


async def test_load_writes_every_key_and_a_rerun_skips_them(syncd: Syncd, tmp_path: Path) -> None:
    data: dict[str, Any] = {f"key-{i:04d}": {"n": i, "tags": ["a"]} for i in range(2500)}
    data["unicode ключ"] = "значение"
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    first = await syncd("load", str(path))
    assert first.code == 0 and "2501 keys written, 0 already up to date" in first.message
    assert json.loads((await syncd("dump")).out) == data
    data["key-0000"] = "changed"
    path.write_text(json.dumps(data))
    second = await syncd("load", str(path))
    assert "1 key written, 2500 already up to date" in second.message


async def test_load_reads_stdin(syncd: Syncd) -> None:
    run = await syncd("load", "-", "--doc", "piped", input='{"a": 1, "b": [true]}')
    assert run.code == 0
    assert json.loads((await syncd("dump", "--doc", "piped")).out) == {"a": 1, "b": [True]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[1, 2]", "expected a JSON object {key: value}, got an array"),
        ('{"a": ', "invalid JSON"),
        ('{"a": NaN}', "invalid JSON: NaN"),
        ('{"": 1}', "invalid key: key must not be empty"),
    ],
)
async def test_load_refuses_invalid_input_before_writing(
    syncd: Syncd, tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    run = await syncd("load", str(path))
    assert run.code == 2 and expected in run.message
    assert (await syncd("dump")).out == "{}\n"


async def test_load_of_a_missing_file_is_a_usage_error(syncd: Syncd, tmp_path: Path) -> None:
    run = await syncd("load", str(tmp_path / "nope.json"))
    assert run.code == 2 and "cannot read" in run.message


# -- watch ---------------------------------------------------------------------------


async def test_two_watchers_print_a_change_at_once_and_exit_0_on_sigint(syncd: Syncd) -> None:
    watchers = [await syncd.start("watch") for _ in range(2)]
    for watcher in watchers:
        assert "syncd watch: watching document 'default'" in await line(watcher.stderr)
    started = time.perf_counter()
    assert (await syncd("set", "greeting", "hello")).code == 0
    await syncd("rm", "greeting")
    for watcher in watchers:
        change = json.loads(await line(watcher.stdout))
        assert time.perf_counter() - started < TIMEOUT
        assert change.keys() == {"key", "value", "ts", "origin", "seq"}
        assert (change["key"], change["value"], change["origin"]) == (
            "greeting",
            "hello",
            change["ts"].split("-", 2)[2],
        )
        deleted = json.loads(await line(watcher.stdout))
        assert (deleted["key"], deleted["deleted"]) == ("greeting", True)
        assert deleted["seq"] > change["seq"]
    for watcher in watchers:
        watcher.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            assert await watcher.wait() == 0


async def test_watch_initial_prints_the_current_state_first(syncd: Syncd) -> None:
    await syncd("set", "a", "1")
    await syncd("set", "b", "2")
    await syncd("rm", "b")
    watcher = await syncd.start("watch", "--initial")
    first = json.loads(await line(watcher.stdout))
    assert (first["key"], first["value"]) == ("a", "1"), "tombstones are not part of the dump"
    await line(watcher.stderr)
    await syncd("set", "c", "3")
    assert json.loads(await line(watcher.stdout))["key"] == "c"
    watcher.send_signal(signal.SIGINT)
    async with asyncio.timeout(TIMEOUT):
        assert await watcher.wait() == 0


async def test_watch_survives_a_server_restart(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await make_server()
    syncd = Syncd(tmp_path / "home", server.url)
    watcher = await syncd.start("watch")
    await line(watcher.stderr)
    port, data = server.port, server.config.data
    await server.stop()
    assert "retrying in" in await line(watcher.stderr)
    await make_server(port=port, data=data)
    await syncd("set", "after", "restart")
    assert json.loads(await line(watcher.stdout))["key"] == "after"
    watcher.send_signal(signal.SIGTERM)
    async with asyncio.timeout(TIMEOUT):
        assert await watcher.wait() == 0


async def test_watch_of_an_unreachable_server_exits_3(syncd: Syncd) -> None:
    run = await syncd("watch", "--url", f"127.0.0.1:{free_port()}")
    assert run.code == 3 and "connection refused" in run.message


# -- 100,000 keys --------------------------------------------------------------------


def big_file(path: Path, count: int = 100_000) -> dict[str, Any]:
    data = {
        f"user:{i:06d}": {"name": f"user {i}", "score": i % 977, "tags": ["x", i]}
        for i in range(count)
    }
    path.write_text(json.dumps(data))
    return data


async def test_loading_100000_keys_takes_under_20_seconds(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    process = server_process()
    await process.start()
    syncd = Syncd(tmp_path / "home", process.url)
    data = big_file(tmp_path / "big.json")
    started = time.perf_counter()
    run = await syncd("load", str(tmp_path / "big.json"), timeout=LOAD_TIMEOUT)
    elapsed = time.perf_counter() - started
    assert run.code == 0, run.err
    print(f"load of 100,000 keys: {elapsed:.1f} s")
    assert elapsed < 20, f"100,000 keys took {elapsed:.1f} s"
    assert json.loads((await syncd("dump")).out) == data


async def test_a_load_interrupted_by_kill_9_completes_when_run_again(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    process = server_process()
    await process.start()
    syncd = Syncd(tmp_path / "home", process.url)
    data = big_file(tmp_path / "big.json")
    async with Client(process.url, node="observer", timeout=TIMEOUT) as observer:
        load = await syncd.start("load", str(tmp_path / "big.json"), "--timeout", "1")
        async with asyncio.timeout(LOAD_TIMEOUT):
            while len(observer) < 10_000:
                await asyncio.sleep(0.01)
        await process.kill()
    async with asyncio.timeout(LOAD_TIMEOUT):
        _, err = await load.communicate()
    assert load.returncode == 3, err
    assert "run the same command again to resume" in err.decode()

    await process.start()
    rerun = await syncd("load", str(tmp_path / "big.json"), timeout=LOAD_TIMEOUT)
    assert rerun.code == 0, rerun.err
    written = int(rerun.message.split("syncd load: ")[1].split(" keys written")[0])
    assert 0 < written < len(data), "the rerun skipped what the first run stored"
    assert json.loads((await syncd("dump")).out) == data
