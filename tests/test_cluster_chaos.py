"""Convergence of a cluster under chaos (``tests/cluster_chaos.py``): a short seeded run.

Three real nodes, one real ``redis-server`` and a few clients; random writes,
node kills, pauses, cuts from Redis, Redis killed and wiped, a stream trimmed
past a stopped node, clients moving between nodes; then the heal and the
checks. The seed is printed; replay it with
``SYNCD_CHAOS_SEED=1234 pytest tests/test_cluster_chaos.py``. The soak runs the
same harness for minutes: ``make soak-cluster``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos import ChaosConfig, chaos_seed
from cluster_chaos import run_cluster_chaos


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_nodes_converge_and_no_acknowledged_write_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = chaos_seed()
    with capsys.disabled():
        print(f"\ncluster chaos seed {seed} (replay: SYNCD_CHAOS_SEED={seed})")
    config = ChaosConfig(seed=seed, clients=4, keys=8, steps=120, rounds=2)
    report, faults = await run_cluster_chaos(config, tmp_path / "chaos")
    with capsys.disabled():
        print(report.summary())
        print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    assert report.ok, report.summary()
    assert report.operations > 0 and report.acked > 0
