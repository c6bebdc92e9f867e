import datetime as dt

import numpy as np
import pandas as pd
import pytest

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


# adj_close of AAA on 2020-01-02 in the noise variant, as generated before `volatility` was added.
NOISE_AAA_2020_01_02 = 423.3153


def momentum_correlations(
    variant: str, signal_until: dt.date | None = None, since: dt.date | None = None
) -> tuple[float, float]:
    """Correlation of the past 20 days' return with the next 5 days', on calm and on turbulent days
    (split at the top third of trailing 20-day volatility, which the features can see)."""
    past, future, vol = [], [], []
    for t in ("AAA", "BBB", "CCC", "DDD"):
        frame = sample.generate(t, dt.date(2024, 12, 31), variant=variant, signal_until=signal_until)
        if since is not None:
            frame = frame.loc[frame["date"] > pd.Timestamp(since)]
        c = np.log(frame["adj_close"].to_numpy())
        r = np.diff(c)
        past.append(c[20:-5] - c[:-25])
        future.append(c[25:] - c[20:-5])
        vol.append(np.lib.stride_tricks.sliding_window_view(r, 20).std(axis=1)[: len(c) - 25])
    p, f, v = (np.concatenate(x) for x in (past, future, vol))
    turbulent = v > np.quantile(v, 2 / 3)
    return (
        float(np.corrcoef(p[~turbulent], f[~turbulent])[0, 1]),
        float(np.corrcoef(p[turbulent], f[turbulent])[0, 1]),
    )


def test_signal_variant_trends_when_calm_and_reverses_when_turbulent():
    """The planted signal is nonlinear: its sign depends on the volatility regime."""
    calm, turbulent = momentum_correlations("signal")
    assert calm > 0.3 and turbulent < -0.1


@pytest.mark.parametrize("variant", ["volatility", "noise"])
def test_negative_controls_have_no_momentum_in_either_regime(variant):
    calm, turbulent = momentum_correlations(variant)
    assert abs(calm) < 0.06 and abs(turbulent) < 0.06


def test_a_switched_off_signal_keeps_the_past_and_loses_its_direction_after():
    """`signal_until`: the signal market up to that session, no direction after it (the scorecard's
    control for a champion that goes stale)."""
    until = dt.date(2016, 12, 30)
    plain = sample.generate("AAA", dt.date(2024, 12, 31))
    switched = sample.generate("AAA", dt.date(2024, 12, 31), signal_until=until)
    before = plain["date"] <= pd.Timestamp(until)
    pd.testing.assert_frame_equal(plain.loc[before], switched.loc[before])
    assert (plain.loc[~before, "adj_close"] != switched.loc[~before, "adj_close"]).all()
    calm, turbulent = momentum_correlations("signal", signal_until=until, since=until)
    assert abs(calm) < 0.06 and abs(turbulent) < 0.06
    calm, turbulent = momentum_correlations("signal", since=until)  # the plain market keeps it
    assert calm > 0.3 and turbulent < -0.1
    with pytest.raises(ValueError, match="signal variant only"):
        sample.generate("AAA", dt.date(2020, 1, 31), variant="noise", signal_until=until)


def test_volatility_variant_clusters_and_noise_does_not():
    def vol_of_vol(variant: str) -> float:
        r = np.diff(np.log(sample.generate("AAA", dt.date(2024, 12, 31), variant=variant)["adj_close"]))
        vol = np.lib.stride_tricks.sliding_window_view(r, 20).std(axis=1)
        return float(vol.std() / vol.mean())

    assert vol_of_vol("volatility") > 2 * vol_of_vol("noise")


def test_noise_variant_is_unchanged_by_the_new_variants():
    """The noise control keeps its seeds: its prices are the ones it always had."""
    noise = sample.generate("AAA", dt.date(2020, 1, 31), start=dt.date(2020, 1, 2), variant="noise")
    assert noise["adj_close"].iloc[0] == pytest.approx(NOISE_AAA_2020_01_02, abs=1e-4)


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown sample variant 'trend'"):
        sample.generate("AAA", dt.date(2020, 1, 31), variant="trend")


def test_last_closed_session_respects_the_close():
    before_close = pd.Timestamp("2026-11-25 20:00", tz="UTC")  # 15:00 New York
    after_close = pd.Timestamp("2026-11-25 21:30", tz="UTC")
    thanksgiving = pd.Timestamp("2026-11-26 22:00", tz="UTC")
    assert calendar.last_closed_session("XNYS", before_close) == dt.date(2026, 11, 24)
    assert calendar.last_closed_session("XNYS", after_close) == dt.date(2026, 11, 25)
    assert calendar.last_closed_session("XNYS", thanksgiving) == dt.date(2026, 11, 25)
