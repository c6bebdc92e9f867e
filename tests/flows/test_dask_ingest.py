"""Per-ticker ingest fanned out on a local Dask cluster gives exactly what the in-process run gives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flows.common import with_task_runner
from flows.ingest import ingest
from models.dataset import build
from models.prices import freshness, sources, store
from tests.helpers import tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")

CLUSTER = {"n_workers": 2, "threads_per_worker": 1}


def test_dask_ingest_stores_the_same_prices_as_the_in_process_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_TEMPORARY_DIRECTORY", str(tmp_path / "dask"))
    config = tiny_config(source={"tickers": ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]})
    here = with_task_runner(ingest, "thread")(config.source, str(tmp_path / "here"))
    spread = with_task_runner(ingest, "dask", None, **CLUSTER)(config.source, str(tmp_path / "dask-home"))

    assert sorted(spread["records"], key=lambda r: r["ticker"]) == sorted(
        here["records"], key=lambda r: r["ticker"]
    )
    assert spread["tickers"] == here["tickers"] and spread["end"] == here["end"]
    label = sources.source_label(config.source)
    for ticker in config.source.tickers:
        ours = store.read_prices(tmp_path / "dask-home", ticker, source=label)
        theirs = store.read_prices(tmp_path / "here", ticker, source=label)
        # fetched_at records when a row was stored, so it differs between two runs by design.
        ours, theirs = ours.drop(columns="fetched_at"), theirs.drop(columns="fetched_at")
        assert ours.equals(theirs), ticker

    def stored_fingerprint(home: Path) -> str:
        end = dt.date.fromisoformat(here["end"])
        prices = freshness.stored_prices(config.source, home, here["tickers"], end)
        return build.fingerprint(prices, config, sources.describe(config.source))

    assert stored_fingerprint(tmp_path / "dask-home") == stored_fingerprint(tmp_path / "here")


def test_an_unknown_task_runner_is_refused():
    with pytest.raises(ValueError, match="unknown task runner 'ray'"):
        with_task_runner(ingest, "ray")
