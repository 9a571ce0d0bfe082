"""Run every fuzz target for a fixed time and sum up what each did (``make fuzz``).

``python -m fuzz [--seconds N] [TARGET ...]`` seeds the corpora, builds the
cargo-fuzz targets (with AddressSanitizer, or none where its runtime is
missing), runs each target in turn and prints, per target, the executions,
the coverage (libFuzzer's ``cov`` and ``ft``: edges and features; for the
atheris harnesses, Python's only, the Rust core is not instrumented there),
the corpus size and the crashes found. Each run's output goes to
``fuzz/logs/TARGET.log``; a crashing input is written under
``rust_crdt/fuzz/artifacts/TARGET/`` or ``fuzz/artifacts/TARGET/``. Exits 1 if
any target crashed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Final

from fuzz.seeds import ROOT, write_seeds

RUST: Final = ("frame", "apply", "persist")
PYTHON: Final = ("server_session", "replica", "store")
ALL: Final = RUST + PYTHON
HEADER: Final = "target             time  executions    cov      ft corpus   crashes"
CARGO_FUZZ: Final = ROOT / "rust_crdt" / "fuzz"
LOGS: Final = ROOT / "fuzz" / "logs"
DICTIONARY: Final = CARGO_FUZZ / "json.dict"
# libFuzzer's status lines: "#1234\tDONE   cov: 56 ft: 78 corp: 9/10b ..."
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_FAILURE = re.compile(
    r"^(thread '.*panicked at .*|.*ERROR: (?:AddressSanitizer|libFuzzer): .*|"
    r"=== Uncaught Python exception: ===\n.*)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Report:
    """What one run of a target did, read from its output."""

    target: str
    seconds: int
    executions: int
    coverage: int
    features: int
    corpus: int
    crashes: list[str]
    failure: str

    @classmethod
    def read(cls, target: str, seconds: int, output: str, returncode: int) -> Report:
        """The report of a run from its libFuzzer output (the last status line wins)."""
        status = _STATUS.findall(output)
        executions, coverage, features, corpus = map(int, status[-1]) if status else (0,) * 4
        found = _FAILURE.search(output)
        failure = found.group(0).replace("\n", " ") if found else ""
        if not failure and (returncode != 0 or not status):
            said = [line for line in output.splitlines() if "ERROR" in line or "Error" in line]
            failure = f"exited with status {returncode}: {(said or ['no error printed'])[0]}"
        return cls(
            target,
            seconds,
            executions,
            coverage,
            features,
            corpus,
            _ARTIFACT.findall(output),
            failure,
        )

    def line(self) -> str:
        """One row of the summary."""
        found = f"{len(self.crashes)} crash(es): {', '.join(self.crashes)}" if self.crashes else "0"
        return (
            f"{self.target:<15} {self.seconds:>5} s {self.executions:>11,} {self.coverage:>6} "
            f"{self.features:>7} {self.corpus:>6}   {found}"
        )


def build_rust() -> str:
    """Build the cargo-fuzz targets; returns the sanitizer they were built with."""
    subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--no-deps"],
        cwd=CARGO_FUZZ,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for sanitizer in ("address", "none"):
        built = subprocess.run(_cargo_fuzz("build", "-s", sanitizer), cwd=CARGO_FUZZ, env=_env())
        if built.returncode == 0:
            return sanitizer
        print(f"cargo fuzz build -s {sanitizer} failed; trying without a sanitizer")
    raise SystemExit("cargo fuzz build failed")


def _cargo_fuzz(*args: str) -> list[str]:
    return ["cargo", "fuzz", *args]


def _env() -> dict[str, str]:
    # cargo fuzz passes -Z flags, which a stable toolchain takes only with this set.
    return {**os.environ, "RUSTC_BOOTSTRAP": "1"}


def run(target: str, seconds: int, sanitizer: str) -> Report:
    """Fuzz one target for ``seconds``; its output goes to ``fuzz/logs/TARGET.log``."""
    options = [f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10"]
    if target != "apply":  # the one structured target: its input is no text
        options.append(f"-dict={DICTIONARY}")
    if target in RUST:
        corpus = CARGO_FUZZ / "corpus" / target
        command = _cargo_fuzz("run", "-s", sanitizer, target, str(corpus), "--", *options)
        cwd, env = CARGO_FUZZ, _env()
    else:
        artifacts = ROOT / "fuzz" / "artifacts" / target
        artifacts.mkdir(parents=True, exist_ok=True)
        corpus = ROOT / "fuzz" / "corpus" / target
        command = [sys.executable, "-m", f"fuzz.{target}", str(corpus), *options]
        command.append(f"-artifact_prefix={artifacts}/")
        cwd, env = ROOT, dict(os.environ)
    print(f"fuzzing {target} for {seconds} s ...", flush=True)
    corpus.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    (LOGS / f"{target}.log").write_text(output, encoding="utf-8")
    return Report.read(target, seconds, output, done.returncode)


def main() -> None:
    """Seed, build, run every target (or those named), print the summary."""
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(ALL)}")
    args = parser.parse_args()
    targets: list[str] = args.targets or list(ALL)
    if unknown := set(targets) - set(ALL):
        parser.error(f"no such target: {', '.join(sorted(unknown))}")
    print(f"seeded the corpora: {write_seeds()} new seeds")
    sanitizer = build_rust() if any(t in RUST for t in targets) else "none"
    reports = [run(target, args.seconds, sanitizer) for target in targets]
    print(f"\nfuzzing summary (Rust sanitizer: {sanitizer}; logs in {LOGS.relative_to(ROOT)}/)")
    print(HEADER)
    for report in reports:
        print(report.line())
        if report.failure:
            print(f"{'':<15} {report.failure[:200]}")
    if any(report.crashes or report.failure for report in reports):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
