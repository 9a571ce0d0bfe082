"""Conflicts between two clients writing offline (issue #13), with the Python client
against a real ``syncd serve`` on 127.0.0.1, in both orders of reconnection.

Both clients write the same key while the server is down; the later write wins.
Each client waits out a long backoff until the test tells it to reconnect
(:meth:`syncd.client.Client.reconnect_now`), so the order is the test's. When the
winner is back first, the loser learns of the newer entry in its handshake and
still sends its write, which loses on the server: a conflict record. When the
loser is back first, its write is applied, then replaced: two versions in the
key's history, no conflict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import pytest
from conftest import ServerFactory
from servers import TIMEOUT

from syncd.client import Backoff, Client
from syncd.crdt import parse_timestamp, wall_clock_ms
from syncd.events import Acked, Event, Overridden, State, Write
from syncd.history_wire import Conflict

WAITING: Final = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)
"""Reconnect only when told to."""


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds (bounded by ``TIMEOUT``)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def recorded(client: Client) -> list[Conflict]:
    """The document's conflicts, once there is at least one (bounded by ``TIMEOUT``)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            found, _ = await client.conflicts()
            if found:
                return found
            await asyncio.sleep(0.02)


async def later_than(ts: str) -> None:
    """Wait until the wall clock has passed the time of ``ts``: a write made now is newer."""
    await eventually(lambda: wall_clock_ms() > parse_timestamp(ts)[0], "the clock moves on")


@pytest.mark.parametrize("first", ["winner", "loser"])
async def test_two_clients_writing_offline(make_server: ServerFactory, first: str) -> None:
    server = await make_server()
    port, data = server.port, server.config.data
    loser = Client(server.url, "notes", node="alice", backoff=WAITING, timeout=TIMEOUT)
    winner = Client(server.url, "notes", node="bob", backoff=WAITING, timeout=TIMEOUT)
    try:
        for client in (loser, winner):
            await client.connect()
        await server.stop()
        # Offline: waiting out the backoff, which reconnect_now() cuts short.
        await eventually(
            lambda: loser.state is State.OFFLINE and winner.state is State.OFFLINE, "both wait"
        )
        lost = await loser.set("k", "alice's", wait=False)
        await later_than(lost.ts)
        won = await winner.set("k", "bob's", wait=False)

        with loser.subscribe(Overridden, Acked) as events:
            await make_server(port=port, data=data)
            order = (winner, loser) if first == "winner" else (loser, winner)
            for client in order:
                client.reconnect_now()
                await client.wait_synced(TIMEOUT)
                await client.flush(TIMEOUT)
            assert loser.get("k") == winner.get("k") == "bob's"
            # Until the server has answered the loser's write: what the loser heard of it.
            heard: list[Event] = []
            while not any(isinstance(e, Acked) and Write("k", lost.ts) in e.writes for e in heard):
                heard.append(await events.get(TIMEOUT))

        beaten = [e for e in heard if isinstance(e, Overridden)]
        if first == "winner":
            # The loser saw the newer entry in its handshake, said so once, and sent its
            # write anyway: it lost on the server, which recorded the conflict.
            assert [(e.write.ts, e.winner.ts) for e in beaten] == [(lost.ts, won.ts)]
            (conflict,) = await recorded(winner)
            assert (conflict.key, conflict.lost.ts, conflict.lost.node) == ("k", lost.ts, "alice")
            assert (conflict.lost.value, conflict.winner.ts) == ("alice's", won.ts)
            assert conflict.winner.value == "bob's"
            versions, _ = await loser.history("k")
            assert versions[0].ts == won.ts and lost.ts not in [v.ts for v in versions]
        else:
            # Applied, then replaced by the newer write: history, not a conflict.
            assert beaten == []
            versions, _ = await winner.history("k")
            assert [v.ts for v in versions][:2] == [won.ts, lost.ts]
            assert (await winner.conflicts()) == ([], None)
    finally:
        await loser.close()
        await winner.close()
