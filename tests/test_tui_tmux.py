"""``syncd tui`` in a real terminal: tmux runs it, ``capture-pane`` reads the screen.

The server is a ``syncd serve`` process; the TUI is the installed ``syncd``
command. tmux runs on a socket of its own (``-L``), killed at the end. Skipped
only where tmux is not installed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ProcessFactory
from servers import START_TIMEOUT, TIMEOUT

from syncd.client import Client

TMUX = shutil.which("tmux")
SYNCD = Path(sys.executable).with_name("syncd")

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """The tmux command on a private socket; its server is killed after the test."""
    assert TMUX is not None
    command = [TMUX, "-L", f"syncd-test-{secrets.token_hex(4)}", "-f", os.devnull]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, timeout=TIMEOUT, check=False)


def capture(tmux: list[str]) -> str:
    return subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "tui"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout


async def screen_shows(tmux: list[str], *texts: str) -> str:
    """Poll the pane (bounded) until every text is on screen; the screen."""
    screen = ""
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not all(text in screen for text in texts):
                await asyncio.sleep(0.1)  # a terminal has no event to await: poll
                screen = capture(tmux)
    except TimeoutError:
        raise AssertionError(f"{texts} not all on screen:\n{screen}") from None
    return screen


async def test_tui_in_tmux(server_process: ProcessFactory, tmux: list[str], tmp_path: Path) -> None:
    server = server_process()
    await server.start()
    async with Client(server.url, "notes", node="seeder", timeout=TIMEOUT) as client:
        await client.update({"greeting": "hello from tmux", "answer": 42})
    env = f"SYNCD_HOME={tmp_path / 'home'} TERM=xterm-256color"
    command = f"env {env} {SYNCD} tui --url {server.url} --doc notes"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "tui", "-x", "120", "-y", "30", command],
        check=True,
        timeout=TIMEOUT,
    )
    screen = await screen_shows(tmux, "greeting", '"hello from tmux"', "answer", "connected")
    assert "2 keys" in screen
    # A key typed in the terminal reaches the app: the help screen opens and closes.
    subprocess.run([*tmux, "send-keys", "-t", "tui", "?"], check=True, timeout=TIMEOUT)
    await screen_shows(tmux, "last-writer-wins")
    subprocess.run([*tmux, "send-keys", "-t", "tui", "q", "q"], check=True, timeout=TIMEOUT)
    async with asyncio.timeout(START_TIMEOUT):
        while (
            subprocess.run([*tmux, "has-session", "-t", "tui"], capture_output=True).returncode == 0
        ):
            await asyncio.sleep(0.1)
