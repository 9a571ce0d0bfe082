"""syncd as users install it: the wheel, in a fresh venv, on a machine without Node.js or Rust.

The module builds the wheel once (``maturin build``, reusing the Rust target
cache of the checkout; the web client must be built: ``make test-python`` does
it first), installs it with pip into a new venv, and runs the installed
``syncd`` with a ``PATH`` of that venv only: no ``node``, ``npm`` or ``cargo``.
Then ``syncd serve`` must serve the editor, ``syncd tui`` must start (in tmux)
and ``syncd set`` / ``syncd get`` must round-trip a value.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from servers import REPO, START_TIMEOUT, TIMEOUT, free_port, http_get, metrics
from test_tui_tmux import screen_shows

from syncd.server import WEB_ROOT

BUILD_TIMEOUT: Final = 600.0
"""Seconds the wheel may take to build (all of Rust, when the target cache is cold)."""
INSTALL_TIMEOUT: Final = 300.0
"""Seconds pip may take to install the wheel and its dependencies."""
TMUX: Final = shutil.which("tmux")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT + INSTALL_TIMEOUT)]


def project_version() -> str:
    """The version in pyproject.toml, its one source."""
    with (REPO / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


@dataclass(frozen=True)
class Installed:
    """The wheel, and a venv with it installed."""

    wheel: Path
    venv: Path
    home: Path
    """``$SYNCD_HOME`` of the installed commands."""

    @property
    def syncd(self) -> Path:
        """The installed ``syncd`` command."""
        return self.venv / "bin" / "syncd"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment with only the venv on ``PATH``, no syncd settings, no PYTHONPATH."""
        kept = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("SYNCD_", "PYTHON", "VIRTUAL_ENV"))
        }
        return {
            **kept,
            "PATH": str(self.venv / "bin"),
            "SYNCD_HOME": str(self.home),
            "TERM": "xterm-256color",
            **extra,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the installed ``syncd ARGS`` to completion (bounded)."""
        return subprocess.run(
            [str(self.syncd), *args],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel and install it into a fresh venv (once for the module)."""
    assert (WEB_ROOT / "index.html").is_file(), "the web client is not built: `make build-web`"
    root = tmp_path_factory.mktemp("package")
    maturin = Path(sys.executable).with_name("maturin")
    subprocess.run(
        [str(maturin), "build", "--release", "--quiet", "--out", str(root / "dist")],
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    (wheel,) = (root / "dist").glob("syncd-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=TIMEOUT * 12)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    home = root / "home"
    home.mkdir()
    return Installed(wheel, venv, home)


@dataclass(frozen=True)
class Served:
    """An installed ``syncd serve`` process and its port."""

    port: int

    @property
    def url(self) -> str:
        """The WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
async def served(installed: Installed, tmp_path: Path) -> AsyncIterator[Served]:
    """The installed ``syncd serve`` on a free port, ready (``/healthz``), stopped after."""
    port = free_port()
    with (tmp_path / "serve.stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [str(installed.syncd), "serve", "--port", str(port), "--data", str(tmp_path / "data")],
            cwd=tmp_path,
            env=installed.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if process.poll() is not None:
                    log = (tmp_path / "serve.stderr").read_text(errors="replace")
                    raise AssertionError(f"syncd serve exited with {process.returncode}:\n{log}")
                try:
                    if (await http_get(port, "/healthz")).status == 200:
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.05)  # a process has no event to await: poll, briefly
        yield Served(port)
    finally:
        process.terminate()
        process.wait(START_TIMEOUT)


def test_the_wheel_holds_the_syncd_package_only(installed: Installed) -> None:
    version = project_version()
    assert installed.wheel.name.startswith(f"syncd-{version}-")
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"syncd", f"syncd-{version}.dist-info"}, top
    assert "syncd/web/index.html" in names
    assert any(re.fullmatch(r"syncd/web/assets/[^/]+\.js", name) for name in names)
    assert "syncd/tui/syncd.tcss" in names


def test_no_node_and_no_cargo_on_the_path(installed: Installed) -> None:
    path = installed.env()["PATH"]
    for tool in ("node", "npm", "cargo", "rustc"):
        assert shutil.which(tool, path=path) is None, tool
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import syncd; print(syncd.__file__)"],
        cwd=installed.home,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(installed.venv), "syncd came from the checkout"
    assert installed.run("--version").stdout == f"syncd {project_version()}\n"


async def test_the_installed_server_serves_the_editor(installed: Installed, served: Served) -> None:
    index = await http_get(served.port, "/")
    assert index.status == 200, index.body[:200]
    assert index.headers["content-type"].startswith("text/html")
    assets = re.findall(rb'(?:src|href)="\./(assets/[^"]+)"', index.body)
    assert assets, index.body
    packaged = next(installed.venv.glob("lib/python*/site-packages/syncd/web"))
    for asset in assets:
        answer = await http_get(served.port, "/" + asset.decode())
        assert answer.status == 200, asset
        assert answer.body == (packaged / asset.decode()).read_bytes()
    version = project_version()
    script = next(a.decode() for a in assets if a.endswith(b".js"))
    assert version.encode() in (packaged / script).read_bytes(), "the footer's version"
    assert (await metrics(served.port))[f'syncd_build_info{{version="{version}"}}'] == 1
    assert (await http_get(served.port, "/healthz")).body == b"ok\n"


async def test_the_installed_cli_round_trips_a_value(installed: Installed, served: Served) -> None:
    url = ("--url", served.url)
    done = await asyncio.to_thread(installed.run, "set", *url, "greeting", "hello from the wheel")
    assert done.returncode == 0, done.stderr
    got = await asyncio.to_thread(installed.run, "get", *url, "greeting")
    assert (got.returncode, got.stdout) == (0, "hello from the wheel\n"), got.stderr


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """tmux on a private socket, its server killed after the test."""
    if TMUX is None:
        pytest.skip("tmux is not installed")
    command = [TMUX, "-L", f"syncd-package-{secrets.token_hex(4)}", "-f", os.devnull]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, timeout=TIMEOUT, check=False)


async def test_the_installed_tui_starts(
    installed: Installed, served: Served, tmux: list[str]
) -> None:
    done = await asyncio.to_thread(installed.run, "set", "--url", served.url, "seen", "in tmux")
    assert done.returncode == 0, done.stderr
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "120",
            "-y",
            "30",
            f"{installed.syncd} tui --url {served.url}",
        ],
        env=installed.env(),
        check=True,
        timeout=TIMEOUT,
    )
    await screen_shows(tmux, "seen", '"in tmux"', "connected")
    subprocess.run([*tmux, "send-keys", "-t", "tui", "q"], check=True, timeout=TIMEOUT)
