# syncd — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Marks a venv whose install matches the current sources.
INSTALLED := $(VENV)/.installed
RUST_SOURCES := $(wildcard rust_crdt/src/*.rs rust_crdt/src/*/*.rs) rust_crdt/Cargo.toml rust_crdt/Cargo.lock
WEB := web-client
# Marks node_modules installed from the current package-lock.json.
WEB_DEPS := $(WEB)/node_modules/.installed
# pyproject.toml: the page's footer shows the version written there.
WEB_SOURCES := $(shell find $(WEB)/src $(WEB)/public -type f 2>/dev/null) $(WEB)/index.html \
	$(WEB)/vite.config.ts $(wildcard $(WEB)/tsconfig*.json) $(WEB)/package.json pyproject.toml
# The web client is built into the Python package (package data, git-ignored).
WEB_BUILT := syncd/web/index.html
# The end-to-end tests drive Debian's Chromium; `make test-web` installs it when missing.
CHROMIUM := /usr/bin/chromium
# The crash-consistency tests kill the server at chosen syscalls with strace fault injection.
STRACE := /usr/bin/strace
# The cluster tests start their own redis-server (Debian's) on a free 127.0.0.1 port.
REDIS := /usr/bin/redis-server
# The terminal tests (and the installed wheel's) run `syncd tui` under tmux.
TMUX := /usr/bin/tmux

.DEFAULT_GOAL := help
.PHONY: help build-lib run-server run-client web-deps build-web dist test test-rust test-python test-web bench bench-server bench-history bench-memory bench-connections bench-cluster soak soak-cluster fuzz lint

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(INSTALLED): $(VENV)/bin/python pyproject.toml $(RUST_SOURCES)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

build-lib: $(INSTALLED) ## Build the Rust CRDT core and install syncd into .venv

run-server: $(INSTALLED) $(WEB_BUILT) ## Build everything and start the server on 127.0.0.1:8765 (data: ./syncd-data)
	$(VENV)/bin/syncd serve

run-client: $(WEB_DEPS) ## Web client dev server on 127.0.0.1:5173, proxying /ws to the syncd of `make run-server`
	cd $(WEB) && npm run dev

web-deps: $(WEB_DEPS) ## Install the web client's npm packages (npm ci)

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

build-web: $(WEB_BUILT) ## Build the web client into syncd/web (served by syncd at /, shipped in the wheel)

$(WEB_BUILT): $(WEB_DEPS) $(WEB_SOURCES)
	cd $(WEB) && npm run build
	touch $@

dist: $(INSTALLED) $(WEB_BUILT) ## Build the wheel and the sdist into dist/ (web client included; install: pipx install dist/syncd-*.whl)
	rm -rf dist
	$(VENV)/bin/maturin sdist --out dist
	$(VENV)/bin/maturin build --release --out dist

# Debian's packages the tests need, installed when missing: /usr/bin/NAME is package NAME's.
$(CHROMIUM) $(STRACE) $(REDIS) $(TMUX): /usr/bin/%:
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get update
	DEBIAN_FRONTEND=noninteractive $$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get install -y $*

test: test-rust test-python test-web ## Build, then run every test (cargo test, pytest, vitest, Chromium end-to-end)

test-rust: ## Run the Rust core's tests (unit, conformance vectors, property laws)
	cd rust_crdt && cargo test --locked

test-python: $(INSTALLED) $(WEB_BUILT) $(STRACE) $(REDIS) $(TMUX) ## Run the Python tests (one of them builds and installs the wheel)
	$(PY) -m pytest

test-web: $(INSTALLED) $(WEB_BUILT) $(CHROMIUM) ## Run the web client's tests: vitest (vectors, HLC, replica) and end-to-end in headless Chromium
	cd $(WEB) && npm test
	cd $(WEB) && CHROMIUM_PATH=$(CHROMIUM) npm run test:e2e

bench: $(INSTALLED) ## Run the CRDT core benchmarks (results: docs/benchmarks.md)
	$(PY) -m bench

bench-server: $(INSTALLED) ## Benchmark syncd serve against pycrdt-websocket and y-websocket (~5 min)
	npm ci --prefix bench/yjs --no-audit --no-fund
	$(PY) -m bench.server

bench-history: $(INSTALLED) ## The history: one key's versions among 1M keys x 10, acked writes/s with history on vs off, disk use
	$(PY) -m bench.server.history

bench-memory: $(INSTALLED) ## A million keys in one server: peak RSS, acked writes/s, restart after kill -9 (BASELINE=VENV compares a build)
	$(PY) -m bench.server.memory $(if $(BASELINE),--baseline $(BASELINE))

bench-connections: $(INSTALLED) ## 10,000 connections on one document: time until all are synced, broadcast p99, server RSS
	$(PY) -m bench.server.connections

bench-cluster: $(INSTALLED) $(REDIS) ## One node against three on Redis: latency, acked writes/s, failover, convergence, Redis memory (~5 min)
	$(PY) -m bench.cluster

# Minutes of chaos: random writes, cuts, partitions, offline client restarts, kill -9 of the server.
SOAK_MINUTES ?= 5

soak: $(INSTALLED) ## Chaos soak: clients and a kill -9'd server must converge (SOAK_MINUTES=5, SYNCD_CHAOS_SEED=N)
	$(PY) tests/chaos.py --minutes $(SOAK_MINUTES)

soak-cluster: $(INSTALLED) $(REDIS) ## Cluster chaos soak: 3 nodes + Redis killed, paused, cut, wiped, trimmed (SOAK_MINUTES=5, SYNCD_CHAOS_SEED=N)
	$(PY) tests/cluster_chaos.py --minutes $(SOAK_MINUTES)

# Seconds each fuzz target runs for (three cargo-fuzz targets, three atheris harnesses).
FUZZ_SECONDS ?= 60

fuzz: $(INSTALLED) ## Fuzz the Rust core (cargo fuzz) and the Python protocol and store (atheris), FUZZ_SECONDS=60 each
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
	$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install --quiet $$($(PY) -c \
		'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["fuzz"])')
	$(PY) -m fuzz --seconds $(FUZZ_SECONDS)

lint: $(INSTALLED) $(WEB_DEPS) ## ruff, mypy, stubtest, cargo clippy, cargo fmt --check, ESLint
	cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest syncd._crdt
	cd rust_crdt && cargo clippy --locked --all-targets --all-features -- -D warnings
	cd rust_crdt && cargo fmt --check
	cd rust_crdt/fuzz && cargo fmt --check
	cd $(WEB) && npm run lint
