# syncd — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Marks a venv whose install matches the current sources.
INSTALLED := $(VENV)/.installed
RUST_SOURCES := $(wildcard rust_crdt/src/*.rs) rust_crdt/Cargo.toml rust_crdt/Cargo.lock

.DEFAULT_GOAL := help
.PHONY: help build-lib run-server run-client test test-rust test-python bench lint

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(INSTALLED): $(VENV)/bin/python pyproject.toml $(RUST_SOURCES)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

build-lib: $(INSTALLED) ## Build the Rust CRDT core and install syncd into .venv

run-server: $(INSTALLED) ## Build everything and start the server on 127.0.0.1:8765 (data: ./syncd-data)
	$(VENV)/bin/syncd serve

run-client: ## Run the web client's dev server (lands with the web client)
	@echo "The web client is not built yet: it lands with issue #6." >&2; exit 2

test: test-rust test-python ## Build, then run every test (cargo test, pytest)

test-rust: ## Run the Rust core's tests (unit, conformance vectors, property laws)
	cd rust_crdt && cargo test --locked

test-python: $(INSTALLED) ## Run the Python tests
	$(PY) -m pytest

bench: $(INSTALLED) ## Run the benchmarks (results: docs/benchmarks.md)
	$(PY) -m bench

lint: $(INSTALLED) ## ruff, mypy, stubtest, cargo clippy, cargo fmt --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest syncd._crdt
	cd rust_crdt && cargo clippy --locked --all-targets --all-features -- -D warnings
	cd rust_crdt && cargo fmt --check
