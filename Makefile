# Quick start: `make run` serves on http://127.0.0.1:8888 (SQLite); `make test` runs every test.
# Both create .venv on first use and reinstall only when a requirements file changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

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
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.dev
	$(PY) bench/bench_ranking.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
