import datetime as dt

import numpy as np
import pandas as pd

from models.prices import calendar, sample


def test_same_seed_same_market():
    a = sample.generate("AAA", dt.date(2020, 6, 30), start=dt.date(2019, 1, 2))
    b = sample.generate("AAA", dt.date(2020, 6, 30), start=dt.date(2019, 1, 2))
    pd.testing.assert_frame_equal(a, b)


def test_history_does_not_change_when_the_market_grows():
    short = sample.generate("AAA", dt.date(2020, 6, 30), start=dt.date(2019, 1, 2))
    longer = sample.generate("AAA", dt.date(2021, 6, 30), start=dt.date(2019, 1, 2))
    pd.testing.assert_frame_equal(short, longer.iloc[: len(short)])


def test_rows_are_exchange_sessions_with_consistent_ohlc():
    frame = sample.generate("BBB", dt.date(2021, 12, 31), start=dt.date(2021, 1, 4))
    sessions = calendar.sessions("XNYS", dt.date(2021, 1, 4), dt.date(2021, 12, 31))
    assert list(frame["date"]) == list(sessions)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["volume"] > 0).all()


def test_tickers_and_variants_differ():
    a = sample.generate("AAA", dt.date(2020, 12, 31))
    b = sample.generate("BBB", dt.date(2020, 12, 31))
    noise = sample.generate("AAA", dt.date(2020, 12, 31), variant="noise")
    assert not np.allclose(a["close"], b["close"])
    assert not np.allclose(a["close"], noise["close"])


def test_signal_variant_has_persistent_drift_and_noise_has_none():
    """The planted signal: future 5-day returns correlate with the past 20 days only in `signal`."""

    def momentum_correlation(variant):
        closes = [
            np.log(sample.generate(t, dt.date(2024, 12, 31), variant=variant)["adj_close"].to_numpy())
            for t in ("AAA", "BBB", "CCC", "DDD")
        ]
        past = np.concatenate([c[20:-5] - c[:-25] for c in closes])
        future = np.concatenate([c[25:] - c[20:-5] for c in closes])
        return np.corrcoef(past, future)[0, 1]

    assert momentum_correlation("signal") > 0.1
    assert abs(momentum_correlation("noise")) < 0.05


def test_last_closed_session_respects_the_close():
    before_close = pd.Timestamp("2026-11-25 20:00", tz="UTC")  # 15:00 New York
    after_close = pd.Timestamp("2026-11-25 21:30", tz="UTC")
    thanksgiving = pd.Timestamp("2026-11-26 22:00", tz="UTC")
    assert calendar.last_closed_session("XNYS", before_close) == dt.date(2026, 11, 24)
    assert calendar.last_closed_session("XNYS", after_close) == dt.date(2026, 11, 25)
    assert calendar.last_closed_session("XNYS", thanksgiving) == dt.date(2026, 11, 25)
