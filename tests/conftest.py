"""Test-session environment: Prefect, Keras and TensorFlow state in a fresh folder of the work tree."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Set before anything imports prefect: a PREFECT_HOME shared between sessions leaks cache records.
(ROOT / ".prefect").mkdir(exist_ok=True)
_SESSION_HOME = tempfile.mkdtemp(prefix="pytest-", dir=ROOT / ".prefect")
os.environ["PREFECT_HOME"] = _SESSION_HOME
for key, value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "KERAS_HOME": str(Path(_SESSION_HOME) / "keras"),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PIPELINE_HOME", None)
# Object-store registries download into this session's folder, never into the user's ~/.cache.
os.environ["PIPELINE_REGISTRY_CACHE_DIR"] = str(Path(_SESSION_HOME) / "registry-cache")

# curl_cffi (yfinance's HTTP client) must be loaded before TensorFlow: in a process where TensorFlow
# came first, every browser-impersonating request fails ("Impersonating chrome152 is not
# supported"), and test modules import keras when they are collected. Loading it here, before any
# test module, makes the yfinance tests independent of which modules a run collects first.
import curl_cffi.requests  # noqa: E402,F401
import pytest  # noqa: E402

from models.prices.sources import load_http_client  # noqa: E402

# Before any test module is collected: a module that imports keras (TensorFlow, with a libcurl of its
# own) and then one that imports yfinance would otherwise break yfinance's HTTP client for the whole
# session, depending on which modules a run selects (see load_http_client).
load_http_client()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api():
    """A temporary Prefect API (SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def champion_registry(tmp_path_factory):
    """A registry whose champion (updown/1) was trained once per session on the sample market up to
    2024-06-28: 8 tickers from 2016, 4 walk-forward folds, LSTM(32), 4 epochs (~20 s on 2 cores).
    Tests copy it (`copy_registry`) and never write to it."""
    from tests.helpers import TRAINED_UNTIL, learning_config, run_without_prefect

    home = tmp_path_factory.mktemp("champion")
    config = learning_config("signal", source={"end": TRAINED_UNTIL.isoformat()}, training={"epochs": 4})
    result = run_without_prefect(config, home)
    assert result["verdict"] == "promoted", result["reasons"]
    return home / "registry"
