"""Convergence under chaos (``tests/chaos.py``): clients and a ``kill -9``'d server agree.

One seeded run at a size that fits the test suite: a few clients, a small key
space, random writes, cuts, partitions, offline restarts, skewed clocks and
server kills, then a heal and the checks. The seed is printed; replay it with
``SYNCD_CHAOS_SEED=1234 pytest tests/test_chaos.py``. The soak runs the same
harness for minutes: ``make soak``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos import ChaosConfig, chaos_seed, run_chaos


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_replica_converges_and_no_acknowledged_write_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = chaos_seed()
    with capsys.disabled():
        print(f"\nchaos seed {seed} (replay: SYNCD_CHAOS_SEED={seed})")
    config = ChaosConfig(seed=seed, clients=4, keys=8, steps=150, rounds=2)
    report = await run_chaos(config, tmp_path / "chaos")
    with capsys.disabled():
        print(report.summary())
    assert report.ok, report.summary()
    assert report.operations > 0 and report.acked > 0
