"""Benchmarks of ``syncd serve`` against pycrdt-websocket and y-websocket's Node.js server.

Run from the repository root with ``make bench-server`` (or ``python -m bench.server``;
``--quick`` for a small smoke run). Every server runs as a real process on 127.0.0.1 and
gets the same workload in one run: one writer doing single-key sets (as fast as
acknowledgements allow, and paced at 500/s) with 1, 10 and 50 readers spread over
several processes. Then syncd alone: the cost of a write into a document of 1k versus
1M keys, and a restart after ``kill -9`` with the 1M-key document on disk. The report
is printed as Markdown and written to ``bench/results/server-latest.md``.

Modules, one job each:

- ``config``: what to run (writes, pace, reader counts, window, document sizes);
- ``wire``: a minimal WebSocket client on a bare asyncio protocol, cheap enough to
  share two cores with the server it measures;
- ``clients``: what each server is told: syncd's protocol or Yjs sync (handshakes, the
  writer's messages, what counts as an acknowledgement);
- ``disk``: the disk's own fsync latency, measured before and after the run;
- ``servers``: starting and stopping the three servers, their peak RSS;
- ``pycrdt_server``: pycrdt-websocket's server on the ``websockets`` library;
- ``readers``: the reader processes, which record each write's latency;
- ``fanout``: one writer, N readers, one server: a case;
- ``growth``: syncd's write cost at 1k and 1M keys, and its restart after ``kill -9``;
- ``report``: the Markdown report and the done-when checks;
- ``runner``: runs it all with progress bars;
- ``crowd`` and ``connections``: ``make bench-connections``, 10,000 clients on one
  document (``python -m bench.server.connections``), a benchmark of its own.

The Node.js side lives in ``bench/yjs`` (``npm ci --prefix bench/yjs``).
"""

__all__: list[str] = []
