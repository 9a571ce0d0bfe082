"""The Markdown report of a run, its done-when checks, and its raw numbers as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from bench.cases import CASES, PYTHON_LOADS, SYNCD_FRAMES, SYNCD_VALIDATE, CaseResult
from bench.display import Check, checks_table, table
from bench.machine import machine_rows
from bench.memory import MemoryResult
from bench.runner import RunResults
from bench.subjects import PYCRDT, PYTHON, SYNCD
from bench.timing import Stats
from bench.workload import KEY_BYTES, RAW_ENTRY_BYTES, VALUE_BYTES

__all__ = ["done_when", "render_json", "render_markdown"]

FRAME_VS_PYTHON = 5.0
FRAME_VS_PYCRDT = 2.0
CHANGES_GROWTH = 2.0
MEMORY_ABOVE_RAW = 150.0
TIMES = "\N{MULTIPLICATION SIGN}"


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(stats: Stats | None, scale: float) -> str:
    if stats is None:
        return "—"
    return f"{_num(stats.median * scale)} ±{stats.spread * 50:.0f}%"


def _ratio(other: Stats | None, syncd: Stats | None) -> str:
    if other is None or syncd is None or syncd.median == 0:
        return "—"
    return f"{other.median / syncd.median:.1f}{TIMES}"


def _of(results: RunResults, case: str) -> list[CaseResult]:
    return [r for r in results.cases if r.case == case]


def _case_section(results: RunResults, key: str) -> list[str]:
    case = CASES[key]
    rows = []
    for result in _of(results, key):
        s = result.stats
        rows.append(
            [
                f"{result.size:,}",
                _cell(s.get(SYNCD), case.scale),
                _cell(s.get(PYTHON), case.scale),
                _cell(s.get(PYCRDT), case.scale),
                _ratio(s.get(PYTHON), s.get(SYNCD)),
                _ratio(s.get(PYCRDT), s.get(SYNCD)),
            ]
        )
    count = next((r.count for r in _of(results, key) if r.count), None)
    what = case.what + (f" {count:,} entries." if count else "")
    header = ["entries", SYNCD, PYTHON, PYCRDT, f"{PYTHON} ÷ {SYNCD}", f"{PYCRDT} ÷ {SYNCD}"]
    lines = [f"### {case.title} ({case.unit})", "", what, "", *table(header, rows), ""]
    if key == "frame":
        lines += _frame_breakdown(results)
    return lines


def _frame_breakdown(results: RunResults) -> list[str]:
    scale = CASES["frame"].scale
    rows = [
        [
            f"{r.size:,}",
            _cell(r.stats.get(SYNCD_VALIDATE), scale),
            _cell(r.stats.get(SYNCD), scale),
            _cell(r.stats.get(PYTHON_LOADS), scale),
            _cell(r.stats.get(PYTHON), scale),
        ]
        for r in _of(results, "frame")
    ]
    header = ["entries", SYNCD_VALIDATE, f"{SYNCD} whole", PYTHON_LOADS, f"{PYTHON} whole"]
    return [
        "Where the time goes: syncd given the same frame with its last entry's `ts` broken "
        "(the core parses and validates all 1,000 entries, then rejects the frame), and "
        "`json.loads` of the frame alone, the floor of any pure-Python server:",
        "",
        *table(header, rows),
        "",
    ]


def _changes_section(results: RunResults) -> list[str]:
    case = CASES["changes"]
    rows = []
    for result in _of(results, "changes"):
        s = result.stats
        rows.append(
            [
                f"{result.size:,}",
                f"{result.count:,}" if result.count else "—",
                _cell(s.get(SYNCD), case.scale),
                _cell(s.get(SYNCD_FRAMES), case.scale),
                _cell(s.get(PYTHON), case.scale),
                _cell(s.get(PYCRDT), case.scale),
                _ratio(s.get(PYTHON), s.get(SYNCD)),
                _ratio(s.get(PYCRDT), s.get(SYNCD)),
            ]
        )
    header = [
        "entries",
        "changes",
        f"{SYNCD} changes_since",
        SYNCD_FRAMES,
        f"{PYTHON} (scan)",
        f"{PYCRDT} get_update",
        f"{PYTHON} ÷ {SYNCD}",
        f"{PYCRDT} ÷ {SYNCD}",
    ]
    lines = [f"### {case.title} ({case.unit})", "", case.what, "", *table(header, rows), ""]
    growth = _changes_growth(results)
    if growth is not None:
        small, large, by_subject = growth
        fixed = results.config.changes_fixed
        lines += [
            f"Cost of the last {fixed:,} changes at {large:,} entries ÷ at {small:,} entries "
            "(1.0 means independent of the document's size):",
            "",
            *table(
                ["", SYNCD, SYNCD_FRAMES, PYTHON, PYCRDT],
                [
                    [
                        "ratio",
                        *(
                            f"{by_subject[n]:.2f}" if n in by_subject else "—"
                            for n in (SYNCD, SYNCD_FRAMES, PYTHON, PYCRDT)
                        ),
                    ]
                ],
            ),
            "",
        ]
    return lines


def _changes_growth(results: RunResults) -> tuple[int, int, dict[str, float]] | None:
    fixed = results.config.changes_fixed
    at = {r.size: r for r in _of(results, "changes") if r.count == fixed}
    small, large = min(results.config.sizes), max(results.config.sizes)
    if small == large or small not in at or large not in at:
        return None
    ratios = {
        name: at[large].stats[name].median / at[small].stats[name].median
        for name in at[small].stats
        if name in at[large].stats
    }
    return small, large, ratios


def _memory_section(memory: Sequence[MemoryResult]) -> list[str]:
    if not memory:
        return []
    rows = [
        [
            m.subject,
            f"{m.size:,}",
            f"{(m.after - m.before) / 2**20:,.0f} MiB",
            f"{m.per_entry:,.0f}",
            f"{m.above_raw:,.0f}",
        ]
        for m in memory
    ]
    header = ["implementation", "live entries", "RSS growth", "bytes per entry", "above raw"]
    return [
        "### Memory per entry",
        "",
        f"Each implementation loads the entries in a fresh process ({KEY_BYTES}-byte keys, "
        f"{VALUE_BYTES}-byte string values, so {RAW_ENTRY_BYTES} raw bytes per entry); RSS "
        "(`VmRSS`) is read before and after, garbage collected. Every entry keeps its "
        "timestamp too, so no implementation can reach 0 above raw.",
        "",
        *table(header, rows),
        "",
    ]


def done_when(results: RunResults) -> list[Check]:
    """The issue's thresholds against this run."""
    checks = []
    frames = _of(results, "frame")
    for name, threshold in ((PYTHON, FRAME_VS_PYTHON), (PYCRDT, FRAME_VS_PYCRDT)):
        ratios = {r.size: r.stats[name].median / r.stats[SYNCD].median for r in frames}
        checks.append(
            Check(
                f"ops frame: syncd at least {threshold:g}{TIMES} faster than {name}",
                ", ".join(f"{ratio:.1f}{TIMES} at {size:,}" for size, ratio in ratios.items()),
                f"≥ {threshold:g}{TIMES} at every size",
                all(ratio >= threshold for ratio in ratios.values()) if ratios else None,
            )
        )
    growth = _changes_growth(results)
    fixed = results.config.changes_fixed
    checks.append(
        Check(
            f"changes_since for the last {fixed:,} changes: no full scan",
            f"{growth[2][SYNCD]:.2f} ({growth[1]:,} ÷ {growth[0]:,} entries)"
            if growth
            else "not measured",
            "≤ 2 (1M ÷ 10k)",
            growth[2][SYNCD] <= CHANGES_GROWTH if growth else None,
        )
    )
    syncd_memory = [m for m in results.memory if m.subject == SYNCD]
    checks.append(
        Check(
            "memory per live entry above the raw key and value bytes",
            f"{syncd_memory[0].above_raw:.0f} B at {syncd_memory[0].size:,}"
            if syncd_memory
            else "not measured",
            f"≤ {MEMORY_ABOVE_RAW:.0f} B at 1,000,000",
            syncd_memory[0].above_raw <= MEMORY_ABOVE_RAW if syncd_memory else None,
        )
    )
    return checks


def render_markdown(results: RunResults) -> str:
    """The whole report as Markdown."""
    m, c = results.machine, results.config
    lines = [
        "# syncd benchmarks",
        "",
        f"Command: `{results.command}` — started {results.started}, took "
        f"{results.seconds / 60:.1f} min.",
        "",
        *table(
            ["machine", ""],
            [
                *machine_rows(m, results.load_after),
                ["rustc", m.rustc],
                ["pycrdt", m.pycrdt],
            ],
            text_columns=2,
        ),
        "",
        "## Done when",
        "",
        *checks_table(done_when(results)),
        "",
        "## Method",
        "",
        f"- Sizes: {', '.join(f'{s:,}' for s in c.sizes)} entries, built with the same "
        "writes in every implementation before the cases run.",
        f"- Each cell is the median of {c.repeats} timed repetitions (after {c.warmup} "
        "untimed ones), ± half the interquartile range as a share of the median. In every "
        "repetition the implementations run one after another, in a rotating order, on "
        "the same fresh writes (new timestamps); the garbage collector is off while a "
        "call is timed. Each call's result is checked after the clock stops.",
        "- Ratios are the baseline's median ÷ syncd's: above 1.0, syncd is faster.",
        f"- Single set and lookup: {c.single_ops:,} calls per repetition, per-call time.",
        f"- The frame case adds {round(c.frame_entries * c.frame_new_share):,} new keys per "
        "repetition, so documents end a little larger than their nominal size.",
        "",
        "## Results",
        "",
    ]
    for key in ("set", "get", "batch", "frame"):
        lines += _case_section(results, key)
    lines += _changes_section(results)
    lines += _memory_section(results.memory)
    lines += ["## Checks", "", *(f"- {check}" for check in results.checks), ""]
    return "\n".join(lines)


def render_json(results: RunResults) -> str:
    """Every sample of the run, with its medians, as JSON."""
    data = asdict(results)
    for case, raw in zip(results.cases, data["cases"], strict=True):
        raw["medians"] = {name: stats.median for name, stats in case.stats.items()}
    for mem, raw in zip(results.memory, data["memory"], strict=True):
        raw["per_entry"] = mem.per_entry
        raw["above_raw"] = mem.above_raw
    data["done_when"] = [asdict(check) for check in done_when(results)]
    return json.dumps(data, indent=2, ensure_ascii=False)
