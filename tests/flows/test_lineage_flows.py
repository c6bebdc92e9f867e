"""Lineage through the ingest and retrain flows: sources kept apart, backfill by `ingest/backfill`, an
ingest cache keyed on what is stored, quarantined tickers reported or refused, stale feeds explained,
and a rejected configuration not retrained on the same data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.cli import retrain_main
from flows.ingest import ingest
from flows.retrain import retrain
from models.config import SourceConfig
from models.errors import IncompleteUniverse, RejectedBefore
from models.prices import calendar, freshness, sample, sources, store
from models.registry import Registry
from tests.helpers import END, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")

SMALL = SourceConfig(tickers=("AAA", "BBB"), start=dt.date(2023, 1, 3), end=END)


def task_states(state) -> dict[str, str]:
    """Task run name -> state name of one flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {r.name: r.state.name for r in runs if r.name.startswith("ingest-")}


def records(state) -> dict[str, dict]:
    return {r["ticker"]: r for r in state.result()["records"]}


def test_the_noise_market_in_a_home_holding_the_signal_market_is_read_from_its_own_store(tmp_path):
    """`make demo` then `make demo ARGS="--variant noise"`: the second run must see noise prices."""
    ingest(SMALL, str(tmp_path))
    noise = SMALL.model_copy(update={"sample_variant": "noise"})
    state = ingest(noise, str(tmp_path), return_state=True)
    assert {r["status"] for r in records(state).values()} == {"ok"}  # not "up_to_date" on signal rows
    prices = freshness.stored_prices(noise, tmp_path, ["AAA", "BBB"], END)
    for ticker in ("AAA", "BBB"):
        expected = sample.generate(ticker, END, start=noise.start, variant="noise")
        np.testing.assert_array_equal(prices[ticker].adj_close, expected["adj_close"].to_numpy())
        signal = sample.generate(ticker, END, start=noise.start, variant="signal")
        assert not np.allclose(prices[ticker].adj_close, signal["adj_close"].to_numpy())


def test_the_backfill_deployments_flow_backfills_a_wider_start(tmp_path):
    ingest(SMALL, str(tmp_path))
    wider = SMALL.model_copy(update={"start": dt.date(2021, 1, 4)})
    state = ingest(wider, str(tmp_path), return_state=True)  # what `ingest/backfill` runs
    for ticker, record in records(state).items():
        assert record["status"] == "backfilled" and record["first_date"] == "2021-01-04", ticker
        stored = store.read_prices(tmp_path, ticker, source=sources.source_label(wider))
        assert str(stored["date"].iloc[0].date()) == "2021-01-04"


def test_the_ingest_cache_says_cached_follows_the_store_file_and_force_bypasses_it(tmp_path):
    home = str(tmp_path)
    label = sources.source_label(SMALL)
    first = ingest(SMALL, home, return_state=True)
    assert {r["status"] for r in records(first).values()} == {"ok"}
    # Nothing new: each ticker is checked (cheaply, nothing is read from the source) ...
    second = ingest(SMALL, home, return_state=True)
    assert {r["status"] for r in records(second).values()} == {"up_to_date"}
    # ... and the run after replays that check from the cache, and says so.
    third = ingest(SMALL, home, return_state=True)
    assert task_states(third) == {"ingest-AAA": "Cached", "ingest-BBB": "Cached"}
    for record in records(third).values():
        assert record["status"] == "cached" and record["rows_added"] == 0
        assert record["note"].startswith("cached: ")

    # A deleted store file is fetched again, not replayed from the cache.
    store.price_path(tmp_path, "AAA", source=label).unlink()
    fourth = ingest(SMALL, home, return_state=True)
    assert task_states(fourth) == {"ingest-AAA": "Completed", "ingest-BBB": "Cached"}
    assert records(fourth)["AAA"]["status"] == "ok" and records(fourth)["AAA"]["rows_added"] == len(
        calendar.sessions("XNYS", SMALL.start, END)
    )
    assert store.price_path(tmp_path, "AAA", source=label).exists()

    # A store file changed behind the pipeline's back is not a cache hit either.
    path = store.price_path(tmp_path, "BBB", source=label)
    store.write_atomic(store.pq.read_table(path), path)
    assert task_states(ingest(SMALL, home, return_state=True))["ingest-BBB"] == "Completed"

    # force=true reads every ticker again.
    forced = ingest(SMALL, home, force=True, return_state=True)
    assert task_states(forced) == {"ingest-AAA": "Completed", "ingest-BBB": "Completed"}
    assert {r["status"] for r in records(forced).values()} == {"up_to_date"}


def test_a_changed_folder_file_is_read_again_even_when_the_ingest_was_cached(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for ticker in ("AAA", "BBB"):
        sample.generate(ticker, END, start=SMALL.start).to_csv(folder / f"{ticker}.csv", index=False)
    source = SMALL.model_copy(update={"kind": "folder", "folder": str(folder)})
    home = str(tmp_path / "home")
    for _ in range(3):
        state = ingest(source, home, max_failed_share=0.5, return_state=True)
    assert task_states(state) == {"ingest-AAA": "Cached", "ingest-BBB": "Cached"}
    broken = pd.read_csv(folder / "BBB.csv")
    broken.loc[10, "high"] = broken.loc[10, "low"] / 2
    broken.to_csv(folder / "BBB.csv", index=False)
    state = ingest(source, home, max_failed_share=0.5, return_state=True)
    bad = records(state)["BBB"]
    assert bad["status"] == "quarantined"
    assert f"BBB {broken.loc[10, 'date']} column 'high': high below low" in bad["reason"]
    assert records(state)["AAA"]["status"] == "cached"
    assert state.result()["quarantined"] == {"BBB": bad["reason"]}


def test_a_stale_feed_names_the_ticker_once_and_says_to_pass_end(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sample.generate("^GSPC", dt.date(2020, 6, 30), start=dt.date(2020, 1, 2)).to_csv(
        folder / "^GSPC.csv", index=False
    )
    source = SourceConfig(kind="folder", folder=str(folder), tickers=("^GSPC",), start=dt.date(2020, 1, 2))
    state = ingest(source, str(tmp_path / "home"), return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "^GSPC: the folder source's newest price is on 2020-06-30" in message
    assert "^GSPC: ^GSPC" not in message and "pass --end 2020-06-30 (source.end)" in message
    # Historical mode: the same history, read as of its last day.
    historical = source.model_copy(update={"end": dt.date(2020, 6, 30)})
    assert ingest(historical, str(tmp_path / "home"))["tickers"] == ["^GSPC"]


BROKEN_DAY = str(sample.generate("DDD", END, start=dt.date(2019, 1, 2))["date"].iloc[100].date())


def dropped(folder: Path) -> str:
    """Why DDD is dropped: the broken row, with its file and line (row 100 + header, one-based)."""
    return f"DDD {BROKEN_DAY} column 'high': high below low (1 row(s); {folder / 'DDD.csv'}: line 102)"


UNIVERSE = ["AAA", "BBB", "CCC", "DDD", "EEE"]  # one of five may be quarantined (max_failed_share 0.2)


def folder_universe(folder: Path, broken: str | None = None) -> dict:
    """Sample-market CSVs for AAA..EEE (2019-2024); `broken` gets a row with high below low."""
    folder.mkdir(parents=True, exist_ok=True)
    for ticker in UNIVERSE:
        frame = sample.generate(ticker, END, start=dt.date(2019, 1, 2))
        if ticker == broken:
            frame.loc[100, "high"] = frame.loc[100, "low"] / 2
        frame.to_csv(folder / f"{ticker}.csv", index=False)
    return {"kind": "folder", "folder": str(folder), "tickers": UNIVERSE}


def test_require_full_universe_refuses_before_training_with_one_message(tmp_path):
    source = folder_universe(tmp_path / "in", broken="DDD")
    config = tiny_config(source=source, gate={"require_full_universe": True})
    state = retrain(config, str(tmp_path / "home"), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IncompleteUniverse)
    assert str(error).startswith(
        "1 of 5 tickers were quarantined at ingest and gate.require_full_universe is on, so nothing "
        f"was trained: {dropped(tmp_path / 'in')}. Fix the data"
    )
    assert not (tmp_path / "home" / "registry").exists()
    assert not list((tmp_path / "home").glob("runs/*/dataset"))  # refused before the dataset build


@pytest.fixture(scope="module")
def dropped_run(tmp_path_factory):
    """The CLI on a folder universe with one broken ticker; the gate is set to reject."""
    root = tmp_path_factory.mktemp("dropped")
    source = folder_universe(root / "in", broken="DDD")
    config = tiny_config(source=source, gate={"margin": 0.9})
    config_file = root / "config.json"
    config_file.write_text(config.model_dump_json())
    argv = ["--config", str(config_file), "--home", str(root / "home")]
    return root, config, argv


def test_a_run_that_dropped_a_ticker_says_so_in_its_last_lines_report_and_manifest(dropped_run, capsys):
    root, config, argv = dropped_run
    assert retrain_main(argv) == 1  # rejected (the gate's margin is unreachable)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"dropped:     {dropped(root / 'in')}"
    store_key = store.source_key(sources.source_label(config.source))
    assert any(
        line == f"prices:      2019-01-02..2024-12-31, 4 tickers: AAA, BBB, CCC, EEE (store {store_key})"
        for line in lines
    )
    assert lines[-1].startswith("data age:    ends 2024-12-31, ") and lines[-1].endswith(
        "(as asked: end is set (historical mode))"
    )

    bundle = Registry(root / "home" / "registry").resolve("updown/1")
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    data = manifest["data"]
    assert data["quarantined"] == {"DDD": dropped(root / "in")}
    assert data["asked"] == {
        "tickers": UNIVERSE,
        "start": "2019-01-02",
        "end": "2024-12-31",
    }
    assert manifest["config"]["source"]["start"] == "2019-01-02"  # next to the config that asked
    rows = len(sample.generate("AAA", END, start=dt.date(2019, 1, 2)))
    csv_file = Path(config.source.folder) / "AAA.csv"
    assert data["tickers"]["AAA"]["first_date"] == "2019-01-02"
    assert data["tickers"]["AAA"]["last_date"] == "2024-12-31"
    assert data["tickers"]["AAA"]["rows"] == rows
    assert data["tickers"]["AAA"]["source_file"]["path"] == str(csv_file.resolve())
    assert set(data["tickers"]) == {"AAA", "BBB", "CCC", "EEE"} == set(manifest["tickers"])
    report = (bundle.path / "report.md").read_text()
    assert f"- dropped: {dropped(root / 'in')}" in report
    assert f"| AAA | 2019-01-02 | 2024-12-31 | {rows} |" in report
    assert f"- prices: 2019-01-02..2024-12-31, 4 tickers: AAA, BBB, CCC, EEE (store {store_key})" in report
    assert f"- data age: ends 2024-12-31, {data['age_sessions']} session(s) before the last closed" in report
    assert data["age_sessions"] > 400 and data["historical"] is True


def test_a_rerun_of_a_rejected_configuration_trains_only_with_force(dropped_run, capsys):
    root, config, argv = dropped_run
    registry = Registry(root / "home" / "registry")
    assert (
        registry.versions("updown") == [1] and registry.manifest("updown/1")["gate"]["verdict"] == "rejected"
    )
    assert retrain_main(argv) == 1
    printed = capsys.readouterr()
    assert "error: version 1 of updown was rejected on exactly this data" in printed.err
    assert "Nothing was trained; to retrain anyway" in printed.err
    assert printed.out.strip().splitlines()[-1] == f"dropped:     {dropped(root / 'in')}"
    assert registry.versions("updown") == [1]  # nothing trained, nothing published

    state = retrain(config, str(root / "home"), return_state=True)
    assert isinstance(state.result(raise_on_failure=False), RejectedBefore)
    assert retrain_main([*argv, "--force"]) == 1  # trained again, and rejected again
    assert registry.versions("updown") == [1, 2]
