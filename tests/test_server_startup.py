"""Starting ``syncd serve`` (contract §7, §8): flags, tokens, and data files it cannot read.

A data file it cannot read stops it with exit code 3 and one line on stderr
naming the file, which is left byte for byte as it was. Tokens come from a flag,
a file or the environment; a token file it cannot use stops it with exit code 2.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ClientFactory, ProcessFactory
from servers import REPO, START_TIMEOUT, RawClient, ServerProcess

from syncd.server import ServerConfig, SyncServer

TOKEN_VARIABLES = ("SYNCD_TOKEN", "SYNCD_READ_TOKEN")


@pytest.fixture(autouse=True)
def no_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``syncd serve`` reads its tokens from the environment: none unless a test sets one."""
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m syncd ARGS`` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


async def access(server: ServerProcess, token: str | None) -> str:
    """What a client presenting ``token`` gets: ``read-write``, ``read-only`` or the error."""
    client = await RawClient.connect(server.url, "probe")
    try:
        await client.send({"type": "hello", "v": 1, "node": "probe", "token": token})
        first = await client.recv()
    finally:
        client.connection.transport.abort()
    if first["type"] == "welcome":
        return "read-only" if first["readonly"] else "read-write"
    assert first["type"] == "error", first
    return str(first["code"])


def command_line(process: ServerProcess) -> str:
    """The process's command line as ``ps`` shows it to every user of the machine."""
    assert process.process is not None
    return Path(f"/proc/{process.process.pid}/cmdline").read_bytes().decode().replace("\0", " ")


async def test_tokens_from_files_stay_out_of_the_command_line(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    (tmp_path / "rw").write_text("  rw-secret  \nthe second line is not read\n")
    (tmp_path / "ro").write_text("ro-secret")
    rw, ro = str(tmp_path / "rw"), str(tmp_path / "ro")
    server = server_process(None, "--token-file", rw, "--read-token-file", ro)
    await server.start()
    assert await access(server, "rw-secret") == "read-write"
    assert await access(server, "ro-secret") == "read-only"
    assert await access(server, "rw-secret  ") == "unauthorized"
    assert await access(server, None) == "unauthorized"
    assert "secret" not in command_line(server)


async def test_tokens_from_the_environment(
    server_process: ProcessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TOKEN", "env-rw")
    monkeypatch.setenv("SYNCD_READ_TOKEN", "env-ro")
    server = server_process()
    await server.start()
    assert await access(server, "env-rw") == "read-write"
    assert await access(server, "env-ro") == "read-only"
    assert await access(server, "other") == "unauthorized"
    assert "env-r" not in command_line(server)


async def test_a_flag_or_a_file_wins_over_the_environment(
    server_process: ProcessFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCD_TOKEN", "env-rw")
    monkeypatch.setenv("SYNCD_READ_TOKEN", "env-ro")
    (tmp_path / "ro").write_text("file-ro\n")
    server = server_process(None, "--token", "flag-rw", "--read-token-file", str(tmp_path / "ro"))
    await server.start()
    assert await access(server, "flag-rw") == "read-write"
    assert await access(server, "file-ro") == "read-only"
    assert await access(server, "env-rw") == "unauthorized"
    assert await access(server, "env-ro") == "unauthorized"


def test_a_read_token_from_the_environment_needs_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_READ_TOKEN", "env-ro")
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--read-token needs --token" in lines[0], done.stderr
    assert not (tmp_path / "d").exists(), "nothing was started"


UNUSABLE_TOKEN_FILES = {
    "missing": (None, "cannot read it: No such file or directory"),
    "empty": (b"", "its first line is empty"),
    "blank-first-line": (b"  \nsecret\n", "its first line is empty"),
    "not-utf8": (b"\xff\xfe\n", "cannot read it"),
    "unreadable": (b"secret\n", "cannot read it: Permission denied"),
}


@pytest.mark.parametrize("case", UNUSABLE_TOKEN_FILES)
@pytest.mark.parametrize("flag", ["--token-file", "--read-token-file"])
def test_a_token_file_it_cannot_use_is_one_line_and_exit_2(
    tmp_path: Path, flag: str, case: str
) -> None:
    content, reason = UNUSABLE_TOKEN_FILES[case]
    path = tmp_path / case
    if content is not None:
        path.write_bytes(content)
    if case == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.chmod(0)
    others = ["--token", "rw"] if flag == "--read-token-file" else []
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"), *others, flag, str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{flag} {path}" in lines[0] and reason in lines[0], done.stderr
    assert not (tmp_path / "d").exists(), "nothing was started"


def test_a_token_file_that_is_a_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"), "--token-file", "/")
    assert done.returncode == 2
    assert done.stderr == "syncd serve: --token-file /: cannot read it: Is a directory\n"


@pytest.mark.parametrize(
    "both",
    [["--token", "a", "--token-file", "f"], ["--read-token", "a", "--read-token-file", "f"]],
)
def test_a_flag_and_a_file_for_one_token_are_a_usage_error(tmp_path: Path, both: list[str]) -> None:
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"), "--token", "t", *both)
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr and len(done.stderr.splitlines()) == 1


def test_read_token_without_token_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"), "--read-token", "ro")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--read-token" in lines[0] and "--token" in lines[0]
    assert not (tmp_path / "d").exists(), "nothing was started"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--rate-limit", "-1"),
        ("--rate-burst", "0"),
        ("--evict-after", "0"),
        ("--open-timeout", "-2"),
        ("--fold-min-bytes", "none"),
        ("--tombstone-retention", "inf"),  # once a traceback: infinity days in ms
        ("--evict-after", "nan"),
    ],
)
def test_a_bad_limit_is_a_usage_error(tmp_path: Path, flag: str, value: str) -> None:
    done = run_cli("serve", "--port", "0", "--data", str(tmp_path / "d"), flag, value)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and value in lines[0], done.stderr
    assert not (tmp_path / "d").exists(), "nothing was started"


def test_read_token_without_token_is_refused_in_process(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token"):
        SyncServer(ServerConfig(port=0, data=tmp_path / "d", read_token="ro"))


async def test_a_busy_port_fails_with_one_line(server_process: ProcessFactory) -> None:
    first = server_process()
    await first.start()
    second = server_process()
    second.port = first.port
    second.spawn()
    assert await second.wait() == 3
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and str(first.port) in lines[0], second.stderr


async def test_the_listening_line_is_one_line(server_process: ProcessFactory) -> None:
    process = server_process()
    await process.start()
    lines = [line for line in process.stderr.splitlines() if "listening" in line]
    assert len(lines) == 1 and process.url in lines[0], process.stderr


async def prepared(server_process: ProcessFactory, connect: ClientFactory) -> ServerProcess:
    """A data directory with a document ``default`` written one message per log line,
    whose server was then killed (so the log is not folded)."""
    process = server_process()
    await process.start()
    writer = await connect(process.url, "writer")
    await writer.hello()
    for i in range(6):
        assert (await writer.write([writer.stamps.set(f"k{i}", "v" * i)]))["applied"] == 1
    await process.kill()
    return process


async def fails_on(process: ServerProcess, path: Path) -> None:
    """Starting ``process`` fails with code 3 and one line naming ``path``, left untouched."""
    before = path.read_bytes()
    process.spawn()
    assert await process.wait() == 3
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1, process.stderr
    assert str(path) in lines[0], process.stderr
    assert path.read_bytes() == before


CORRUPT_FILES = {
    "garbage": b"garbage{\n",
    "empty": b"",
    "truncated": None,  # the first half of the real file
    "not syncd": b'{"_default": {"1": {"a": 1}}}',
    "no meta": b'{"entries": {}}',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("content", CORRUPT_FILES.values(), ids=CORRUPT_FILES.keys())
async def test_a_corrupt_document_file_stops_startup(
    server_process: ProcessFactory, connect: ClientFactory, content: bytes | None
) -> None:
    process = await prepared(server_process, connect)
    path = process.data / "docs" / "default.json"
    real = path.read_bytes()
    path.write_bytes(content if content is not None else real[: len(real) // 2])
    await fails_on(process, path)


async def test_a_corrupt_middle_log_line_stops_startup(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    process = await prepared(server_process, connect)
    segments = list((process.data / "docs").glob("default.*.log"))
    assert len(segments) == 1
    lines = segments[0].read_bytes().splitlines(keepends=True)
    assert len(lines) == 6
    lines[3] = b'{"seq":4,"ops":[{"key":"k3","ts":"garbage"}]}\n'
    segments[0].write_bytes(b"".join(lines))
    await fails_on(process, segments[0])


async def test_a_corrupt_server_file_stops_startup(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    process = await prepared(server_process, connect)
    path = process.data / "server.json"
    path.write_bytes(b"{not json")
    await fails_on(process, path)


async def test_the_server_raises_its_open_files_limit_to_the_hard_limit(
    server_process: ProcessFactory,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    process = server_process()
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        process.spawn()  # it inherits the low limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await process.ready()
    assert process.process is not None
    limits = Path(f"/proc/{process.process.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(hard), str(hard)], line
