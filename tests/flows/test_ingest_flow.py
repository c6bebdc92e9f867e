"""The ingest flow on Prefect's temporary API: quarantine, the report artifact, retries only when useful."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.states import Failed

from flows.ingest import ingest
from models.config import SourceConfig
from models.prices import calendar, sources, store
from models.prices.ingest import IngestRecord
from tasks.ingest import ingest_ticker, report_ingest, retry_transient_only
from tests.yahoo_fake import FakeYahoo, Listing, redirect_yfinance

pytestmark = pytest.mark.usefixtures("prefect_api")

START, END = dt.date(2024, 1, 2), dt.date(2024, 3, 28)


def bars(seed: int) -> pd.DataFrame:
    days = calendar.sessions("XNYS", START, END)
    close = 30 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, len(days))))
    return pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "adj_close": close,
            "volume": 1000,
        }
    )


def folder_universe(folder, good: list[str], broken: list[str]) -> SourceConfig:
    for i, ticker in enumerate(good + broken):
        frame = bars(i)
        if ticker in broken:
            high, low = float(frame.loc[10, "high"]), float(frame.loc[10, "low"])
            frame.loc[10, "high"], frame.loc[10, "low"] = low, high  # high < low
        frame.to_csv(folder / f"{ticker}.csv", index=False)
    return SourceConfig(kind="folder", folder=str(folder), tickers=tuple(good + broken), start=START, end=END)


def artifact_rows(flow_run_id) -> list[dict]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    (report,) = [a for a in artifacts if a.key == "ingest-report"]
    return json.loads(report.data) if isinstance(report.data, str) else report.data


def task_run_counts(flow_run_id) -> dict[str, int]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.run_count for r in runs}


def test_a_broken_ticker_is_quarantined_and_the_others_proceed(tmp_path):
    source = folder_universe(tmp_path, ["AAA", "BBB", "CCC", "DDD"], ["BAD"])
    state = ingest(source, str(tmp_path / "home"), max_failed_share=0.2, return_state=True)
    assert state.is_completed()  # 1 of 5 = 20 %: not more than the share allowed
    result = state.result()
    assert result["tickers"] == ["AAA", "BBB", "CCC", "DDD"]
    records = {r["ticker"]: r for r in result["records"]}
    assert records["BAD"]["status"] == "quarantined"
    assert "BAD 2024-01-17 column 'high': high below low" in records["BAD"]["reason"]
    assert all(records[t]["status"] == "ok" for t in ["AAA", "BBB", "CCC", "DDD"])
    assert not store.price_path(tmp_path / "home", "BAD", source=sources.source_label(source)).exists()

    rows = {r["ticker"]: r for r in artifact_rows(state.state_details.flow_run_id)}
    assert set(rows) == {"AAA", "BBB", "CCC", "DDD", "BAD"}
    assert rows["BAD"]["status"] == "quarantined" and "high below low" in rows["BAD"]["reason"]
    assert rows["AAA"]["rows_added"] == len(calendar.sessions("XNYS", START, END))
    assert rows["AAA"]["first_date"] == "2024-01-02" and rows["AAA"]["last_date"] == "2024-03-28"
    assert rows["AAA"]["gaps"] == 0
    # A validation error is not retried: retrying cannot fix the data.
    assert task_run_counts(state.state_details.flow_run_id)["ingest-BAD"] == 1


def test_too_many_failures_fail_the_run_naming_them(tmp_path):
    source = folder_universe(tmp_path, ["AAA", "BBB", "CCC"], ["BAD", "WORSE"])
    state = ingest(source, str(tmp_path / "home"), max_failed_share=0.2, return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "2 of 5 tickers failed to ingest (more than 20%)" in message
    assert "BAD 2024-01-17 column 'high': high below low" in message
    assert "WORSE 2024-01-17 column 'high': high below low" in message
    label = sources.source_label(source)
    assert store.price_path(tmp_path / "home", "AAA", source=label).exists()  # the good ones were stored


def test_only_transient_errors_are_retried():
    transient = Failed(data=sources.TransientSourceError("ACME: Yahoo answered HTTP 503"))
    assert retry_transient_only(ingest_ticker, None, transient) is True
    for error in (
        sources.SourceError("ACME: unknown or delisted symbol"),
        store.PriceValidationError("ACME 2024-06-20 column 'high': high below low"),
        ValueError("ticker '../x' is not a valid symbol"),
    ):
        assert retry_transient_only(ingest_ticker, None, Failed(data=error)) is False


def test_a_server_error_is_retried_and_an_unknown_symbol_is_not(tmp_path, monkeypatch):
    fake = FakeYahoo().start()
    try:
        redirect_yfinance(monkeypatch, fake.url)
        fake.listings["DOWN"] = Listing(bars(1).assign(date=lambda f: pd.to_datetime(f["date"])))
        fake.failures["DOWN"] = 500
        quick = ingest_ticker.with_options(retry_delay_seconds=0, retry_jitter_factor=None)
        source = SourceConfig(kind="yfinance", tickers=("DOWN", "NOPE"), start=START, end=END)

        @flow
        def two_tickers() -> list:
            futures = [quick.submit(source, t, str(tmp_path), END) for t in source.tickers]
            return [f.result(raise_on_failure=False) for f in futures]

        state = two_tickers(return_state=True)
        down, nope = state.result()
    finally:
        fake.stop()
    assert isinstance(down, sources.TransientSourceError) and isinstance(nope, sources.SourceError)
    assert str(down) == "DOWN: Yahoo answered HTTP 500 (a server error)"
    assert not isinstance(nope, sources.TransientSourceError)
    assert str(nope).startswith("NOPE: unknown or delisted symbol on Yahoo")
    # Prefect's record: 1 try + 3 retries for the server error, 1 try for the unknown symbol...
    runs = task_run_counts(state.state_details.flow_run_id)
    assert sorted(runs.values()) == [1, 4], runs
    # ...and Yahoo's: yfinance asks twice (its second cookie strategy) on an answer >= 400.
    assert len(fake.chart_requests("DOWN")) == 4 * 2
    assert len(fake.chart_requests("NOPE")) == 2


def test_with_no_network_the_run_fails_at_once_in_one_line(tmp_path, monkeypatch):
    redirect_yfinance(monkeypatch, "http://yahoo.invalid")  # never resolves (RFC 2606), like no DNS at all
    source = SourceConfig(kind="yfinance", tickers=("SPY", "QQQ", "IWM"), start=START, end=END)
    started = time.monotonic()
    state = ingest(source, str(tmp_path), return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert message.startswith(
        "Yahoo Finance is unreachable from this machine: yahoo.invalid does not resolve"
    )
    assert message.endswith("no ticker was fetched") and "\n" not in message
    assert elapsed < 30, f"{elapsed:.1f} s"  # three quick resolution attempts, not minutes of retries
    assert "ingest-SPY" not in task_run_counts(state.state_details.flow_run_id)


def test_the_same_failure_for_every_ticker_is_said_once():
    records = [
        IngestRecord(t, "quarantined", reason=f"{t}: Yahoo answered HTTP 503 (a server error)")
        for t in ("SPY", "QQQ", "IWM")
    ] + [IngestRecord("XLF", "quarantined", reason="XLF: unknown or delisted symbol on Yahoo (HTTP 404)")]
    source = SourceConfig(kind="yfinance", tickers=("SPY", "QQQ", "IWM", "XLF"), start=START, end=END)

    @flow
    def report() -> None:
        report_ingest(source, records, 0.2)

    state = report(return_state=True)
    assert str(state.result(raise_on_failure=False)) == (
        "4 of 4 tickers failed to ingest (more than 20%): SPY, QQQ, IWM: Yahoo answered HTTP 503 "
        "(a server error); XLF: unknown or delisted symbol on Yahoo (HTTP 404). Fix or drop those tickers, "
        "or allow a larger share (--max-failed-share; the flow parameter max_failed_share)"
    )
