# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools

# Prefect's settings for this checkout live in pyproject.toml ([tool.prefect]), where Prefect reads
# them with or without make. PREFECT_HOME is the same folder made absolute, for processes that do
# not start in the repository root (the worker's flow runs). Keras and TensorFlow state stays in the
# work tree and quiet (the command lines quiet TensorFlow themselves too).
export PREFECT_HOME ?= $(CURDIR)/.prefect
export KERAS_HOME ?= $(CURDIR)/.keras
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: help demo test test-fast lint format env clean serve deploy stop bench mutate

# `make serve`: a Prefect server on 127.0.0.1 and a process worker, in the background; pids and logs
# under $(SERVE_DIR)/. The server keeps its own database ($(SERVE_DIR)/server/) so `make demo`'s
# temporary API never shares it. Point the CLI at it with: export PREFECT_API_URL=$(LOCAL_API_URL)
PREFECT_PORT ?= 4200
SERVE_DIR ?= .prefect
LOCAL_API_URL := http://127.0.0.1:$(PREFECT_PORT)/api
POOL ?= updown-process
PREFECT := $(CURDIR)/$(VENV)/bin/prefect
# Concurrency-slot leases on disk ($(SERVE_DIR)/server/concurrency_leases/) instead of in the server's
# memory: a restart then neither leaks a deployment's slot nor cancels a run whose lease it forgot.
LEASE_STORAGE := prefect.server.concurrency.lease_storage.filesystem
# Logs are appended to; one over this size is moved to <log>.1 (the one before is dropped) at start.
LOG_ROTATE_BYTES ?= 10000000

help:
	@echo "make demo   run the nightly retrain flow on the built-in (synthetic) sample market"
	@echo "make test   run the test suite"
	@echo "make lint   ruff check + format check"
	@echo "make bench  the benchmarks (ratios measured side by side)"
	@echo "make mutate mutation testing of the guarantee modules (not CI; MODULES=\"gate audit\" for some)"
	@echo "make serve  start a local Prefect server (127.0.0.1:$(PREFECT_PORT)) and a worker in the background"
	@echo "make deploy create the work pool, deploy prefect.yaml (nightly, manual, backfill) and apply operations.yaml"
	@echo "make stop   stop the worker and the server started by make serve"

# uv: the one on PATH, else `python3 -m uv`, else installed with pip into .tools/.
UV = $(shell command -v uv 2>/dev/null || ($(PYTHON) -m uv --version >/dev/null 2>&1 && echo "$(PYTHON) -m uv") || echo "$(TOOLS)/bin/uv")

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet 'uv>=0.5'

$(VENV)/.synced: pyproject.toml uv.lock
	@if [ "$(UV)" = "$(TOOLS)/bin/uv" ]; then $(MAKE) --no-print-directory $(TOOLS)/bin/uv; fi
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

# `make demo` exits 0 when the flow does; when the flow exits 1 (rejected or failed) or 2 (bad usage),
# make prints "make: *** [...] Error N" with the flow's status and exits 2 itself (make's rule).
demo: $(VENV)/.synced
	$(PY) -m flows.retrain $(ARGS)

test: $(VENV)/.synced
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.synced
	$(PY) -m bench $(ARGS)

# `make mutate`: mutmut over the functions that carry guarantees (bench/mutate.py lists them), each
# mutant run against the fast tests that cover it, one at a time and niced (2 shared cores); prints
# the score per module and every survivor not listed in bench/mutation_equivalents.py, and exits 1
# if there is one. Not part of CI. Scores and times: bench/MUTATION.md.
MODULES ?=
mutate: $(VENV)/.synced
	nice -n 10 $(PY) -m bench.mutate $(MODULES) $(ARGS)

test-fast: $(VENV)/.synced
	$(PY) -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .pipeline .prefect .keras .pytest_cache

serve: $(VENV)/.synced
	@mkdir -p $(SERVE_DIR)/server
	@for log in $(SERVE_DIR)/server.log $(SERVE_DIR)/worker.log; do \
		if [ -f $$log ] && [ $$(wc -c < $$log) -gt $(LOG_ROTATE_BYTES) ]; then mv -f $$log $$log.1; fi; \
	done
	@if [ -f $(SERVE_DIR)/server.pid ] && kill -0 $$(cat $(SERVE_DIR)/server.pid) 2>/dev/null; then \
		echo "server already running (pid $$(cat $(SERVE_DIR)/server.pid))"; \
	else \
		echo "--- $$(date -u +%FT%TZ) make serve" >> $(SERVE_DIR)/server.log; \
		PREFECT_HOME=$(abspath $(SERVE_DIR))/server PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=$(LEASE_STORAGE) \
			setsid $(PREFECT) server start --host 127.0.0.1 --port $(PREFECT_PORT) \
			>> $(SERVE_DIR)/server.log 2>&1 < /dev/null & echo $$! > $(SERVE_DIR)/server.pid; \
	fi
	@for _ in $$(seq 120); do \
		$(PY) -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)' $(LOCAL_API_URL)/health \
			2>/dev/null && exit 0; \
		sleep 1; \
	done; echo "server not healthy after 120 s: see $(SERVE_DIR)/server.log"; exit 1
	@echo "server: $(LOCAL_API_URL) (log $(SERVE_DIR)/server.log)"
	@if [ -f $(SERVE_DIR)/worker.pid ] && kill -0 $$(cat $(SERVE_DIR)/worker.pid) 2>/dev/null; then \
		echo "worker already running (pid $$(cat $(SERVE_DIR)/worker.pid))"; \
	else \
		echo "--- $$(date -u +%FT%TZ) make serve" >> $(SERVE_DIR)/worker.log; \
		PREFECT_API_URL=$(LOCAL_API_URL) setsid env --default-signal=INT $(PREFECT) worker start \
			--pool $(POOL) --type process >> $(SERVE_DIR)/worker.log 2>&1 < /dev/null & echo $$! > $(SERVE_DIR)/worker.pid; \
	fi
	@echo "worker: pool $(POOL) (log $(SERVE_DIR)/worker.log); next: make deploy"

# The work pool, the deployments of prefect.yaml, and operations.yaml: the zombie-run automation and
# the registry-wide publish lock.
deploy: $(VENV)/.synced
	PREFECT_API_URL=$${PREFECT_API_URL:-$(LOCAL_API_URL)} $(PREFECT) work-pool create $(POOL) --type process --overwrite
	PREFECT_API_URL=$${PREFECT_API_URL:-$(LOCAL_API_URL)} $(PREFECT) deploy --all --no-prompt
	PREFECT_API_URL=$${PREFECT_API_URL:-$(LOCAL_API_URL)} $(PY) -m flows.operations apply

# The worker starts each flow run in a session of its own, so signalling the worker's group misses
# them: their pids are taken first, the worker is stopped (SIGTERM; it stops its runs), and any run
# still alive after the grace period is killed with its own group. The server goes last. A run
# stopped this way stays Running on the server until the zombie-run automation marks it Crashed.
stop:
	@for name in worker server; do \
		pid=$$(cat $(SERVE_DIR)/$$name.pid 2>/dev/null) || continue; \
		runs=$$(pgrep -P $$pid 2>/dev/null | tr '\n' ' '); \
		if kill -TERM -- -$$pid 2>/dev/null; then \
			for _ in $$(seq 30); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
			kill -KILL -- -$$pid 2>/dev/null || true; \
			echo "stopped $$name (pid $$pid)"; \
		fi; \
		for run in $$runs; do \
			if kill -0 $$run 2>/dev/null; then \
				kill -KILL -- -$$run 2>/dev/null || kill -KILL $$run 2>/dev/null || true; \
				echo "killed flow run process $$run"; \
			fi; \
		done; \
		rm -f $(SERVE_DIR)/$$name.pid; \
	done
