"""The yfinance source through yfinance's own request and parsing code, against a local fake Yahoo."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yfinance.cache

from models.config import SourceConfig
from models.prices import calendar, ingest, sources, store
from tests.yahoo_fake import FakeYahoo, Listing, redirect_yfinance, session_timestamp

START = dt.date(2024, 1, 2)
END = dt.date(2024, 3, 28)


@pytest.fixture
def yahoo(monkeypatch):
    fake = FakeYahoo().start()
    redirect_yfinance(monkeypatch, fake.url)
    yield fake
    fake.stop()


def traded(start: dt.date, end: dt.date, seed: int, level: float = 100.0) -> pd.DataFrame:
    """Unadjusted daily bars on XNYS sessions: a gentle random walk."""
    days = calendar.sessions("XNYS", start, end)
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    return pd.DataFrame(
        {
            "date": days,
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(1_000, 5_000, len(days)),
        }
    )


def test_one_ticker_round_trips_through_yfinance(yahoo, tmp_path):
    bars = traded(START, END, seed=1)
    yahoo.listings["ACME"] = Listing(bars)
    frame = sources.fetch_yfinance(["ACME"], START, END, tmp_path)["ACME"]
    assert list(frame.columns) == ["date", "open", "high", "low", "close", "adj_close", "volume"]
    assert frame["date"].dtype == "datetime64[ns]"
    assert list(frame["date"]) == list(bars["date"])
    np.testing.assert_allclose(frame["close"], bars["close"])
    np.testing.assert_allclose(frame["adj_close"], bars["close"])  # no events: nothing to adjust
    assert (frame["volume"] == bars["volume"]).all()
    probe, history = yahoo.chart_requests("ACME")
    assert probe["range"] == "1d"  # yfinance asks for the exchange timezone first
    assert int(history["period1"]) == int(pd.Timestamp("2024-01-02", tz="America/New_York").timestamp())
    assert int(history["period2"]) == int(pd.Timestamp("2024-03-29", tz="America/New_York").timestamp())
    assert history["events"] == "div,splits,capitalGains"
    # Caches go to the data home, not ~/.cache (yfinance creates the folder on first use per process).
    assert yfinance.cache._TzDBManager.get_location() == str(tmp_path / "cache" / "yfinance")


def test_several_tickers_each_get_their_own_prices(yahoo, tmp_path):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1, level=100))
    yahoo.listings["BRK-B"] = Listing(traded(START, END, seed=2, level=400))
    frames = sources.fetch_yfinance(["ACME", "BRK-B"], START, END, tmp_path)
    assert set(frames) == {"ACME", "BRK-B"}
    np.testing.assert_allclose(frames["ACME"]["close"], yahoo.listings["ACME"].prices["close"])
    np.testing.assert_allclose(frames["BRK-B"]["close"], yahoo.listings["BRK-B"].prices["close"])


def test_an_unknown_ticker_is_a_permanent_error_naming_it(yahoo, tmp_path):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1))
    with pytest.raises(sources.SourceError, match=r"^NOPE: unknown or delisted symbol") as caught:
        sources.fetch_yfinance(["NOPE"], START, END, tmp_path)
    assert not isinstance(caught.value, sources.TransientSourceError)


@pytest.mark.parametrize(
    ("status", "message"),
    [(500, r"^ACME: Yahoo answered with a non-JSON page"), (429, r"^ACME: yfinance was rate limited")],
)
def test_server_errors_and_rate_limits_are_transient(yahoo, tmp_path, status, message):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1))
    yahoo.failures["ACME"] = status
    with pytest.raises(sources.TransientSourceError, match=message):
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)


def test_an_unreachable_server_is_transient(yahoo, tmp_path):
    yahoo.stop()
    with pytest.raises(sources.TransientSourceError, match=r"^ACME: network error"):
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)


def test_a_dividend_and_a_split_adjust_history_like_yahoo(yahoo, tmp_path):
    bars = traded(START, END, seed=3)
    dividend_day, split_day = "2024-02-07", "2024-03-01"
    after = bars["date"] >= pd.Timestamp(split_day)  # as traded: a 4:1 split quarters the price
    bars.loc[after, ["open", "high", "low", "close"]] /= 4
    bars.loc[after, "volume"] *= 4
    yahoo.listings["ACME"] = Listing(bars, dividends={dividend_day: 1.5}, splits={split_day: (4, 1)})
    frame = sources.fetch_yfinance(["ACME"], START, END, tmp_path)["ACME"].set_index("date")
    raw = bars.set_index("date")
    before_split = frame.index < pd.Timestamp(split_day)
    # Yahoo's close is split-adjusted (not dividend-adjusted); volume scales inversely.
    np.testing.assert_allclose(frame.loc[before_split, "close"], raw.loc[before_split, "close"] / 4)
    np.testing.assert_allclose(frame.loc[~before_split, "close"], raw.loc[~before_split, "close"])
    assert (frame.loc[before_split, "volume"] == raw.loc[before_split, "volume"] * 4).all()
    # adj_close also carries the dividend: scaled by 1 - D / previous close before the ex-date.
    before_dividend = frame.index < pd.Timestamp(dividend_day)
    previous_close = frame.loc[before_dividend, "close"].iloc[-1]
    factor = frame.loc[before_dividend, "adj_close"] / frame.loc[before_dividend, "close"]
    np.testing.assert_allclose(factor, 1 - 1.5 / previous_close)
    np.testing.assert_allclose(frame.loc[~before_dividend, "adj_close"], frame.loc[~before_dividend, "close"])
    # Adjusted, the 4:1 split is no 75 % crash: the one-day-move check passes.
    store.validate_prices(
        "ACME", frame.reset_index(), store.ValidationRules(exchange="XNYS", max_daily_move=0.5)
    )


def yfinance_source(**extra) -> SourceConfig:
    return SourceConfig(kind="yfinance", tickers=("ACME",), start=START, **extra)


def test_ingest_through_yfinance_fetches_only_new_sessions_then_detects_a_restatement(yahoo, tmp_path):
    bars = traded(START, dt.date(2024, 4, 30), seed=4)
    yahoo.listings["ACME"] = Listing(bars.loc[bars["date"] <= pd.Timestamp(END)].reset_index(drop=True))
    source = yfinance_source()
    first = ingest.ingest_ticker(source, "ACME", tmp_path, END)
    assert first.status == "ok" and first.rows_added == len(yahoo.listings["ACME"].prices)

    # A "month" later, no event: only the overlap (5 sessions before the last stored one) is asked for.
    yahoo.listings["ACME"] = Listing(bars)
    second = ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 4, 30))
    overlap_start = calendar.sessions("XNYS", dt.date(2024, 3, 1), END)[-6]
    assert second.status == "ok" and second.fetched_from == str(overlap_start.date())
    assert int(yahoo.chart_requests("ACME")[-1]["period1"]) == int(
        pd.Timestamp(overlap_start).tz_localize("America/New_York").timestamp()
    )
    assert second.rows_added == len(calendar.sessions("XNYS", dt.date(2024, 3, 29), dt.date(2024, 4, 30)))

    # A dividend goes ex the next day: every adjusted price before it changes, so history is refetched.
    later = traded(START, dt.date(2024, 5, 3), seed=4)
    yahoo.listings["ACME"] = Listing(later, dividends={"2024-05-01": 2.0})
    third = ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 5, 3))
    assert third.status == "restated" and "adj_close restated" in third.reason
    assert int(yahoo.chart_requests("ACME")[-1]["period1"]) == session_timestamp(pd.Timestamp(START)) - (
        9 * 3600 + 1800
    )  # the full history, from the configured start
    stored = store.read_prices(tmp_path, "ACME", source="yfinance")
    expected = sources.fetch_yfinance(["ACME"], START, dt.date(2024, 5, 3), tmp_path)["ACME"]
    np.testing.assert_allclose(stored["adj_close"], expected["adj_close"])
    assert stored["adj_close"].iloc[0] < stored["close"].iloc[0]


def test_the_yfinance_source_needs_the_data_home():
    with pytest.raises(ValueError, match="needs the data home"):
        sources.load(yfinance_source(), "ACME", START, END)
