# Quick start: `make run` serves on http://127.0.0.1:8888 (SQLite); `make test` runs every test.
# Both create .venv on first use and reinstall only when a lock file changes. They install from
# requirements.lock / requirements-dev.lock (every transitive dependency pinned, with hashes);
# after changing requirements.txt or requirements-dev.txt, `make lock` re-compiles those.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench bench-smoke clean lock

$(VENV)/.runtime: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

# pip-tools (pinned in requirements-dev.txt) compiles the direct pins into the locks. It keeps
# the other pins it already has; `make lock LOCK_FLAGS=--upgrade` moves them to the newest.
# The dev lock is constrained by the runtime one, so both hold the same runtime versions.
LOCK_FLAGS ?=
COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS)

lock: $(VENV)/.dev
	$(COMPILE) -o requirements.lock requirements.txt
	$(COMPILE) -c requirements.lock -o requirements-dev.lock requirements.txt requirements-dev.txt

# Test-only npm packages (axe-core, puppeteer-core), exactly as package-lock.json pins them.
# No install scripts run: puppeteer-core drives the machine's own firefox-esr, it downloads none.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

run: $(VENV)/.runtime
	$(PY) run.py

test: $(VENV)/.dev node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	node --test tests/js/
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every figure of the targets next to its peer or floor, measured in the same run (about 10
# minutes); installs the npm peers (socket.io, Bun) into bench/peers/node_modules on first use.
bench: $(VENV)/.dev
	$(PY) bench/bench_all.py

# The same benchmarks with tiny sizes (under 2 minutes): checks they all run, judges nothing.
bench-smoke: $(VENV)/.dev
	BENCH_SIZE=tiny $(PY) bench/bench_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
