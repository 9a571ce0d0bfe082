"""Benchmarks of syncd's CRDT core against pycrdt (Yrs) and a pure-Python dict.

Run from the repository root with ``make bench`` (or ``python -m bench``; ``--quick`` for
10k and 100k entries only). Everything is measured side by side in one run: each
repetition times the three implementations in turn on the same writes, and the report
gives medians and the ratios against the baselines. The report is printed as Markdown
and written to ``bench/results/latest.md`` (raw samples in ``latest.json``).

Modules, one job each:

- ``config``: what to run (sizes, repeats, batch and frame sizes);
- ``workload``: keys, values and timestamps, the same for every implementation;
- ``baseline``: the merge rule and the ``ops`` frame in pure Python, on a ``dict``;
- ``crosscheck``: replays random merges through the baseline and ``tests/model.py``;
- ``subjects``: the three implementations behind one interface;
- ``timing``: interleaved repetitions and their statistics;
- ``cases``: the benchmark cases (single set and lookup, batch merge, ops frame,
  ``changes_since``);
- ``memory``: resident memory per entry, each implementation in a fresh process;
- ``machine``: a description of the machine and the versions under test;
- ``report``: the Markdown report and the done-when checks;
- ``runner``: runs it all with progress bars.
"""

__all__: list[str] = []
