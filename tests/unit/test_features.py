import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.dataset.features import FEATURES, compute_features
from models.prices import sample

ALL = tuple(FEATURES)


@pytest.fixture(scope="module")
def prices():
    return sample.generate("AAA", dt.date(2021, 12, 31), start=dt.date(2021, 1, 4))


@pytest.mark.parametrize("cut", [30, 100, 200])
def test_no_feature_looks_ahead(prices, cut):
    """Every feature at day t is unchanged when every price after t changes."""
    mutated = prices.copy()
    rng = np.random.default_rng(cut)
    later = mutated.index > cut
    for column in ("open", "high", "low", "close", "adj_close"):
        mutated.loc[later, column] *= rng.uniform(0.5, 1.5, later.sum())
    mutated.loc[later, "high"] = mutated.loc[later, ["open", "high", "low", "close"]].max(axis=1)
    mutated.loc[later, "low"] = mutated.loc[later, ["open", "high", "low", "close"]].min(axis=1)
    mutated.loc[later, "volume"] = rng.integers(1, 10**7, later.sum())
    a = compute_features(prices, ALL)
    b = compute_features(mutated, ALL)
    upto = a["date"] <= prices["date"].iloc[cut]
    pd.testing.assert_frame_equal(a[upto], b[upto])


def test_warm_up_rows_are_dropped_not_filled(prices):
    out = compute_features(prices, ("log_return", "momentum_20"))
    assert out["date"].iloc[0] == prices["date"].iloc[20]  # 20 sessions of history needed
    assert np.isfinite(out[["log_return", "momentum_20"]].to_numpy()).all()


def test_feature_order_is_the_requested_order(prices):
    out = compute_features(prices, ("rsi_14", "log_return", "dow_mon"))
    assert list(out.columns) == ["date", "adj_close", "rsi_14", "log_return", "dow_mon"]


def test_weekday_one_hot_sums_to_one(prices):
    days = [f"dow_{d}" for d in ("mon", "tue", "wed", "thu", "fri")]
    out = compute_features(prices, tuple(days))
    assert (out[days].sum(axis=1) == 1).all()


def test_a_split_is_not_a_gap():
    """open/close are unadjusted; the gap feature scales them by adj_close/close."""
    frame = pd.DataFrame(
        {
            "date": pd.bdate_range("2021-01-04", periods=3),
            "open": [100.0, 50.5, 51.0],
            "high": [101.0, 51.0, 52.0],
            "low": [99.0, 50.0, 50.0],
            "close": [100.0, 50.0, 51.0],
            "adj_close": [50.0, 50.0, 51.0],  # 2:1 split after day 0, history adjusted
            "volume": [1, 2, 3],
        }
    )
    gap = compute_features(frame, ("gap",))["gap"]
    assert gap.iloc[0] == pytest.approx(np.log(50.5 / 50.0))


def test_a_nan_after_warm_up_is_an_error_naming_feature_and_date(prices):
    broken = prices.copy()
    broken.loc[50, "adj_close"] = np.nan
    with pytest.raises(ValueError, match="log_return.*2021-03"):
        compute_features(broken, ("log_return",))


def test_numpy_features_match_a_pandas_reference(prices):
    p = prices.reset_index(drop=True)
    log_return = np.log(p["adj_close"]).diff()
    change = p["adj_close"].diff()
    gain = change.clip(lower=0).rolling(14).mean()
    loss = (-change.clip(upper=0)).rolling(14).mean()
    reference = pd.DataFrame(
        {
            "log_return": log_return,
            "volatility_20": log_return.rolling(20).std(),
            "momentum_20": np.log(p["adj_close"] / p["adj_close"].shift(20)),
            "rsi_14": gain / (gain + loss),
            "log_volume_change": np.log1p(p["volume"].astype(float)).diff(),
            "dow_wed": (p["date"].dt.dayofweek == 2).astype(float),
        }
    ).dropna()
    ours = compute_features(p, tuple(reference.columns)).set_index("date")
    expected = reference.set_index(p["date"][reference.index])
    pd.testing.assert_frame_equal(ours[reference.columns], expected, check_names=False, rtol=1e-9)


def with_volume(prices: pd.DataFrame, volume: list[int]) -> pd.DataFrame:
    frame = prices.iloc[: len(volume)].reset_index(drop=True).copy()
    frame["volume"] = volume
    return frame


def test_a_zero_volume_print_is_missing_volume_not_a_collapse(prices):
    """Index data prints volume 0 on some sessions: the change is 0 that day, and the next day
    compares with the last traded volume, instead of -log(volume) = a 100-sigma input."""
    frame = with_volume(prices, [1000, 1000, 2000, 0, 0, 4000, 4000])
    change = compute_features(frame, ("log_volume_change",))["log_volume_change"].to_numpy()
    expected = [np.log1p(1000) - np.log1p(1000), np.log1p(2000) - np.log1p(1000), 0.0, 0.0]
    expected += [np.log1p(4000) - np.log1p(2000), 0.0]
    np.testing.assert_allclose(change, expected, atol=1e-12)
    assert (np.abs(change) < 1).all()


def test_volume_that_never_traded_gives_no_change(prices):
    """A ticker without volume (an index, a currency) or leading zeros: changes are 0, never NaN."""
    change = compute_features(with_volume(prices, [0, 0, 0, 500, 700]), ("log_volume_change",))
    np.testing.assert_allclose(change["log_volume_change"], [0.0, 0.0, 0.0, np.log1p(700) - np.log1p(500)])
    always = compute_features(with_volume(prices, [0] * 6), ("log_volume_change",))
    assert (always["log_volume_change"] == 0).all() and len(always) == 5


def test_features_restart_after_a_missing_session(prices):
    """With the exchange given, no look-back reaches across a gap: the run after it warms up anew."""
    gapped = prices.drop(index=[60]).reset_index(drop=True)  # one session missing
    names = ("log_return", "momentum_20")
    whole = compute_features(prices, names, "XNYS")
    cut = compute_features(gapped, names, "XNYS")
    assert list(cut["segment"].unique()) == [0, 1]
    after = cut[cut["segment"] == 1]
    # The first row after the gap with all features is 20 sessions after it (momentum_20's look-back).
    assert after["date"].iloc[0] == gapped["date"].iloc[60 + 20]
    assert (after["position"].to_numpy() == np.arange(len(after))).all()
    # Before the gap, and far enough after it, the values are those of the complete history.
    same = whole.set_index("date").loc[cut["date"]]
    np.testing.assert_allclose(cut[list(names)].to_numpy(), same[list(names)].to_numpy())
    # Without the exchange, rows are taken as consecutive: the return across the gap spans 2 sessions.
    naive = compute_features(gapped, names)
    across = naive.set_index("date").loc[gapped["date"].iloc[60], "log_return"]
    assert across == pytest.approx(np.log(gapped["adj_close"].iloc[60] / gapped["adj_close"].iloc[59]))
