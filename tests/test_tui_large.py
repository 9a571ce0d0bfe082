"""``syncd tui`` with a large document: 100,000 keys, and bursts of remote changes.

"Responsive" is measured as the pilot sees it: the time from a key press until
the app has handled it (the table's cursor moved). The bounds are generous
(slow machines scale them with ``$SYNCD_TEST_TIMEOUT_FACTOR``); what they
catch is a frozen UI, which takes seconds, not a slow one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import pytest
from conftest import ServerFactory
from servers import FACTOR, TIMEOUT
from tui_helpers import make_app

from syncd.client import Client
from syncd.crdt import JSONValue
from syncd.tui.app import SyncdApp

KEYS: Final = 100_000
MAX_KEY_LATENCY: Final = 1.0 * FACTOR
"""Seconds a key press may wait for the app, at most."""
LOAD_TIMEOUT: Final = 60.0 * FACTOR


pytestmark = pytest.mark.usefixtures("home")


async def key_latency(app: SyncdApp) -> float:
    """Seconds from pressing down (or up, at the bottom) until the cursor has moved.

    The key goes in as a terminal's would (``simulate_key``): the pilot's own
    ``press`` waits until the app is idle, which a busy app never is.
    """
    table = app.table
    before = table.cursor_row
    key = "up" if before == table.row_count - 1 else "down"
    start = time.perf_counter()
    app.simulate_key(key)
    async with asyncio.timeout(TIMEOUT):
        while table.cursor_row == before:
            await asyncio.sleep(0.005)
    return time.perf_counter() - start


async def test_100k_keys_load_without_freezing_and_bursts_do_not_lag(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with Client(server.url, "notes", node="seeder", timeout=4 * TIMEOUT) as seeder:
        seed: dict[str, JSONValue] = {f"key-{i:06d}": {"n": i} for i in range(KEYS)}
        await seeder.update(seed)
    app = make_app(server.url)
    async with app.run_test(size=(120, 30)) as pilot:
        latencies: list[float] = []
        async with asyncio.timeout(LOAD_TIMEOUT):
            while app.table.row_count < KEYS or app._loading is not None:
                if app.table.row_count > 1:
                    latencies.append(await key_latency(app))
                await asyncio.sleep(0.05)
        assert latencies, "the table filled before a key could be pressed"
        assert max(latencies) < MAX_KEY_LATENCY, f"input lagged while loading: {max(latencies)}"
        await pilot.press("ctrl+end")  # scrolls a virtualised table: no need to wait
        assert app.table.cursor_row == KEYS - 1
        # A burst: 1,000 remote changes a second for two seconds, input measured throughout.
        latencies.clear()
        async with Client(server.url, "notes", node="burst", timeout=TIMEOUT) as burst:
            for tick in range(20):
                changes = {f"key-{(tick * 100 + i) * 37 % KEYS:06d}": tick for i in range(100)}
                await burst.update(changes, wait=False)
                latencies.append(await key_latency(app))
                await asyncio.sleep(0.1)
            await burst.flush()
        assert max(latencies) < MAX_KEY_LATENCY, f"input lagged in a burst: {max(latencies)}"
        last = f"key-{(19 * 100 + 99) * 37 % KEYS:06d}"
        async with asyncio.timeout(TIMEOUT):
            while str(app.table.get_cell(last, "value")) != "19":
                await asyncio.sleep(0.05)
