"""Starting ``syncd serve`` (contract §7, §8): flags, and data files it cannot read.

A file it cannot read stops it with exit code 3 and one line on stderr naming
the file, which is left byte for byte as it was.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ClientFactory, ProcessFactory
from servers import REPO, START_TIMEOUT, ServerProcess

from syncd.server import ServerConfig, SyncServer


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
