"""Convergence of a cluster under chaos: three ``syncd serve --cluster`` nodes and one Redis.

The writes, the members (real :class:`~syncd.client.Client` objects), the model
and the checks are those of ``tests/chaos.py`` (:class:`~chaos.ChaosRun`); the
faults here are the cluster's, each drawn from the seed:

- **node kill**: ``kill -9`` of a node, started again later on its data;
- **node pause**: SIGSTOP, then SIGCONT some steps later;
- **node cut off**: the node's link to Redis (a :class:`~redis_server.TcpProxy`)
  is cut while its clients keep writing, healed later;
- **Redis kill**: ``kill -9`` of Redis, restarted later from its append-only file;
- **Redis wiped**: Redis killed and restarted empty;
- **trim past a stopped node**: a node is stopped, more writes than
  ``--cluster-retention`` are made elsewhere, and the stream is trimmed past it;
- **moves**: a client is closed and made again from its store on another node's URL;
- **client cuts**: a client's link to its first node is cut (its relay).

After the steps, the heal (every node and Redis up, links healed, every client
synced and flushed), then the checks: the three nodes hold the same entries
(live and tombstones, timestamps included); that state is the model (so no
deleted key came back) and holds every acknowledged write unless a greater
timestamp beat it; every client's replica converged; no node logged a
traceback; Redis's ``used_memory`` stays under :data:`REDIS_MEMORY_CAP`.

From a test, :func:`run_cluster_chaos`; as a soak (``make soak-cluster``)::

    python tests/cluster_chaos.py --minutes 5 [--seed N]

``$SYNCD_CHAOS_SEED`` (or ``--seed``) replays a seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from chaos import (
    DOC,
    FAST,
    ChaosConfig,
    ChaosReport,
    ChaosRun,
    ErrorLog,
    Member,
    Proxy,
    diff_entries,
    soak_config,
)
from redis.exceptions import RedisError
from servers import TIMEOUT, ServerProcess

from bench.cluster_redis import RedisProcess, TcpProxy
from syncd.client import Client
from syncd.crdt import Entry
from syncd.errors import SyncdError

__all__ = ["NODES", "REDIS_MEMORY_CAP", "RETENTION", "run_cluster_chaos"]

NODES: Final = 3
RETENTION: Final = 40
"""``--cluster-retention``: small, so a stopped node can be trimmed past in a few steps."""
REDIS_MEMORY_CAP: Final = 32 * 1024 * 1024
"""Redis's ``used_memory`` after the heal: the stream is trimmed to :data:`RETENTION`
entries and the rest is a handful of small keys; an empty Redis uses about 1 MiB."""
HEAL_TIMEOUT: Final = 12 * TIMEOUT
CHECK_INTERVAL: Final = "1"
"""``--cluster-check-interval``: anti-entropy finds an entry Redis lost (AOF everysec)."""


class _ClusterChaos(ChaosRun):
    def __init__(self, config: ChaosConfig, workdir: Path, replay: str) -> None:
        super().__init__(config, workdir, None, replay)
        self.redis = RedisProcess(workdir / "redis")
        self.links: list[TcpProxy] = []
        """Each node's link to Redis, which a cut severs."""
        self.nodes: list[ServerProcess] = []
        self.down_until: dict[int, int] = {}
        """Stopped nodes (killed or trimmed past): the step at which each starts again."""
        self.paused_until: dict[int, int] = {}
        self.cut_until: dict[int, int] = {}
        self.redis_back_at = -1
        """The step at which a killed Redis starts again (-1: it runs)."""
        self.counts: dict[str, int] = {}

    def count(self, fault: str) -> None:
        self.counts[fault] = self.counts.get(fault, 0) + 1

    async def run(self, deadline: float | None) -> ChaosReport:
        started = time.monotonic()
        errors = ErrorLog()
        logging.getLogger("syncd").addHandler(errors)
        try:
            await self.redis.start()
            for number in range(1, NODES + 1):
                link = TcpProxy(self.redis.port)
                await link.start()
                self.links.append(link)
                self.nodes.append(
                    ServerProcess(
                        self.workdir / f"n{number}",
                        self.workdir / f"logs{number}",
                        args=(
                            "--cluster",
                            link.url,
                            "--cluster-retention",
                            str(RETENTION),
                            "--cluster-check-interval",
                            CHECK_INTERVAL,
                            "--max-skew",
                            f"{self.config.max_skew:g}",
                        ),
                    )
                )
            await asyncio.gather(*(node.start() for node in self.nodes))
            await self._make_members()
            while True:
                self.round += 1
                await self._round(deadline)
                await self._heal()
                await self._check()
                self.report.rounds = self.round
                if not self.report.ok:
                    break
                if deadline is None and self.round >= self.config.rounds:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except Exception as error:  # a crash or a hang of the system under test, or a bug here
            self.report.failures.append(
                f"round {self.round} step {self.step}: the run stopped: {error!r}"
            )
        finally:
            for number in self.paused_until:
                self.nodes[number].signal(signal.SIGCONT)
            for member in self.members:
                with contextlib.suppress(Exception):
                    await member.stop()
                await member.proxy.close()
            for link in self.links:
                await link.close()
            for node in self.nodes:
                node.cleanup()
            self.redis.cleanup()
            logging.getLogger("syncd").removeHandler(errors)
            self.report.failures.extend(f"a client logged: {m}" for m in errors.messages[:10])
            self.report.elapsed = time.monotonic() - started
            self.log("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
            if self.report.failures:
                (self.workdir / "trace.txt").write_text("\n".join(self.report.trace) + "\n")
        return self.report

    async def _make_members(self) -> None:
        bound = int(1000 * (self.config.max_skew - self.config.skew_margin))
        for index in range(self.config.clients):
            node = self.nodes[index % NODES]
            proxy = Proxy(node.port)
            await proxy.start()
            skew = self.rng.randint(-bound, bound) if self.rng.random() < 0.6 else 0
            keep = self.rng.random() < 0.75
            member = Member(index, proxy, self.workdir / f"client{index}.db", skew, keep)
            self.log(f"c{index}: on n{index % NODES + 1}, skew {skew} ms, keep_replica={keep}")
            self.members.append(member)
            await member.start()

    # -- faults -------------------------------------------------------------------------

    async def _lift(self, step: int) -> None:
        for number, until in list(self.paused_until.items()):
            if until <= step:
                self.nodes[number].signal(signal.SIGCONT)
                del self.paused_until[number]
                self.log(f"n{number + 1}: resumed (SIGCONT)")
        for number, until in list(self.cut_until.items()):
            if until <= step:
                await self.links[number].heal()
                del self.cut_until[number]
                self.log(f"n{number + 1}: link to Redis healed")
        if self.redis_back_at >= 0 and self.redis_back_at <= step:
            await self.redis.start()
            self.redis_back_at = -1
            self.log("redis: started again from its append-only file")
        for number, until in list(self.down_until.items()):
            # A node refuses to start without Redis: it waits for Redis and its link.
            if until <= step and self.redis_back_at < 0 and number not in self.cut_until:
                await self.nodes[number].start()
                del self.down_until[number]
                self.log(f"n{number + 1}: started again on its data")

    def _running(self) -> list[int]:
        """The nodes running and not paused."""
        return [n for n in range(NODES) if n not in self.down_until and n not in self.paused_until]

    async def _act(self, step: int) -> None:
        rng = self.rng
        member = rng.choice(self.members)
        roll = rng.random()
        running = self._running()
        if roll < 0.72:
            await self._write(member)
        elif roll < 0.76:
            await self._update(member)
        elif roll < 0.80:
            count = member.proxy.cut()
            self.count("client cuts")
            self.report.cuts += 1
            self.log(f"c{member.index}: relay cut ({count} connections)")
        elif roll < 0.85:
            await self._move(member)
        elif roll < 0.875 and len(running) > 1:
            number = rng.choice(running)
            await asyncio.sleep(rng.uniform(0, 0.03))  # a random moment mid-traffic
            await self.nodes[number].kill()
            self.down_until[number] = step + rng.randint(2, 20)
            self.count("node kills")
            self.report.server_kills += 1
            self.log(f"n{number + 1}: kill -9, back at step {self.down_until[number]}")
        elif roll < 0.90 and running:
            number = rng.choice(running)
            self.nodes[number].signal(signal.SIGSTOP)
            self.paused_until[number] = step + rng.randint(2, 15)
            self.count("node pauses")
            self.log(f"n{number + 1}: paused (SIGSTOP) until step {self.paused_until[number]}")
        elif roll < 0.925:
            number = rng.randrange(NODES)
            if number not in self.cut_until:
                await self.links[number].cut()
                self.cut_until[number] = step + rng.randint(3, 30)
                self.count("node cut from redis")
                self.log(f"n{number + 1}: cut from Redis until step {self.cut_until[number]}")
        elif roll < 0.94:
            if self.redis_back_at < 0:
                await self.redis.kill()
                self.redis_back_at = step + rng.randint(1, 15)
                self.count("redis kills")
                self.log(f"redis: kill -9, back at step {self.redis_back_at}")
        elif roll < 0.95:
            if self.redis_back_at < 0:
                await self.redis.kill()
                self.redis.wipe()
                await self.redis.start()
                self.count("redis wiped")
                self.log("redis: killed and restarted empty")
        elif roll < 0.965:
            await self._trim_past(step)
        else:
            await asyncio.sleep(rng.uniform(0, 0.2))

    async def _move(self, member: Member) -> None:
        """Close the member's Client and make it again from its store on another node's URL."""
        current = member.url
        choices = [node.url for node in self.nodes if node.url != current]
        member.url = self.rng.choice(choices)
        problem = await member.restart()
        self.count("client moves")
        self.report.client_restarts += 1
        self.log(f"c{member.index}: moved to {member.url}")
        if problem is not None:
            self.report.failures.append(f"round {self.round} step {self.step}: {problem}")

    async def _trim_past(self, step: int) -> None:
        """Stop a node, write more than the retention elsewhere, wait for the trim."""
        running = self._running()
        healthy = [n for n in running if n not in self.cut_until]
        if self.redis_back_at >= 0 or len(healthy) < 2:
            return  # the stream cannot grow past the retention now: no trim to see
        number = self.rng.choice(healthy)
        node = self.nodes[number]
        node.signal(signal.SIGTERM)
        code = await node.wait()
        if code != 0:
            self.report.failures.append(f"round {self.round}: n{number + 1} stopped with {code}")
        self.down_until[number] = step + self.rng.randint(2, 20)
        writers = [m for m in self.members if self._node_of(m) in healthy and m.url != node.url]
        self.count("trims past a stopped node")
        self.log(f"n{number + 1}: stopped to be trimmed past, back at {self.down_until[number]}")
        if not writers:
            return
        for _ in range(RETENTION + 10):
            await self._write(self.rng.choice(writers))
        await self._wait_trimmed()

    def _node_of(self, member: Member) -> int:
        """The node the member's Client talks to (directly, or through its relay)."""
        for number, node in enumerate(self.nodes):
            if member.url == node.url:
                return number
        return next(
            n for n, node in enumerate(self.nodes) if node.port == member.proxy.upstream_port
        )

    async def _wait_trimmed(self) -> None:
        """Until the stream is trimmed to the retention (a heartbeat trims it), bounded."""
        client = self.redis.client()
        try:
            async with asyncio.timeout(HEAL_TIMEOUT):
                while int(await client.xlen("syncd:log")) > RETENTION + 5:
                    await asyncio.sleep(0.1)  # trimming is a heartbeat's work: poll
            self.log("redis: stream trimmed to the retention")
        except (TimeoutError, RedisError, OSError) as error:
            self.log(f"redis: stream not trimmed in time ({error!r}); carrying on")
        finally:
            await client.aclose()

    # -- heal and check -----------------------------------------------------------------

    async def _heal(self) -> None:
        self.step = self.config.steps
        for number, node in enumerate(self.nodes):
            alive = number not in self.down_until
            code = node.process.poll() if node.process is not None else None
            if alive and code is not None:
                self.report.failures.append(
                    f"round {self.round}: n{number + 1} exited on its own with {code}"
                )
                self.down_until[number] = self.step
        await self._lift(10**9)
        for member in self.members:
            member.client.reconnect_now()
        self.log("heal")
        for member in self.members:
            try:
                await member.client.wait_synced(HEAL_TIMEOUT)
                await member.client.flush(HEAL_TIMEOUT)
            except SyncdError as error:
                self.report.failures.append(
                    f"round {self.round}: c{member.index} did not heal: {error} "
                    f"(pending {member.client.pending_count})"
                )

    async def _node_state(self, node: ServerProcess) -> dict[str, Entry]:
        reader = Client(
            node.url, DOC, node=f"chaos-reader{self.round}", timeout=TIMEOUT, backoff=FAST
        )
        await reader.connect()
        try:
            return {e.key: e for e in reader.replica.document.changes_since(0)}
        finally:
            await reader.close()

    async def _converged_state(self) -> dict[str, Entry]:
        """The nodes' common state, once they agree entry by entry (bounded wait)."""
        states: list[dict[str, Entry]] = []
        deadline = time.monotonic() + HEAL_TIMEOUT
        while time.monotonic() < deadline:
            states = [await self._node_state(node) for node in self.nodes]
            if all(_full(s) == _full(states[0]) for s in states):
                return states[0]
            await asyncio.sleep(0.2)  # replication has no event a client can await: poll
        for number, state in enumerate(states[1:], start=2):
            if _full(state) != _full(states[0]):
                self.report.failures.append(
                    f"round {self.round}: n{number} differs from n1: "
                    f"{diff_entries(_full(state), _full(states[0]))}"
                )
        return states[0]

    async def _check(self) -> None:
        state = await self._converged_state()
        await self._check_replicas(state, self.round)
        self._check_model(state, self.round)
        client = self.redis.client()
        try:
            used = int((await client.info("memory"))["used_memory"])
        finally:
            await client.aclose()
        self.log(f"redis: used_memory {used}")
        if used > REDIS_MEMORY_CAP:
            self.report.failures.append(
                f"round {self.round}: Redis uses {used} bytes, over the cap {REDIS_MEMORY_CAP}"
            )
        for number, node in enumerate(self.nodes, start=1):
            for run in range(1, node.runs + 1):
                path = node.logs / f"stderr.{run}.txt"
                if path.exists() and "Traceback" in path.read_text(errors="replace"):
                    self.report.failures.append(f"n{number} logged a traceback: {path}")


def _full(state: dict[str, Entry]) -> dict[str, tuple[str, str | None]]:
    """Every entry, tombstones included, as (ts, value JSON or None for a tombstone)."""
    return {k: (e.ts, None if e.deleted else e.value_json) for k, e in state.items()}


async def run_cluster_chaos(
    config: ChaosConfig, workdir: Path, replay: str | None = None
) -> tuple[ChaosReport, dict[str, int]]:
    """Run the cluster chaos of ``config`` in ``workdir``; the report and the faults' counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    replay = replay or f"SYNCD_CHAOS_SEED={config.seed} pytest tests/test_cluster_chaos.py"
    run = _ClusterChaos(config, workdir, replay)
    deadline = None if config.minutes is None else time.monotonic() + 60 * config.minutes
    report = await run.run(deadline)
    return report, run.counts


def main(argv: list[str] | None = None) -> int:
    """``python tests/cluster_chaos.py --minutes 5``: a soak, then a summary."""
    from rich.console import Console

    args, config = soak_config(argv, __doc__, clients=6, steps=300)
    seed = config.seed
    console = Console()
    console.print(f"syncd cluster chaos soak: seed {seed} (replay: --seed {seed})")
    workdir = Path(tempfile.mkdtemp(prefix="syncd-cluster-chaos-"))
    replay = (
        f"python tests/cluster_chaos.py --seed {seed} --clients {args.clients} "
        f"--keys {args.keys} --steps {args.steps} --minutes {args.minutes:g}"
    )
    report, counts = asyncio.run(run_cluster_chaos(config, workdir, replay))
    console.print(report.summary())
    console.print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
