"""``python -m bench``: run the benchmarks, print the Markdown report and save it.

The report goes to stdout and to ``bench/results/latest.md`` (with the raw samples in
``latest.json``); progress bars and log lines go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.config import FULL_SIZES, QUICK_SIZES, Config
from bench.display import save_report, start_run
from bench.report import render_json, render_markdown
from bench.runner import run

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k and 100k entries only")
    parser.add_argument("--repeats", type=int, default=Config.repeats, help="timed repetitions")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to save the report")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks as the command line asks; the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    console, command = start_run(
        verbose=args.verbose,
        module="bench",
        target="bench",
        arguments=sys.argv[1:] if argv is None else argv,
        from_shell=argv is None,
    )
    config = Config(
        sizes=QUICK_SIZES if args.quick else FULL_SIZES,
        repeats=args.repeats,
        memory=not args.no_memory,
    )
    results = run(config, command, console)
    markdown = render_markdown(results)
    report = save_report(args.output, "latest", markdown, render_json(results))
    print(markdown)
    logging.getLogger(__name__).info("report saved to %s", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
