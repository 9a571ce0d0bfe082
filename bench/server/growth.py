"""syncd alone: the cost of a write as the document grows, and a restart after ``kill -9``.

One ``syncd serve`` process holds two documents, ``small`` (1k keys) and ``big`` (1M
keys), both loaded through the protocol in ``ops`` frames of 1000 entries. Then,
alternating between the two for a few repetitions, one writer sets random existing
keys one per message (at most ``window`` unacknowledged) while one reader follows,
and the acknowledged sets per second are compared.

Then the server is killed with SIGKILL while it holds the big document (its last
writes in the log, not folded), and started again from the same data directory
with a new client (no ``since``) polling from the moment the process starts until
its ``hello`` is answered with ``synced`` (a full snapshot of 1M keys). A start
after an unclean stop takes a new epoch (readers may have seen writes that never
reached the disk), so a client that was connected before the kill also gets a
snapshot. To measure a delta, that server is then stopped cleanly and started once
more, with a reconnecting client whose ``since`` (in the epoch the new client was
given) is ``resume_gap`` entries behind the head. Both times are measured from the
process's start, and the handshake alone from the ``hello``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.server.clients import SyncdHandshake, SyncdWriter, open_client
from bench.server.config import ServerConfig
from bench.server.fanout import WriterState, WriteRun, run_writer
from bench.server.readers import Reader
from bench.server.servers import HOST, SYNCD, RunningServer, start_server, wait_listening
from bench.server.wire import Connection, WireError

__all__ = [
    "BIG",
    "GrowthResult",
    "RestartResult",
    "load_document",
    "measure_writes",
    "poll_handshake",
    "run_growth",
]

log = logging.getLogger(__name__)

SMALL, BIG = "small", "big"


@dataclass(frozen=True)
class RestartResult:
    """One restart: a client polling from the process's start."""

    client: str
    """``new`` (no ``since``: a snapshot, after ``kill -9``) or ``resume`` (a delta,
    after a clean stop)."""
    listening_s: float
    """From the process's start until it accepted a connection."""
    synced_s: float
    """From the process's start until the client had ``synced``."""
    handshake_s: float
    """From the client's ``hello`` until ``synced``."""
    full: bool
    entries: int
    epoch: str
    """The epoch the server's ``welcome`` named."""


@dataclass
class GrowthResult:
    """What the growth and restart cases measured."""

    sizes: dict[str, int]
    load_seconds: dict[str, float]
    rates: dict[str, list[float]] = field(default_factory=dict)
    """Acknowledged sets per second of each repetition, per document."""
    peak_rss: int = 0
    restarts: list[RestartResult] = field(default_factory=list)
    head: int = 0
    """The big document's head when the server was killed."""
    since: int = 0
    """The reconnecting client's ``since.seq``."""

    def median(self, doc: str) -> float:
        """The median rate into ``doc``."""
        return statistics.median(self.rates[doc])


async def load_document(server: RunningServer, doc: str, size: int, config: ServerConfig) -> float:
    """Fill ``doc`` with keys ``0 .. size - 1`` through the protocol; the seconds it took."""
    writer = SyncdWriter(doc, f"loader-{doc}")
    writer.expect(0)
    acked = asyncio.Event()
    pending = 0

    def on_message(opcode: int, payload: bytes, now: int) -> None:
        nonlocal pending
        if writer.acknowledged(payload):
            pending -= 1
            acked.set()

    connection = await open_client(HOST, server.port, "/ws", writer.handshake(), on_message)
    started = time.perf_counter()
    for frame, first in enumerate(range(0, size, config.load_frame)):
        while pending >= 8:
            acked.clear()
            await asyncio.wait_for(acked.wait(), config.ack_timeout)
        ops = ",".join(
            f'{{"key":"k{i:07d}","ts":"{writer._ts()}","value":"{i:016x}"}}'
            for i in range(first, min(first + config.load_frame, size))
        )
        connection.send(f'{{"type":"ops","id":{frame},"ops":[{ops}]}}')
        pending += 1
    while pending > 0:
        acked.clear()
        await asyncio.wait_for(acked.wait(), config.ack_timeout)
    seconds = time.perf_counter() - started
    await connection.close()
    return seconds


async def measure_writes(
    server: RunningServer, doc: str, size: int, config: ServerConfig, rng: random.Random
) -> tuple[float, int]:
    """One repetition into ``doc``: sets per second and the head."""
    writes = config.growth_writes
    keys = [f"k{rng.randrange(size):07d}" for _ in range(writes)]
    reader = Reader("growth-reader", writes)
    follow = await open_client(HOST, server.port, "/ws", SyncdHandshake(doc, "reader"), reader)
    writer = SyncdWriter(doc, "growth-writer")
    handshake = writer.handshake()
    assert isinstance(handshake, SyncdHandshake)
    writer.expect(writes)
    state = WriterState(writer, writes)
    connection = await open_client(HOST, server.port, "/ws", handshake, state)
    run: WriteRun = await run_writer(
        connection,
        state,
        window=config.window,
        burst=config.burst,
        rate=None,
        timeout=config.case_timeout,
        keys=keys.__getitem__,
    )
    await asyncio.wait_for(reader.complete, config.case_timeout)
    await asyncio.gather(connection.close(), follow.close())
    return run.acked_per_second, writer.last_seq


async def poll_handshake(
    server: RunningServer, handshake: SyncdHandshake, timeout: float
) -> tuple[int, int]:
    """Connect as soon as the server accepts; (hello sent, synced) in ``monotonic_ns``."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"syncd exited:\n{server.log_tail()}")
        hello = time.monotonic_ns()
        try:
            connection: Connection = await open_client(
                HOST, server.port, "/ws", handshake, _ignore, timeout=timeout
            )
        except (OSError, WireError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.002)
            continue
        await connection.close()
        return hello, handshake.done_ns


def _ignore(opcode: int, payload: bytes, now: int) -> None:
    pass


async def _restart(
    data: Path, port: int, client: str, since: tuple[str, int] | None
) -> RestartResult:
    """Start the server on ``data``, time ``client``'s handshake, then stop it cleanly."""
    server = start_server(SYNCD, data, port=port)
    try:
        handshake = SyncdHandshake(BIG, f"restart-{client}", since=since)
        hello, synced = await poll_handshake(server, handshake, 60.0)
        return RestartResult(
            client,
            # The client's first successful connect: when it was known to listen.
            listening_s=(hello - server.started_ns) / 1e9,
            synced_s=(synced - server.started_ns) / 1e9,
            handshake_s=(synced - hello) / 1e9,
            full=handshake.full,
            entries=handshake.entry_count,
            epoch=handshake.epoch,
        )
    finally:
        server.stop()


async def run_growth(
    config: ServerConfig, advance: Callable[[str], None] | None = None
) -> GrowthResult:
    """Load the two documents, compare write rates, then kill and restart twice."""
    step = advance or (lambda _: None)
    rng = random.Random(config.seed)
    sizes = {SMALL: config.small_doc, BIG: config.big_doc}
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        data = Path(tmp) / "data"
        server = start_server(SYNCD, data)
        try:
            await wait_listening(server)
            result = GrowthResult(sizes, {})
            for doc, size in sizes.items():
                step(f"load {size:,} keys into {doc!r}")
                result.load_seconds[doc] = await load_document(server, doc, size, config)
                log.info("loaded %s keys in %.1f s", f"{size:,}", result.load_seconds[doc])
            for repetition in range(config.growth_repeats):
                order = (SMALL, BIG) if repetition % 2 == 0 else (BIG, SMALL)
                for doc in order:
                    step(f"sets into {doc!r} ({repetition + 1}/{config.growth_repeats})")
                    rate, head = await measure_writes(server, doc, sizes[doc], config, rng)
                    result.rates.setdefault(doc, []).append(rate)
                    if doc == BIG:
                        result.head = head
            result.peak_rss = server.peak_rss()
        finally:
            server.kill()  # kill -9 while it holds the big document
        rates = {doc: [round(rate) for rate in found] for doc, found in result.rates.items()}
        log.info("write rates: %s", json.dumps(rates))
        step("restart after kill -9: a new client")
        result.restarts.append(await _restart(data, server.port, "new", None))
        step("restart after a clean stop: a reconnecting client")
        result.since = result.head - config.resume_gap
        since = (result.restarts[-1].epoch, result.since)
        result.restarts.append(await _restart(data, server.port, "resume", since))
        for restart in result.restarts:
            log.info(
                "restart, %s client: synced %.2f s after the start (handshake %.3f s, %s entries)",
                restart.client,
                restart.synced_s,
                restart.handshake_s,
                f"{restart.entries:,}",
            )
        return result
