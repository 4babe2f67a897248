# One entry point for humans and CI. `make install` creates .venv; every other target uses it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test outages chaos lint typecheck bench bench-quick bench-storage bench-peers bench-celery bench-lost bench-dashboard bench-scale bench-logging bench-tracing bench-metrics bench-signals bench-flow check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/pytest -q

# The dashboard's browser tests (headless Chromium), saving their screenshots into docs/img
# for docs/dashboard.md (look at them before committing).
.PHONY: screenshots
screenshots: install
	PYWORKFLOW_TEST_SCREENSHOTS=$(CURDIR)/docs/img $(BIN)/pytest tests/server/test_browser.py -q

# Long server-outage tests (100 runs; 2 s, 10 s and frozen outages of private PostgreSQL,
# Redis and MariaDB instances, ~2-3 min). `make test` runs one short outage per server.
outages: install
	$(BIN)/pytest tests/integration/test_outages.py -q -m outages

# Chaos run on the Celery runtime (not CI): 1,000 runs on a private PostgreSQL + 2 workers,
# random worker SIGKILLs, two PostgreSQL restarts; prints completed / lost / duplicate /
# early wake-ups, exits 1 on any. CHAOS_RUNS=100 for a quick try. ~7 min at 1,000.
chaos: install
	$(BIN)/python -m tests.chaos

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The side-by-side suite (ours default/strict vs pyworkflow-engine 0.4.0 and DBOS 3.4.0 in
# their own venvs), then S5 (Celery). bench-quick: ours only, one process, ~1 min.
bench: install
	$(BIN)/python benchmarks/suite.py

bench-quick: install
	$(BIN)/python benchmarks/run.py

bench-storage: install
	$(BIN)/python benchmarks/storage.py

bench-peers: install
	$(BIN)/python benchmarks/suite.py --no-s5

bench-celery: install
	$(BIN)/python benchmarks/celery_bench.py

# How long until a lost broker message's run is sent again (Redis and RabbitMQ, ~4 min).
bench-lost: install
	$(BIN)/python benchmarks/lost_messages.py

# GET /api/runs over 100,000 runs on the local PostgreSQL (private schema, dropped after),
# served by `pyworkflow dashboard`; p50/p95 per filter. Not run in CI (~2 min).
# What lifecycle logging costs: S1 at WARNING beside INFO lines as JSON to a file.
bench-logging: install
	$(BIN)/python benchmarks/logging_bench.py

# What tracing costs: S1 without OpenTelemetry, with the API alone, with an SDK provider.
bench-tracing: install
	$(BIN)/python benchmarks/tracing_bench.py

# What Prometheus metrics cost: S1 without prometheus_client, with metrics off, and on.
bench-metrics: install
	$(BIN)/python benchmarks/metrics_bench.py

# Signals side by side with DBOS (send/recv): burst throughput and one-message latency.
bench-signals: install
	$(BIN)/python benchmarks/signals_bench.py

bench-flow: install
	$(BIN)/python benchmarks/flow_bench.py

bench-dashboard: install
	$(BIN)/python benchmarks/dashboard_bench.py

# 100,000 runs sleeping on the local PostgreSQL (private schema, dropped after), all due at
# once, woken by 2 Celery workers x concurrency 2 and 2 `pyworkflow scheduler` processes
# (Redis broker database 15, flushed). Not run in CI (~35 min on 2 cores; pass
# ARGS="--runs 20000" for a shorter run, ARGS="--claim-only" for the claim rate alone).
bench-scale: install
	$(BIN)/python benchmarks/scale_bench.py $(ARGS)

check: lint typecheck test

clean:
	rm -rf $(VENV) .pyworkflow .pytest_cache .mypy_cache .ruff_cache
