# The front door. `make run` serves the demo on SQLite with nothing configured;
# `make test` runs the whole suite against the local PostgreSQL and Redis.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run worker test lint format services migrate bench faults clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

$(VENV)/.bench-installed: requirements.txt bench/requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $(VENV)/.runtime-installed $@

# The server and, beside it, one background worker (webhook deliveries, scheduled jobs),
# stopped with it: nothing else to start. DJANGO_RUNSERVER_HOST: unless DJANGO_ALLOWED_HOSTS
# is set, the settings serve what HOST reaches (with 0.0.0.0, the machine's own addresses).
run: $(VENV)/.runtime-installed
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py seed_demo --base-url http://$(HOST):$(PORT)
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py run_worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} DJANGO_RUNSERVER_HOST=$(HOST) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# The background worker in the foreground: runs queued tasks (merchant webhook deliveries)
# and the schedule (expiry sweeps, key purge, reconciliation). Run as many as you like.
worker: $(VENV)/.runtime-installed
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py run_worker

services:
	@bash scripts/start-services.sh

test: $(VENV)/.dev-installed services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The load benchmark (docs/PERFORMANCE.md): starts its own gunicorn on a fresh PostgreSQL
# database. `make bench BENCH_ARGS=--quick` for a small run; `--help` lists the options.
bench: $(VENV)/.bench-installed services
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Fault drills (docs/PERFORMANCE.md): a purchase storm while a gunicorn worker is SIGKILLed
# and PostgreSQL restarts. It restarts the machine's PostgreSQL, so it is not in `make test`.
faults: $(VENV)/.bench-installed services
	$(BIN)/python -m bench.faults $(FAULTS_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache staticfiles db.sqlite3*
