"""Drift: the latest sessions' features against the train distribution stored in the bundle (train
deciles and shares in stats.parquet), per feature; out-of-range inputs counted per ticker."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.monitoring import drift as drifting
from models.monitoring import nightly
from models.monitoring.sessions import load_champion, session_rows
from models.prices import sources, store
from tasks import monitoring as monitoring_tasks
from tests.helpers import TRAINED_UNTIL

NIGHT = dt.date(2024, 12, 31)


def amplify(night, factor: float) -> None:
    """Every stored ticker's daily moves after TRAINED_UNTIL made `factor` times larger (a market far
    more volatile than the one the champion was trained on)."""
    label = sources.source_label(night.config.source)
    for ticker in night.tickers:
        path = store.price_path(night.home, ticker, source=label)
        frame = pq.read_table(path).to_pandas()
        r = np.diff(np.log(frame["adj_close"].to_numpy()), prepend=np.nan)
        after = (frame["date"] > pd.Timestamp(TRAINED_UNTIL)).to_numpy()
        scale = np.exp(np.cumsum(np.where(after, (factor - 1) * np.nan_to_num(r), 0.0)))
        for column in ("open", "high", "low", "close", "adj_close"):
            frame[column] = frame[column] * scale
        store.write_atomic(store.to_store_table(frame, label, pd.Timestamp.now(tz="UTC")), path)


def independent_psi(night, feature: str) -> float:
    """PSI of one feature recomputed here from stats.parquet's bins and the rows' raw features."""
    champion = load_champion(night.registry, "updown")
    prices = nightly.stored_prices(night.config.source, night.home, night.tickers, NIGHT)
    rows = session_rows(prices, champion)
    days = np.unique(rows.dates)[-night.config.monitoring.drift_sessions :]
    recent = rows.raw[rows.dates >= days[0], champion.stats.features.index(feature)]
    stats = pq.read_table(night.registry.local_path("updown/1") / "stats.parquet").to_pandas()
    row = stats.loc[stats["feature"] == feature].iloc[0]
    edges, expected = np.asarray(row["bin_edges"]), np.asarray(row["bin_shares"])
    actual = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=len(expected)) / len(recent)
    a, e = np.maximum(actual, 1e-4), np.maximum(expected, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def test_the_sample_market_after_training_has_not_drifted(night):
    night.store(NIGHT)
    found = nightly.drift_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    psi = {e["feature"]: e["psi"] for e in found["features"]}
    print("plain market PSI:", {k: round(v, 4) for k, v in psi.items()})
    assert found["status"] == "checked" and found["sessions"] == 250 and found["last"] == str(NIGHT)
    assert found["drifted"] == [] and found["out_of_range"] == {}
    assert max(psi.values()) < night.config.monitoring.drift_psi
    assert psi["volatility_20"] == pytest.approx(independent_psi(night, "volatility_20"), rel=1e-9)


def test_a_market_three_times_as_volatile_has_drifted_and_the_event_fires(night, monkeypatch):
    night.store(NIGHT)
    amplify(night, 3.0)
    found = nightly.drift_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    by = {e["feature"]: e for e in found["features"]}
    print("3x volatile market:", {k: (round(e["psi"], 3), round(e["mean_shift"], 2)) for k, e in by.items()})
    # Half the 250 sessions lie after the switch: the volatility and the momentum it scales shifted
    # (measured: PSI 0.77 and 0.38, mean shift +1.69 and +0.17), the intraday shape did not.
    assert found["drifted"] == ["momentum_20", "volatility_20"]
    assert by["volatility_20"]["psi"] > 0.5 and by["volatility_20"]["mean_shift"] > 1.0
    assert by["intraday_range"]["psi"] < 0.1
    assert by["volatility_20"]["psi"] == pytest.approx(independent_psi(night, "volatility_20"), rel=1e-9)
    # Moves three times as large reach beyond the bound (in train stds) on some sessions, per ticker.
    assert {t: (e["rows"], e["of"]) for t, e in found["out_of_range"].items()} == {
        "FFF": (28, 250),
        "HHH": (1, 250),
    }
    assert all(e["max_abs_z"] > night.config.registry.out_of_range_z for e in found["out_of_range"].values())

    events = []
    monkeypatch.setattr(monitoring_tasks, "emit_event", lambda **event: events.append(event))
    monkeypatch.setattr(monitoring_tasks, "get_run_logger", lambda: logging.getLogger("test"))
    monitoring_tasks.drift_night.fn(
        night.config, str(night.home), str(night.home / "registry"), night.tickers, NIGHT
    )
    assert [e["event"] for e in events] == ["model.drifted"]
    payload = events[0]["payload"]
    assert [f["feature"] for f in payload["features"]] == found["drifted"]
    assert payload["version"] == 1 and payload["thresholds"] == {"psi": 0.25, "mean_shift": 0.5}


def test_psi_is_zero_on_the_train_shares_and_grows_with_the_shift():
    shares = np.full(10, 0.1)
    assert drifting.psi(shares, shares) == 0.0
    moved = np.array([0.0, 0.0, 0.05, 0.05, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2])
    assert drifting.psi(moved, shares) > drifting.psi(0.5 * (moved + shares), shares) > 0
