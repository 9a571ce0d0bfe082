"""The Markdown report of a server benchmark run, its done-when checks, and its JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from bench.display import Check, checks_table, table
from bench.machine import machine_rows
from bench.server.fanout import FanoutResult
from bench.server.growth import BIG, SMALL, GrowthResult
from bench.server.runner import ServerRunResults
from bench.server.servers import PYCRDT, SERVERS, SYNCD, Y_WEBSOCKET

__all__ = ["SubjectSummary", "done_when", "render_json", "render_markdown", "subject_rows"]

VS_PYCRDT = 10.0
PACED_P99_MS = 10.0
SLOW_DISK_P99_MS = 5.0
GROWTH_RATIO = 0.7
RESTART_SYNCED_S = 5.0
RESUME_S = 1.0
TIMES = "\N{MULTIPLICATION SIGN}"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _find(
    results: ServerRunResults, server: str, readers: int, paced: bool, slow_disk: bool = False
) -> FanoutResult | None:
    for result in results.fanout:
        case = result.case
        found = (case.server.name, case.readers, case.rate is not None, case.slow_disk is not None)
        if found == (server, readers, paced, slow_disk):
            return result
    return None


def _slow_disk_checks(results: ServerRunResults) -> list[Check]:
    """Readers do not wait for the disk, and acks still do (issue #14)."""
    c = results.config
    readers = max(c.readers)
    slow = _find(results, SYNCD.name, readers, True, slow_disk=True)
    what = f"paced {c.paced_rate:g} sets/s, {readers} readers, slow disk: syncd"
    broadcast = slow.latency_ms.get("p99") if slow else None
    ack = slow.write.ack_ms.get("p99") if slow else None
    return [
        Check(
            f"{what} broadcast p99",
            f"{_ms(broadcast)} ms" if broadcast is not None else "not measured",
            f"< {SLOW_DISK_P99_MS:g} ms",
            broadcast < SLOW_DISK_P99_MS if broadcast is not None else None,
        ),
        Check(
            f"{what} ack p99 follows the disk (the injected delay)",
            f"{_ms(ack)} ms" if ack is not None else "not measured",
            f"≥ {c.slow_disk_delay_ms} ms",
            ack >= c.slow_disk_delay_ms if ack is not None else None,
        ),
    ]


def _ratio_check(results: ServerRunResults, readers: int, baseline: str, threshold: float) -> Check:
    ours, theirs = (_find(results, name, readers, False) for name in (SYNCD.name, baseline))
    name = (
        f"acknowledged writes/s with {readers} readers: syncd ≥ {threshold:g}{TIMES} {baseline}"
        if threshold > 1
        else f"acknowledged writes/s with {readers} readers: syncd ahead of {baseline}"
    )
    if ours is None or theirs is None:
        return Check(name, "not measured", f"≥ {threshold:g}{TIMES}", None)
    ratio = ours.write.acked_per_second / theirs.write.acked_per_second
    measured = (
        f"{ratio:.1f}{TIMES} ({ours.write.acked_per_second:,.0f}/s vs "
        f"{theirs.write.acked_per_second:,.0f}/s)"
    )
    return Check(name, measured, f"≥ {threshold:g}{TIMES}", ratio >= threshold)


def done_when(results: ServerRunResults) -> list[Check]:
    """The issue's thresholds against this run."""
    checks = [_ratio_check(results, n, PYCRDT.name, VS_PYCRDT) for n in (10, 50)]
    checks += [_ratio_check(results, n, Y_WEBSOCKET.name, 1.0) for n in (10, 50)]
    paced = _find(results, SYNCD.name, 50, True)
    p99 = paced.latency_ms.get("p99") if paced else None
    checks.append(
        Check(
            f"paced {results.config.paced_rate:g} sets/s, 50 readers: syncd broadcast p99",
            f"{_ms(p99)} ms" if p99 is not None else "not measured",
            f"< {PACED_P99_MS:g} ms",
            p99 < PACED_P99_MS if p99 is not None else None,
        )
    )
    checks += _slow_disk_checks(results)
    growth = results.growth
    if growth is not None and growth.rates:
        ratio = growth.median(BIG) / growth.median(SMALL)
        checks.append(
            Check(
                f"sets/s into {growth.sizes[BIG]:,} keys ÷ into {growth.sizes[SMALL]:,} keys",
                f"{ratio:.2f} ({growth.median(BIG):,.0f}/s vs {growth.median(SMALL):,.0f}/s)",
                f"≥ {GROWTH_RATIO:g}",
                ratio >= GROWTH_RATIO,
            )
        )
    restarts = {r.client: r for r in growth.restarts} if growth else {}
    new, resume = restarts.get("new"), restarts.get("resume")
    size = f"{growth.sizes[BIG]:,}" if growth else "1M"
    checks.append(
        Check(
            f"after kill -9 with {size} keys: a new client's hello answered with synced",
            f"{new.synced_s:.2f} s after the process started" if new else "not measured",
            f"≤ {RESTART_SYNCED_S:g} s",
            new.synced_s <= RESTART_SYNCED_S if new else None,
        )
    )
    checks.append(
        Check(
            "after a restart: a reconnecting client's delta resume (hello → synced)",
            f"{resume.handshake_s * 1000:.0f} ms ({resume.entries:,} entries; synced "
            f"{resume.synced_s:.2f} s after the process started)"
            if resume
            else "not measured",
            f"≤ {RESUME_S:g} s",
            resume.handshake_s <= RESUME_S and not resume.full if resume else None,
        )
    )
    return checks


def _fanout_rows(
    results: ServerRunResults, paced: bool, slow_disk: bool = False
) -> list[list[str]]:
    rows = []
    for readers in results.config.readers:
        for server in SERVERS:
            found = _find(results, server.name, readers, paced, slow_disk)
            if found is None:
                continue
            lat = found.latency_ms
            rows.append(
                [
                    f"{readers}",
                    server.name,
                    f"{found.write.acked_per_second:,.0f}",
                    f"{_ms(found.write.ack_ms.get('p50'))} / {_ms(found.write.ack_ms.get('p99'))}",
                    _ms(lat.get("p50")),
                    _ms(lat.get("p99")),
                    _ms(lat.get("max")),
                    f"{found.all_delivered_s:.2f}" if found.all_delivered_s else "never",
                    f"{found.peak_rss / 2**20:,.0f}",
                    f"{found.server_cpu_share:.2f}",
                    f"{found.server_cpu_per_1000_ms:.1f}",
                    f"{found.clients_cpu_share:.2f}",
                    f"{found.load:.1f}",
                ]
            )
    return rows


_FANOUT_HEADER = [
    "readers",
    "server",
    "acked writes/s",
    "ack p50 / p99 (ms)",
    "broadcast latency p50 (ms)",
    "p99 (ms)",
    "max (ms)",
    "all readers have all (s)",
    "server peak RSS (MiB)",
    "server CPU (cores)",
    "server CPU per 1,000 acked (ms)",
    "clients CPU (cores)",
    "load avg",
]


@dataclass(frozen=True)
class SubjectSummary:
    """One server's cost, from the cases with the most readers of the run."""

    server: str
    readers: int
    cpu_ms_per_1000_acked_max: float | None
    """Server CPU per 1,000 acknowledged writes, as fast as acks allow (ms)."""
    cpu_ms_per_1000_acked_paced: float | None
    """The same, paced."""
    peak_rss: int
    """The larger ``VmHWM`` of the two cases, in bytes."""


def subject_rows(results: ServerRunResults) -> list[SubjectSummary]:
    """Per server, from the cases with the most readers: CPU per 1,000 acknowledged
    writes (as fast as acks allow, and paced) and the peak RSS (the larger of the two)."""
    readers = max(results.config.readers)
    rows = []
    for server in SERVERS:
        fast, paced = (_find(results, server.name, readers, p) for p in (False, True))
        measured = [r for r in (fast, paced) if r is not None]
        if measured:
            rows.append(
                SubjectSummary(
                    server.name,
                    readers,
                    fast.server_cpu_per_1000_ms if fast else None,
                    paced.server_cpu_per_1000_ms if paced else None,
                    max(r.peak_rss for r in measured),
                )
            )
    return rows


def _cpu(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "—"


def _subject_section(results: ServerRunResults) -> list[str]:
    rows = subject_rows(results)
    if not rows:
        return []
    readers = rows[0].readers
    return [
        f"### The servers side by side at {readers} readers",
        "",
        "The server's CPU time (user + system, its whole process tree, from `/proc`) over "
        "a case divided by the writes it acknowledged, per 1,000; and its peak resident "
        "memory (`VmHWM`, the process fresh for each case), the larger of the two cases. "
        "The same figures as in the tables above, in one place.",
        "",
        *table(
            [
                "server",
                "CPU per 1,000 acked writes, as fast as acks allow (ms)",
                f"paced {results.config.paced_rate:g}/s (ms)",
                f"peak RSS at {readers} readers (MiB)",
            ],
            [
                [
                    row.server,
                    _cpu(row.cpu_ms_per_1000_acked_max),
                    _cpu(row.cpu_ms_per_1000_acked_paced),
                    f"{row.peak_rss / 2**20:,.0f}",
                ]
                for row in rows
            ],
        ),
        "",
    ]


def _commit_section(results: ServerRunResults) -> list[str]:
    rows = [
        [
            f"{r.case.readers}",
            r.case.mode,
            f"{r.commits:,}",
            f"{r.case.writes / r.commits:,.0f}" if r.commits else "—",
            f"{r.commit_seconds / r.commits * 1000:.2f}" if r.commits else "—",
            f"{r.commit_seconds / r.wall_s * 100:.0f}%" if r.wall_s else "—",
            *(f"{r.slow_commits.get(limit, 0):,}" for limit in ("2 ms", "5 ms", "10 ms")),
        ]
        for r in results.fanout
        if r.case.server is SYNCD
    ]
    if not rows:
        return []
    return [
        "### syncd's group commits",
        "",
        "From syncd's `/metrics` at the end of each case: how many commits (one `write` "
        "and one `fsync` each) the writes took, and how long a commit's write and fsync "
        "took on average (and how many took longer than 2, 5 and 10 ms, from its "
        "`syncd_commit_seconds` histogram). While one commit is being fsync'd the next "
        "writes queue up for the next, so a slower fsync makes commits larger rather than "
        "making every write wait for a disk flush of its own.",
        "",
        *table(
            [
                "readers",
                "pace",
                "commits",
                "writes per commit",
                "mean write + fsync (ms)",
                "share of the run in fsync",
                "commits > 2 ms",
                "> 5 ms",
                "> 10 ms",
            ],
            rows,
            text_columns=2,
        ),
        "",
    ]


def _growth_section(growth: GrowthResult | None) -> list[str]:
    if growth is None:
        return []
    rows = [
        [
            f"{growth.sizes[doc]:,}",
            f"{growth.load_seconds[doc]:.1f}",
            ", ".join(f"{rate:,.0f}" for rate in growth.rates[doc]),
            f"{growth.median(doc):,.0f}",
        ]
        for doc in (SMALL, BIG)
        if doc in growth.rates
    ]
    restarts = [
        [
            "new (no `since`): snapshot" if r.client == "new" else "reconnecting (`since`): delta",
            f"{r.listening_s:.2f}",
            f"{r.synced_s:.2f}",
            f"{r.handshake_s * 1000:,.0f}",
            "full" if r.full else "delta",
            f"{r.entries:,}",
        ]
        for r in growth.restarts
    ]
    return [
        "### syncd: the cost of a write as the document grows",
        "",
        "Both documents live in one `syncd serve` process, loaded through the protocol in "
        "`ops` frames of 1,000 entries. Each repetition sets random existing keys, one per "
        "message, with one reader following; the documents alternate.",
        "",
        *table(["existing keys", "load (s)", "acked sets/s per repetition", "median"], rows),
        "",
        f"Server peak RSS with both documents: {growth.peak_rss / 2**20:,.0f} MiB.",
        "",
        f"### syncd: restart with {growth.sizes[BIG]:,} keys",
        "",
        "The server is killed (SIGKILL) right after the last repetition and started again "
        "from the same data directory, and a new client connects as soon as the port "
        "accepts. A start after an unclean stop takes a new epoch (readers may have seen "
        "writes that never reached the disk), so every client gets a snapshot then. That "
        "server is stopped cleanly and started once more for a reconnecting client, whose "
        f"`since` is {growth.since:,} (head {growth.head:,}) in the epoch the new client was "
        "given; its delta holds the entries written since, less keys written twice.",
        "",
        *table(
            [
                "client",
                "listening after (s)",
                "synced after (s)",
                "hello → synced (ms)",
                "answer",
                "entries",
            ],
            restarts,
        ),
        "",
    ]


def render_markdown(results: ServerRunResults) -> str:
    """The whole report as Markdown."""
    m, v, c = results.machine, results.versions, results.config
    lines = [
        "# syncd server benchmarks",
        "",
        f"Command: `{results.command}` — started {results.started}, took "
        f"{results.seconds / 60:.1f} min.",
        "",
        *table(
            ["machine", ""],
            [
                *machine_rows(m, results.load_after),
                ["websockets (syncd, pycrdt-websocket)", v.websockets],
                ["pycrdt-websocket", f"{v.pycrdt_websocket} (pycrdt {m.pycrdt})"],
                ["@y/websocket-server", f"{v.y_websocket_server} (yjs {v.yjs}, Node {v.node})"],
                [
                    "the disk's fsync (150-byte appends, 3 s)",
                    f"before: {results.fsync_before.describe()}; "
                    f"after: {results.fsync_after.describe()}"
                    if results.fsync_before and results.fsync_after
                    else "not measured",
                ],
            ],
            text_columns=2,
        ),
        "",
        "## Done when",
        "",
        *checks_table(done_when(results)),
        "",
        "## Results",
        "",
        f"### One writer, {c.writes:,} single-key sets as fast as acknowledgements allow",
        "",
        f"At most {c.window:,} sets unacknowledged. Latency is from the writer's send to the "
        "arrival at each reader, over every (reader, write) pair; it includes the time a set "
        "waits in the window, so it measures queueing, not the idle path (see the paced run). "
        "`ack` is from the send to the writer's acknowledgement (syncd: the `ack` frame, "
        "after the fsync; the others: the server's echo of the update). "
        "CPU is in cores (1.00: one core busy the whole run; the machine has 2): the "
        "server's process, and the writer's and readers' processes together. `load avg` is "
        "the machine's 1-minute load average as the case ended (other work skews timings).",
        "",
        *table(_FANOUT_HEADER, _fanout_rows(results, paced=False), text_columns=2),
        "",
        f"### One writer, {c.paced_writes:,} single-key sets paced at {c.paced_rate:g}/s",
        "",
        *table(_FANOUT_HEADER, _fanout_rows(results, paced=True), text_columns=2),
        "",
        "### The same paced run on a slow disk (syncd only)",
        "",
        f"syncd runs under `strace -f --seccomp-bpf -e inject=fsync,fdatasync:"
        f"delay_enter={c.slow_disk_delay_ms * 1000}:when=2+{c.slow_disk_every}`: one fsync "
        f"in {c.slow_disk_every} of each of its threads waits {c.slow_disk_delay_ms} ms more "
        "(the tracer stops the process at those calls only). Readers get a write at its "
        "merge, its writer's ack after its fsync: the broadcast latency should stay where "
        "it is above, while the ack's tail takes the disk's.",
        "",
        *table(_FANOUT_HEADER, _fanout_rows(results, paced=True, slow_disk=True), text_columns=2),
        "",
        *_subject_section(results),
        *_commit_section(results),
        *_growth_section(results.growth),
        "### Checks made by the run",
        "",
        *(
            f"- {r.case.server.name}, {r.case.readers} readers, {r.case.mode}: {r.verified}"
            + (f"; {r.missing:,} (reader, write) pairs missing" if r.missing else "")
            for r in results.fanout
        ),
        "",
    ]
    return "\n".join(lines)


def render_json(results: ServerRunResults) -> str:
    """Every number of the run as JSON."""
    data = asdict(results)
    for result, raw in zip(results.fanout, data["fanout"], strict=True):
        raw["acked_per_second"] = result.write.acked_per_second
        raw["send_rate"] = result.write.send_rate
        raw["server_cpu_ms_per_1000_acked"] = result.server_cpu_per_1000_ms
    data["subjects"] = [asdict(row) for row in subject_rows(results)]
    data["done_when"] = [asdict(check) for check in done_when(results)]
    return json.dumps(data, indent=2, ensure_ascii=False)
