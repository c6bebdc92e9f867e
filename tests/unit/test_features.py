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
