"""The words a run uses about its data (summary, report.md), the rejected-rerun rule, the default start
in --help and the README, and the data's age."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import INGEST_HELP, build_retrain_parser, print_summary
from models.config import DEFAULT_START, SourceConfig
from models.prices import freshness, lineage
from models.registry.report import data_lines
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]

DATA = {
    "asked": {"tickers": ["AAA", "BAD"], "start": "2016-01-04", "end": None},
    "store": {"source": "yfinance", "key": "yfinance"},
    "first_date": "2018-03-01",
    "last_date": "2024-12-27",
    "sessions_before_first": 541,
    "tickers": {"AAA": {"first_date": "2018-03-01", "last_date": "2024-12-27", "rows": 1716}},
    "quarantined": {"BAD": "BAD: unknown or delisted symbol on Yahoo (HTTP 404)"},
    "historical": False,
    "last_closed_session": "2024-12-31",
    "age_sessions": 2,
}


def test_data_lines_say_range_tickers_drops_and_age():
    assert data_lines(DATA) == [
        (
            "prices",
            "2018-03-01..2024-12-27, 1 ticker: AAA (store yfinance); asked from 2016-01-04: the "
            "source has nothing earlier",
        ),
        ("dropped", "BAD: unknown or delisted symbol on Yahoo (HTTP 404)"),
        (
            "data age",
            "ends 2024-12-27, 2 session(s) before the last closed session 2024-12-31 (the source lags)",
        ),
    ]
    fresh = {**DATA, "age_sessions": 0, "quarantined": {}, "sessions_before_first": 0}
    assert [topic for topic, _ in data_lines(fresh)] == ["prices"]
    assert data_lines({}) == []


def test_the_summary_ends_with_the_dropped_tickers_and_the_age(capsys):
    summary = {
        "path": "/h/registry/updown/3",
        "model": "updown",
        "version": 3,
        "metrics": {"accuracy": 0.5, "balanced_accuracy": 0.45},
        "baselines": {"majority": {"accuracy": 0.4, "balanced_accuracy": 0.3333}},
        "verdict": "promoted",
        "reasons": [],
        "data": DATA,
    }
    print_summary(summary)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2].startswith("prices:      2018-03-01..2024-12-27, 1 ticker: AAA")
    assert lines[-3] == "verdict:     PROMOTED"
    assert lines[-2] == "dropped:     BAD: unknown or delisted symbol on Yahoo (HTTP 404)"
    assert lines[-1].startswith("data age:    ends 2024-12-27, 2 session(s)")


def test_data_age_counts_closed_sessions_after_the_last_date():
    now = pd.Timestamp("2025-01-03 23:00", tz="UTC")  # Friday after the close
    assert lineage.sessions_behind("XNYS", dt.date(2024, 12, 31), now) == (dt.date(2025, 1, 3), 2)
    assert lineage.sessions_behind("XNYS", dt.date(2025, 1, 3), now) == (dt.date(2025, 1, 3), 0)


def test_a_rejected_version_on_the_same_data_and_config_is_found():
    config = tiny_config()
    same = {"data_fingerprint": "abc", "config": config.model_dump(mode="json")}
    manifests = [
        (1, {**same, "gate": {"verdict": "rejected", "reasons": ["old"]}}),
        (2, {**same, "gate": {"verdict": "promoted", "reasons": []}}),
        (3, {**same, "gate": {"verdict": "rejected", "reasons": ["beats no baseline"]}}),
        (4, {**same, "data_fingerprint": "xyz", "gate": {"verdict": "rejected", "reasons": []}}),
    ]
    assert freshness.rejected_on_same_data(manifests, "abc", config) == (3, ["beats no baseline"])
    assert freshness.rejected_on_same_data(manifests, "xyz", config) == (4, [])
    assert freshness.rejected_on_same_data(manifests, "abc", tiny_config(model={"lstm_units": [4]})) is None
    assert freshness.rejected_on_same_data(manifests[1:2], "abc", config) is None


def test_the_default_start_is_documented_where_users_look():
    assert SourceConfig().start == DEFAULT_START == dt.date(2016, 1, 4)
    assert f"(default {DEFAULT_START})" in build_retrain_parser().format_help()
    assert "--end" in INGEST_HELP and "historical mode" in build_retrain_parser().format_help()
    readme = (ROOT / "README.md").read_text()
    assert f"default `{DEFAULT_START}`" in readme and "Historical mode" in readme


def test_incomplete_universe_names_every_dropped_ticker_once():
    source = SourceConfig(tickers=("AAA", "BBB", "CCC"))
    assert lineage.incomplete_universe(source, {}) is None
    message = lineage.incomplete_universe(source, {"CCC": "CCC: no CCC.csv", "BBB": "BBB 2020-01-02 x"})
    assert message.startswith(
        "2 of 3 tickers were quarantined at ingest and gate.require_full_universe is on"
    )
    assert (
        "BBB 2020-01-02 x; CCC: no CCC.csv." in message
        and "set gate.require_full_universe to false" in message
    )


def test_a_switched_off_sample_market_is_a_source_of_its_own():
    """Its prices equal the signal market's up to the switch, but never share its store or manifest."""
    from pydantic import ValidationError

    from models.config import SourceConfig
    from models.prices import sources, store

    plain = SourceConfig()
    switched = SourceConfig(sample_signal_until="2024-06-28")
    assert sources.source_label(switched) == "sample:signal:seed=7:until=2024-06-28"
    keys = {store.source_key(sources.source_label(s)) for s in (plain, switched)}
    assert len(keys) == 2 and all(k.startswith("sample-signal-seed-7") for k in keys)
    described = sources.describe(switched)
    assert (
        described["signal_until"] == "2024-06-28" and "switched off after 2024-06-28" in described["notice"]
    )
    assert "signal_until" not in sources.describe(plain)
    with pytest.raises(ValidationError, match="needs kind 'sample' and sample_variant 'signal'"):
        SourceConfig(sample_variant="volatility", sample_signal_until="2024-06-28")
