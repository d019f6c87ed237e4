# Entry points: make demo, make test, make test-fast, make lint, make bench, make install.
#   make test       every test, end-to-end ones included (real daemons, Prometheus,
#                   Alertmanager, PostgreSQL, Exim), in parallel: what CI runs
#   make test-fast  the in-process tier only (tests not marked e2e start no process)
#   make lint       ruff check, ruff format --check, mypy --strict: CI runs it first
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers: one more than the cores, since end-to-end tests mostly wait on
# the processes they start. --dist loadfile: a test file runs on one worker, so its module
# fixtures (a PostgreSQL cluster, the demo stack, a built wheel) start once, and tests that
# build on the ones before them in the file keep their order. test-fast has no such
# fixtures and spreads single tests (its property tests are the long ones).
JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

.PHONY: install test test-fast lint bench demo demo-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard brainycp/queue/*.c brainycp/queue/*.h)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "brainycp-mail needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || \
	  { echo "python3 -m venv failed: on Debian/Ubuntu run: sudo apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -c 'from brainycp.queue import c_readers as c; print("queue parser C readers:", ", ".join(c()) or "not built (install gcc and python3-dev, then make clean install, to build them)")'
	@touch $@

test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile

test-fast: install
	$(PY) -m pytest -q -n $(JOBS) -m "not e2e"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy brainycp exporter remediator

bench: install
	$(PY) bench/bench_readers.py
	$(PY) bench/bench_outbreak.py
	$(PY) bench/bench_queue_parse.py
	$(PY) bench/bench_exporter.py
	$(PY) bench/bench_remediator.py
	$(PY) bench/bench_remediator_stall.py
	$(PY) bench/bench_metrics_gzip.py

demo: install
	$(PY) -m tests.demo

# Prometheus and Alertmanager for the full-loop demo (Debian/Ubuntu).
demo-deps:
	apt-get update && apt-get install -y prometheus prometheus-alertmanager

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
