"""Convergence under chaos: a seeded fault-injection harness for clients and server.

N :class:`~syncd.client.Client` objects write and delete keys of one small
key space, at random, while the harness breaks things around them:

- **cuts**: a client's TCP connection is aborted mid-stream (each client talks
  to the server through its own :class:`Proxy`, so a cut can drop an ack, a
  broadcast or half a frame);
- **partitions**: a client's proxy refuses connections for a number of steps
  (the client writes offline, its writes wait in the pending queue);
- **client restarts while offline**: the client is closed and made again from
  its store file, which must keep its pending writes;
- **clock skew**: some clients read a wall clock off by up to ``max_skew``
  less a margin (it shows after a restart, before a ``welcome`` corrects it);
- **server kills**: ``syncd serve`` (a real subprocess) is killed with
  ``kill -9`` and started again later, on the same port and data directory.

Every decision comes from one :class:`random.Random` made from the seed, so the
sequence of actions is the same for a seed (the timing of real sockets is
not). A round is a number of steps, then a **heal** (server up, partitions
lifted, every client synced, every pending write flushed) and a **check**:

1. every client's replica equals the server's state (read by a fresh client);
2. the server's state equals a model: for every key, the write with the
   greatest timestamp among all the writes the clients made;
3. no acknowledged write is lost: each is the winner of its key or lost to a
   write with a greater timestamp that is itself the winner;
4. the server never crashed on its own and logged no traceback, and no client
   logged an error (e.g. a store file it could not write).

Along the way, each client's timestamps must keep growing (contract §2, across
restarts too), a restart must keep every pending write, and no write may be
refused for good, nor for a clock skew within the bound.

From a test, :func:`run_chaos`; as a soak, from the shell::

    python tests/chaos.py --minutes 5 [--seed N] [--clients 8] [--keys 12]

``$SYNCD_CHAOS_SEED`` (or ``--seed``) replays a seed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from servers import TIMEOUT, ServerProcess

from syncd.client import Backoff, Client, Subscription
from syncd.crdt import Entry, JSONValue, canonical_json, wall_clock_ms
from syncd.errors import SyncdError
from syncd.events import Acked, Overridden, Rejected, Write

__all__ = [
    "DOC",
    "FAST",
    "ChaosConfig",
    "ChaosReport",
    "ChaosRun",
    "ErrorLog",
    "Member",
    "Proxy",
    "WriteRecord",
    "chaos_seed",
    "diff_entries",
    "live_entries",
    "replica_entries",
    "run_chaos",
    "soak_config",
]

DOC: Final = "chaos"
FAST: Final = Backoff(initial=0.05, maximum=0.5, factor=2.0, jitter=0.5)
"""Clients come back quickly after a cut or a server restart."""
HEAL_TIMEOUT: Final = 12 * TIMEOUT
"""How long the heal may take: server start, every reconnect, every pending write."""

Progress = Callable[["ChaosReport"], None]


def chaos_seed() -> int:
    """``$SYNCD_CHAOS_SEED`` if set, else a fresh random seed."""
    text = os.environ.get("SYNCD_CHAOS_SEED", "").strip()
    return int(text) if text else random.SystemRandom().randrange(1, 2**31)


@dataclass(frozen=True)
class ChaosConfig:
    """How big a chaos run is. ``minutes`` (if set) runs rounds until it is over."""

    seed: int
    clients: int = 4
    keys: int = 8
    steps: int = 200
    """Steps per round."""
    rounds: int = 1
    """Rounds to run, unless ``minutes`` is set."""
    minutes: float | None = None
    max_skew: float = 5.0
    """The server's ``--max-skew``, in seconds."""
    skew_margin: float = 2.0
    """Clients' clocks are off by at most ``max_skew - skew_margin`` seconds."""
    step_pause: float = 0.02
    """The longest pause between two steps, in seconds."""


@dataclass(frozen=True)
class WriteRecord:
    """One write a client made: its key, timestamp and canonical value (None: a delete)."""

    client: int
    key: str
    ts: str
    value_json: str | None
    round: int
    step: int


@dataclass
class ChaosReport:
    """What a run did and what it found."""

    seed: int
    clients: int
    rounds: int = 0
    steps: int = 0
    operations: int = 0
    """Writes made (sets and deletes, each key of an update counted)."""
    acked: int = 0
    """Writes acknowledged (by an ack, or by the server showing it had them)."""
    overridden: int = 0
    """Pending writes that lost to a newer write before reaching the server."""
    cuts: int = 0
    partitions: int = 0
    client_restarts: int = 0
    server_kills: int = 0
    final_keys: int = 0
    """Live keys in the server's state at the last check."""
    lost: int = 0
    """Acknowledged writes missing from the final state."""
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    workdir: Path | None = None
    replay: str = ""
    """The command that runs the same schedule again."""
    trace: list[str] = field(default_factory=list)
    """Every action taken, in order: the schedule a seed produces."""

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.failures

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"seed {self.seed}: {self.clients} clients, {self.rounds} rounds, {self.steps} steps "
            f"in {self.elapsed:.1f} s",
            f"operations {self.operations}, acked writes {self.acked}, "
            f"overridden before delivery {self.overridden}",
            f"disconnects {self.cuts} cuts + {self.partitions} partitions, "
            f"client restarts {self.client_restarts}, server kills {self.server_kills}",
            f"final keys {self.final_keys}",
        ]
        if self.ok:
            lines.append("0 acknowledged writes lost, every replica converged")
        else:
            lines.append(f"{self.lost} acknowledged writes lost; {len(self.failures)} failures:")
            lines.extend(f"  - {failure}" for failure in self.failures[:20])
            if self.workdir is not None:
                lines.append(f"  (trace and server logs kept in {self.workdir})")
            lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)


# -- a proxy that can cut and partition one client's traffic -----------------------


class Proxy:
    """A TCP relay on 127.0.0.1 from one client to the server, that faults on demand."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.partitioned = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The WebSocket URL the client uses."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def cut(self) -> int:
        """Abort every relayed connection, both sides; how many there were."""
        links, self._links = self._links, set()
        for downstream, upstream in links:
            downstream.transport.abort()
            upstream.transport.abort()
        return len(links)

    async def close(self) -> None:
        """Stop listening and relaying."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            writer.transport.abort()
            return
        try:
            async with asyncio.timeout(TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
        except (OSError, TimeoutError):
            writer.transport.abort()  # the server is down: so is the client's connection
            return
        if self.partitioned:  # partitioned while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()
            await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(65_536):
            sink.write(data)
            await sink.drain()


# -- one chaos client -----------------------------------------------------------------


class Member:
    """One client of a run: its proxy, store, clock skew, and the Client of the moment."""

    def __init__(
        self,
        index: int,
        proxy: Proxy,
        store: Path,
        skew_ms: int,
        keep_replica: bool,
        url: str | None = None,
    ) -> None:
        self.index = index
        self.node = f"chaos{index}"
        self.proxy = proxy
        self.url = url or proxy.url
        """Where the next Client connects: its proxy, unless told another server's URL."""
        self.store = store
        self.skew_ms = skew_ms
        self.keep_replica = keep_replica
        self.offline_until = -1
        """The step at which the partition is lifted (-1: not partitioned)."""
        self.acked: set[str] = set()
        self.overridden: set[str] = set()
        self.rejected: list[str] = []
        self.last_ts = ""
        """The greatest timestamp this client issued: the next must be greater (§2)."""
        self.client = self._make()
        self._reader: asyncio.Task[None] | None = None

    def wall(self) -> int:
        """This client's wall clock, in milliseconds: off by ``skew_ms``."""
        return wall_clock_ms() + self.skew_ms

    def _make(self) -> Client:
        return Client(
            self.url,
            DOC,
            node=self.node,
            store=self.store,
            keep_replica=self.keep_replica,
            timeout=TIMEOUT,
            backoff=FAST,
            clock_sync_interval=1.0,
            save_interval=0.2,
            wall=self.wall,
        )

    async def start(self) -> None:
        """Start the current Client's connection loop, without waiting for it."""
        events = self.client.subscribe(Acked, Overridden, Rejected)
        self._reader = asyncio.create_task(self._record(events), name=f"{self.node} events")
        await self.client.connect(wait=False)

    async def _record(self, events: Subscription[Any]) -> None:
        async for event in events:
            if isinstance(event, Acked):
                self.acked.update(write.ts for write in event.writes)
            elif isinstance(event, Overridden):
                self.overridden.add(event.write.ts)
            elif isinstance(event, Rejected) and (
                event.retry_after is None or event.code == "clock_skew"
            ):
                # Dropped writes, or skew within the bound refused (contract §2): both wrong.
                self.rejected.append(f"{event.code}: {event.message} ({event.writes})")

    async def stop(self) -> None:
        """Close the Client (its store keeps the pending writes) and read its last events."""
        await self.client.close()
        if self._reader is not None:
            async with asyncio.timeout(TIMEOUT):
                await self._reader
            self._reader = None

    async def restart(self) -> str | None:
        """Close the Client and make a new one from the store; what went wrong, if anything."""
        before = {p.write for p in self.client.replica.pending}
        await self.stop()
        self.client = self._make()
        after = {p.write for p in self.client.replica.pending}
        await self.start()
        # Frames already read before the cut may still settle writes while closing.
        before = {w for w in before if w.ts not in self.acked and w.ts not in self.overridden}
        if before != after:
            return (
                f"{self.node}: the restart lost pending writes {_names(before - after)} "
                f"and made up {_names(after - before)}"
            )
        return None


# -- the run ------------------------------------------------------------------------


class ChaosRun:
    """What every chaos run shares: the seeded writes, the steps, and the checks of a state.

    A run subclasses it with its faults (:meth:`_lift`, :meth:`_act`) and its systems.
    """

    def __init__(
        self, config: ChaosConfig, workdir: Path, progress: Progress | None, replay: str
    ) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.workdir = workdir
        self.progress = progress
        self.report = ChaosReport(config.seed, config.clients, workdir=workdir, replay=replay)
        self.members: list[Member] = []
        self.writes: dict[str, WriteRecord] = {}
        """Every write made, by timestamp (a replica never issues a timestamp twice)."""
        self.round = 0
        self.step = 0
        self.counter = 0

    def log(self, text: str) -> None:
        self.report.trace.append(f"r{self.round} s{self.step}: {text}")

    async def _round(self, deadline: float | None) -> None:
        for step in range(self.config.steps):
            self.step = step
            if deadline is not None and time.monotonic() >= deadline and step > 0:
                break
            await self._lift(step)
            await self._act(step)
            self.report.steps += 1
            if self.progress is not None and step % 10 == 0:
                self.progress(self.report)
            await asyncio.sleep(self.rng.uniform(0, self.config.step_pause))

    async def _lift(self, step: int) -> None:
        """End the faults that are due at ``step``."""
        raise NotImplementedError

    async def _act(self, step: int) -> None:
        """One random action: a write, or a fault."""
        raise NotImplementedError

    def _value(self, member: Member) -> JSONValue:
        self.counter += 1
        n = self.counter
        kind = self.rng.randrange(6)
        values: list[JSONValue] = [
            n,
            f"c{member.index}-{n}",
            [member.index, n],
            {"c": member.index, "n": n},
            None,
            n % 2 == 0,
        ]
        return values[kind]

    def _key(self) -> str:
        return f"k{self.rng.randrange(self.config.keys)}"

    async def _write(self, member: Member) -> None:
        key = self._key()
        if self.rng.random() < 0.25:
            change = await member.client.delete(key, wait=False)
            self._record(member, key, change.ts, None)
            self.log(f"c{member.index}: delete {key} @ {change.ts}")
        else:
            value = self._value(member)
            change = await member.client.set(key, value, wait=False)
            self._record(member, key, change.ts, canonical_json(value))
            self.log(f"c{member.index}: set {key}={value!r} @ {change.ts}")

    async def _update(self, member: Member) -> None:
        keys = sorted({self._key() for _ in range(self.rng.randint(2, 5))})
        values = {key: self._value(member) for key in keys}
        changes = await member.client.update(values, wait=False)
        for change in changes:
            self._record(member, change.key, change.ts, canonical_json(values[change.key]))
        self.log(f"c{member.index}: update {keys} @ {changes[0].ts}..")

    def _record(self, member: Member, key: str, ts: str, value_json: str | None) -> None:
        if ts <= member.last_ts:
            self.report.failures.append(
                f"round {self.round} step {self.step}: c{member.index} issued {ts} after "
                f"{member.last_ts}: its clock went back"
                + (" (a timestamp issued twice)" if ts in self.writes else "")
            )
            ts = f"{ts} (again)"  # keep both in the model; the run fails anyway
        member.last_ts = max(member.last_ts, ts)
        self.writes[ts] = WriteRecord(member.index, key, ts, value_json, self.round, self.step)
        self.report.operations += 1

    async def _check_replicas(self, state: Mapping[str, Entry], round: int) -> None:
        """Check 1: every client's replica converges to ``state`` (within the heal time)."""
        report = self.report
        server_live = live_entries(state.values())
        report.final_keys = len(server_live)

        # 1. Every replica converges to the server's state (broadcasts may still be in flight).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEAL_TIMEOUT):
                while any(
                    live_entries(replica_entries(m.client)) != server_live for m in self.members
                ):
                    await asyncio.sleep(0.02)
        for member in self.members:
            mine = live_entries(replica_entries(member.client))
            if mine != server_live:
                report.failures.append(
                    f"round {round}: c{member.index} diverged from the server: "
                    f"{diff_entries(mine, server_live)}"
                )

    def _check_model(self, state: Mapping[str, Entry], round: int) -> None:
        """Checks 2 and 3: ``state`` is the model, and no acknowledged write is lost."""
        report = self.report
        server_live = live_entries(state.values())
        # 2. The server's state is the model: per key, the write with the greatest ts.
        winners: dict[str, WriteRecord] = {}
        for record in self.writes.values():
            best = winners.get(record.key)
            if best is None or record.ts > best.ts:
                winners[record.key] = record
        model = {k: (w.ts, w.value_json) for k, w in winners.items() if w.value_json is not None}
        if model != server_live:
            report.failures.append(
                f"round {round}: the server's state is not the model: "
                f"{diff_entries(server_live, model)}"
            )
        for key, entry in state.items():
            made = self.writes.get(entry.ts)
            if made is None or made.key != key or made.value_json != entry.value_json:
                report.failures.append(f"round {round}: {key!r} holds a write never made: {entry}")

        # 3. No acknowledged write is lost.
        acked = set().union(*(m.acked for m in self.members))
        report.acked = len(acked & self.writes.keys())
        report.overridden = len(set().union(*(m.overridden for m in self.members)))
        lost = 0
        for ts in sorted(acked):
            write = self.writes.get(ts)
            if write is None:
                report.failures.append(f"round {round}: an ack for a write never made: {ts}")
                continue
            held = state.get(write.key)
            if held is None or held.ts < ts:
                lost += 1
                report.failures.append(
                    f"round {round}: acknowledged write lost: c{write.client} {write.key!r} "
                    f"@ {ts} (round {write.round} step {write.step}); the server holds "
                    f"{held.ts if held else 'nothing'}"
                )
        report.lost = lost
        for member in self.members:
            report.failures.extend(f"c{member.index} rejected: {r}" for r in member.rejected)
            member.rejected.clear()


class _Chaos(ChaosRun):
    def __init__(
        self, config: ChaosConfig, workdir: Path, progress: Progress | None, replay: str
    ) -> None:
        super().__init__(config, workdir, progress, replay)
        self.server = ServerProcess(
            data=workdir / "server-data",
            logs=workdir / "server-logs",
            args=("--max-skew", f"{config.max_skew:g}"),
        )
        self.server_up = False
        self.server_back_at = -1
        """The step at which a killed server is started again."""

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        deadline = None if self.config.minutes is None else started + 60 * self.config.minutes
        errors = ErrorLog()
        logging.getLogger("syncd").addHandler(errors)
        try:
            await self.server.start()
            self.server_up = True
            await self._make_members()
            while True:
                self.round += 1
                await self._round(deadline)
                await self._heal()
                await self._check()
                self.report.rounds = self.round
                self.report.elapsed = time.monotonic() - started
                if self.progress is not None:
                    self.progress(self.report)
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
            (self.workdir / "trace.txt").write_text("\n".join(self.report.trace) + "\n")
        finally:
            for member in self.members:
                with contextlib.suppress(Exception):
                    await member.stop()
                await member.proxy.close()
            self.server.cleanup()
            logging.getLogger("syncd").removeHandler(errors)
            self.report.failures.extend(f"a client logged: {m}" for m in errors.messages[:10])
            self.report.elapsed = time.monotonic() - started
        return self.report

    async def _make_members(self) -> None:
        bound = int(1000 * (self.config.max_skew - self.config.skew_margin))
        for index in range(self.config.clients):
            proxy = Proxy(self.server.port)
            await proxy.start()
            skew = self.rng.randint(-bound, bound) if self.rng.random() < 0.6 else 0
            keep = self.rng.random() < 0.75
            member = Member(index, proxy, self.workdir / f"client{index}.db", skew, keep)
            self.log(f"c{index}: skew {skew} ms, keep_replica={keep}")
            self.members.append(member)
            await member.start()

    # -- steps ----------------------------------------------------------------------

    async def _lift(self, step: int) -> None:
        """End the partitions and the server outage that are due."""
        for member in self.members:
            if member.offline_until == step:
                member.proxy.partitioned = False
                member.offline_until = -1
                member.client.reconnect_now()
                self.log(f"c{member.index}: partition lifted")
        if not self.server_up and self.server_back_at == step:
            await self._start_server()

    async def _act(self, step: int) -> None:
        rng = self.rng
        member = rng.choice(self.members)
        roll = rng.random()
        if roll < 0.70:
            await self._write(member)
        elif roll < 0.75:
            await self._update(member)
        elif roll < 0.83:
            count = member.proxy.cut()
            self.report.cuts += 1
            self.log(f"c{member.index}: cut ({count} connections)")
        elif roll < 0.88:
            if member.offline_until < 0:
                self._partition(member, step)
        elif roll < 0.93:
            self._partition(member, step)
            problem = await member.restart()
            self.report.client_restarts += 1
            self.log(f"c{member.index}: restarted offline from its store")
            if problem is not None:
                self.report.failures.append(f"round {self.round} step {step}: {problem}")
        elif roll < 0.96:
            if self.server_up:
                await asyncio.sleep(rng.uniform(0, 0.03))  # a random moment mid-traffic
                await self.server.kill()
                self.server_up = False
                self.server_back_at = step + rng.randint(2, 25)
                self.report.server_kills += 1
                self.log(f"server: kill -9, back at step {self.server_back_at}")
        else:
            await asyncio.sleep(rng.uniform(0, 0.2))

    def _partition(self, member: Member, step: int) -> None:
        member.proxy.partitioned = True
        member.proxy.cut()
        member.offline_until = step + self.rng.randint(3, 40)
        self.report.partitions += 1
        self.log(f"c{member.index}: partitioned until step {member.offline_until}")

    async def _start_server(self) -> None:
        await self.server.start()
        self.server_up = True
        self.log("server: started again")

    # -- heal and check -------------------------------------------------------------

    async def _heal(self) -> None:
        self.step = self.config.steps
        if self.server_up and self.server.process is not None:
            code = self.server.process.poll()
            if code is not None:
                self.report.failures.append(
                    f"round {self.round}: the server exited on its own with {code}"
                )
                self.server_up = False
        if not self.server_up:
            await self._start_server()
        for member in self.members:
            member.proxy.partitioned = False
            member.offline_until = -1
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

    async def _server_state(self) -> dict[str, Entry]:
        reader = Client(
            self.server.url, DOC, node=f"chaos-reader{self.round}", timeout=TIMEOUT, backoff=FAST
        )
        await reader.connect()
        try:
            return {e.key: e for e in reader.replica.document.changes_since(0)}
        finally:
            await reader.close()

    async def _check(self) -> None:
        report, round = self.report, self.round
        state = await self._server_state()
        await self._check_replicas(state, round)
        self._check_model(state, round)

        # 4. The server logged no traceback.
        for run in range(1, self.server.runs + 1):
            path = self.server.logs / f"stderr.{run}.txt"
            if path.exists() and "Traceback" in path.read_text(errors="replace"):
                report.failures.append(f"the server logged a traceback: {path}")
        if report.failures:
            (self.workdir / "trace.txt").write_text("\n".join(report.trace) + "\n")


class ErrorLog(logging.Handler):
    """Keeps the errors the clients log: each is a defect the checks may not see."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _names(writes: set[Write]) -> list[str]:
    return sorted(f"{w.key}@{w.ts}" for w in writes)


def replica_entries(client: Client) -> list[Entry]:
    return client.replica.document.changes_since(0)


def live_entries(entries: Iterable[Entry]) -> dict[str, tuple[str, str | None]]:
    return {e.key: (e.ts, e.value_json) for e in entries if not e.deleted}


def diff_entries(
    got: Mapping[str, tuple[str, str | None]], want: Mapping[str, tuple[str, str | None]]
) -> str:
    keys = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    return "; ".join(f"{k}: {got.get(k)} != {want.get(k)}" for k in keys[:5])


async def run_chaos(
    config: ChaosConfig,
    workdir: Path,
    progress: Progress | None = None,
    replay: str | None = None,
) -> ChaosReport:
    """Run the chaos of ``config`` in ``workdir`` (stores, server data, logs, trace).

    ``progress`` is called every few steps; ``replay`` is the command a failure's
    summary tells to run again (by default, the test with this seed).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    replay = replay or f"SYNCD_CHAOS_SEED={config.seed} pytest tests/test_chaos.py"
    return await _Chaos(config, workdir, progress, replay).run()


# -- the soak, from the shell ---------------------------------------------------------


def soak_config(
    argv: list[str] | None, doc: str | None, *, clients: int, steps: int
) -> tuple[argparse.Namespace, ChaosConfig]:
    """A soak's command line (``--minutes``, ``--seed``, ``--clients``, ``--keys``,
    ``--steps``; ``doc``'s first paragraph as its description) and the run it asks for."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run")
    parser.add_argument("--seed", type=int, help="replay a seed (default: $SYNCD_CHAOS_SEED)")
    parser.add_argument("--clients", type=int, default=clients, help="number of clients")
    parser.add_argument("--keys", type=int, default=12, help="size of the key space")
    parser.add_argument("--steps", type=int, default=steps, help="steps per round")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else chaos_seed()
    config = ChaosConfig(
        seed=seed, clients=args.clients, keys=args.keys, steps=args.steps, minutes=args.minutes
    )
    return args, config


def main(argv: list[str] | None = None) -> int:
    """``python tests/chaos.py --minutes 5``: a soak with a progress bar and a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    args, config = soak_config(argv, __doc__, clients=8, steps=400)
    seed = config.seed
    console = Console()
    console.print(f"syncd chaos soak: seed {seed} (replay: --seed {seed})")
    workdir = Path(tempfile.mkdtemp(prefix="syncd-chaos-"))
    total = 60 * args.minutes
    started = time.monotonic()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("starting", total=total)

        def show(report: ChaosReport) -> None:
            bar.update(
                task,
                completed=min(time.monotonic() - started, total),
                description=(
                    f"round {report.rounds + 1} ops {report.operations} "
                    f"kills {report.server_kills} restarts {report.client_restarts} "
                    f"cuts {report.cuts}"
                ),
            )

        replay = (
            f"python tests/chaos.py --seed {seed} --clients {args.clients} --keys {args.keys} "
            f"--steps {args.steps} --minutes {args.minutes:g}"
        )
        report = asyncio.run(run_chaos(config, workdir, show, replay))
        bar.update(task, completed=total)
    console.print(report.summary())
    if report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
