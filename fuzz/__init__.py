"""Coverage-guided fuzzing of syncd (``make fuzz``).

The Python harnesses run under atheris (``pip install -e '.[fuzz]'``), each as
``python -m fuzz.NAME [CORPUS_DIR] -max_total_time=SECONDS``:

- :mod:`fuzz.server_session` — client frames through ``ServerSession.receive``
  and, for ``ops``, ``Document.apply_frame`` and the log that makes it durable;
- :mod:`fuzz.replica` — server frames through a client ``Replica``;
- :mod:`fuzz.store` — arbitrary data files through ``DocumentStore.load``.

The Rust core has its own cargo-fuzz targets in ``rust_crdt/fuzz``.
``python -m fuzz`` (:mod:`fuzz.__main__`) seeds every corpus
(:mod:`fuzz.seeds`), runs every target for a fixed time and sums them up.
"""
