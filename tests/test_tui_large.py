"""``syncd tui`` with a large document: 100,000 keys, and bursts of remote changes.

"Responsive" is judged by the order of events, not by timings, so that a busy
machine cannot fail it: a key pressed while the table fills must be handled
(the table's cursor moved) while rows are still arriving, which an app that
loads in one go never does; and every key pressed during a burst of remote
changes is handled, within a bound that only a frozen UI exceeds. The
latencies seen are printed.
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
LOAD_TIMEOUT: Final = 180.0 * FACTOR
"""A bound on the whole load, only to end a hung test: the load's speed is benchmarked."""


pytestmark = pytest.mark.usefixtures("home")


async def key_latency(app: SyncdApp) -> float:
    """Seconds from pressing down (or up, at the bottom) until the cursor has moved;
    ``TimeoutError`` if it did not move within ``TIMEOUT`` (a frozen UI).

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


@pytest.mark.timeout(LOAD_TIMEOUT + 60)
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
        handled_while_filling = 0
        async with asyncio.timeout(LOAD_TIMEOUT):
            while app.table.row_count < KEYS or app._loading is not None:
                if app.table.row_count > 1:
                    latencies.append(await key_latency(app))
                    handled_while_filling += app.table.row_count < KEYS
                await asyncio.sleep(0.05)
        assert handled_while_filling, "no key press was handled while the table filled"
        print(f"{len(latencies)} keys while loading, the slowest took {max(latencies):.3f} s")
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
        print(f"{len(latencies)} keys in a burst, the slowest took {max(latencies):.3f} s")
        last = f"key-{(19 * 100 + 99) * 37 % KEYS:06d}"
        async with asyncio.timeout(TIMEOUT):
            while str(app.table.get_cell(last, "value")) != "19":
                await asyncio.sleep(0.05)
