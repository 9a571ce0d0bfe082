"""``syncd log``, ``restore``, ``conflicts`` and ``dump --at`` end to end, as subprocesses
against a real ``syncd serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ProcessFactory
from test_cli import Syncd
from test_history import hello, ops

from syncd.crdt import format_timestamp, wall_clock_ms


async def test_log_restore_and_undo_the_restore(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    process = server_process()
    await process.start()
    syncd = Syncd(tmp_path / "home", process.url)
    for value in ("one", "two"):
        assert (await syncd("set", "k", value)).code == 0
    between = wall_clock_ms()
    assert (await syncd("rm", "k")).code == 0

    log = await syncd("log", "k")
    assert log.code == 0, log.err
    lines = log.out.splitlines()
    assert [line.split("  ")[2] for line in lines] == ["deleted", '"two"', '"one"']
    as_json = [json.loads(line) for line in (await syncd("log", "k", "--json")).out.splitlines()]
    assert [v.get("value", "deleted") for v in as_json] == ["deleted", "two", "one"]
    assert (await syncd("log", "k", "--limit", "1")).out.count("\n") == 1

    # Undo the delete, then undo that restore, then bring back "one" by its ts.
    restored = await syncd("restore", "k")
    assert restored.code == 0, restored.err
    assert (await syncd("get", "k")).out == "two\n"
    assert (await syncd("restore", "k")).code == 0
    assert (await syncd("get", "k")).code == 1  # deleted again
    assert (await syncd("restore", "k", "--ts", as_json[2]["ts"])).code == 0
    assert (await syncd("get", "k")).out == "one\n"
    assert (await syncd("restore", "k", "--at", str(between))).code == 0
    assert (await syncd("get", "k")).out == "two\n"
    history = [json.loads(line) for line in (await syncd("log", "k", "--json")).out.splitlines()]
    assert [v.get("value", "deleted") for v in history][:4] == ["two", "one", "deleted", "two"]

    dumped = await syncd("dump", "--at", str(between))
    assert json.loads(dumped.out) == {"k": "two"}, dumped.err
    assert json.loads((await syncd("dump", "--at", "1970-01-02T00:00:00+00:00")).out) == {}

    absent = await syncd("log", "never")
    assert (absent.code, absent.message) == (1, "syncd log: no history for never")
    none_then = await syncd("restore", "k", "--at", "1970-01-02T00:00:00+00:00")
    assert none_then.code == 1 and "has no version at" in none_then.message
    bad = await syncd("dump", "--at", "yesterday")
    assert bad.code == 2 and "invalid time" in bad.message


async def test_conflicts_lists_the_writes_that_lost(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    process = server_process()
    await process.start()
    syncd = Syncd(tmp_path / "home", process.url)
    assert (await syncd("set", "k", "newer")).code == 0
    # A writer that was offline sends an older write of k: it loses on arrival.
    late = await hello(process.url, "late-writer")
    try:
        ts = format_timestamp(wall_clock_ms() - 60_000, 0, "late-writer")
        await late.connection.send(json.dumps(ops(1, ("k", ts, "older"))))
        for _ in range(10):
            if json.loads(await late.connection.recv())["type"] == "ack":
                break
    finally:
        await late.close()
    assert (await syncd("get", "k")).out == "newer\n"

    found = await syncd("conflicts", "--json")
    assert found.code == 0, found.err
    records = [json.loads(line) for line in found.out.splitlines()]
    assert [(r["key"], r["lost"], r["winner"]["value"]) for r in records] == [
        (
            "k",
            {"ts": ts, "node": "late-writer", "time": records[0]["lost"]["time"], "value": "older"},
            "newer",
        )
    ]
    text = await syncd("conflicts", "--node", "late-writer")
    assert text.out.count('k: late-writer wrote "older", overridden by') == 1, text.out
    assert (await syncd("conflicts", "--node", records[0]["winner"]["node"])).out == ""
