"""``python -m bench.server``: run the server benchmarks, print the Markdown report and save it.

The report goes to stdout and to ``bench/results/server-latest.md`` (every number in
``server-latest.json``); progress bars and log lines go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.display import save_report, start_run
from bench.server.config import FULL, QUICK
from bench.server.report import render_json, render_markdown
from bench.server.runner import run

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run of every case")
    parser.add_argument("--no-growth", action="store_true", help="skip the 1k/1M and restart cases")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run syncd under cProfile, writing one .prof file per case into this folder",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to save the report")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server benchmarks as the command line asks; the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    args = _parse(arguments)
    console, command = start_run(
        verbose=args.verbose,
        module="bench.server",
        target="bench-server",
        arguments=arguments,
        from_shell=argv is None,
    )
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    results = run(
        QUICK if args.quick else FULL,
        command,
        console,
        growth=not args.no_growth,
        profile=args.profile,
    )
    markdown = render_markdown(results)
    report = save_report(args.output, "server-latest", markdown, render_json(results))
    print(markdown)
    logging.getLogger(__name__).info("report saved to %s", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
