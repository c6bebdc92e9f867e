# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools

# Keep Prefect, Keras and TensorFlow state inside the work tree and quiet.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_UI_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export KERAS_HOME ?= $(CURDIR)/.keras
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: help demo test test-fast lint format env clean

help:
	@echo "make demo   run the nightly retrain flow on the built-in (synthetic) sample market"
	@echo "make test   run the test suite"
	@echo "make lint   ruff check + format check"

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

demo: $(VENV)/.synced
	$(PY) -m flows.retrain $(ARGS)

test: $(VENV)/.synced
	$(PY) -m pytest $(PYTEST_ARGS)

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
