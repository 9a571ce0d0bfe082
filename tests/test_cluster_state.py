"""The node's cluster state file (:mod:`syncd.cluster.state`): written off the event
loop, in turn, and read back as written."""

from __future__ import annotations

import asyncio
from pathlib import Path

from syncd.cluster.state import NodeState
from syncd.files import temporary_path


async def test_saves_started_together_are_written_in_turn_and_the_last_is_read_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.json"
    state = NodeState(path, cluster="c-1", incarnation="i-1")
    state.published["notes"] = ("e-1", 3)
    first = asyncio.ensure_future(state.save())
    await asyncio.sleep(0)  # let it take its text and hand it to the writer
    state.cursor = "1700000000000-5"
    state.published["notes"] = ("e-1", 7)
    second = asyncio.ensure_future(state.save())
    await asyncio.gather(first, second)
    loaded = NodeState.load(path)
    assert (loaded.cluster, loaded.incarnation) == ("c-1", "i-1")
    assert loaded.cursor == "1700000000000-5"
    assert loaded.published == {"notes": ("e-1", 7)}
    assert not temporary_path(path).exists()
