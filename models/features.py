"""Named features, computed per ticker from its own prices only, using data up to each day.

Every feature at day t is a function of rows <= t (a test mutates the future and checks). Rows
without enough history for every selected feature (the warm-up) are dropped, never filled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

FeatureFn = Callable[[pd.DataFrame], pd.Series]


def _log_return(p: pd.DataFrame) -> pd.Series:
    return np.log(p["adj_close"]).diff()


def _intraday_range(p: pd.DataFrame) -> pd.Series:
    return (p["high"] - p["low"]) / p["close"]


def _close_location(p: pd.DataFrame) -> pd.Series:
    span = p["high"] - p["low"]
    # A day with high == low has no range to be located in: call it the middle.
    return ((p["close"] - p["low"]) / span.where(span > 0)).fillna(0.5)


def _gap(p: pd.DataFrame) -> pd.Series:
    # open/close are unadjusted: scale by the adjustment factor so a split is not a gap.
    factor = p["adj_close"] / p["close"]
    return np.log((p["open"] * factor) / (p["close"] * factor).shift(1))


def _log_volume_change(p: pd.DataFrame) -> pd.Series:
    return np.log1p(p["volume"].astype(float)).diff()


def _volatility_20(p: pd.DataFrame) -> pd.Series:
    return _log_return(p).rolling(20, min_periods=20).std()


def _momentum_20(p: pd.DataFrame) -> pd.Series:
    return np.log(p["adj_close"] / p["adj_close"].shift(20))


def _rsi_14(p: pd.DataFrame) -> pd.Series:
    change = p["adj_close"].diff()
    gain = change.clip(lower=0).rolling(14, min_periods=14).mean()
    loss = (-change.clip(upper=0)).rolling(14, min_periods=14).mean()
    total = gain + loss
    return (gain / total.where(total > 0)).fillna(0.5)


def _weekday(day: int) -> FeatureFn:
    def feature(p: pd.DataFrame) -> pd.Series:
        return pd.Series((pd.DatetimeIndex(p["date"]).dayofweek == day).astype(float), index=p.index)

    return feature


FEATURES: dict[str, FeatureFn] = {
    "log_return": _log_return,
    "intraday_range": _intraday_range,
    "close_location": _close_location,
    "gap": _gap,
    "log_volume_change": _log_volume_change,
    "volatility_20": _volatility_20,
    "momentum_20": _momentum_20,
    "rsi_14": _rsi_14,
    **{f"dow_{name}": _weekday(i) for i, name in enumerate(("mon", "tue", "wed", "thu", "fri"))},
}


def compute_features(prices: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Features of one ticker's prices (sorted by date), warm-up rows dropped.

    Args:
        prices: One ticker's rows in the store's schema, sorted by date.
        names: Ordered feature names from FEATURES.

    Returns:
        A frame with `date`, `adj_close` and one float64 column per feature, in `names` order,
        with only rows where every feature is finite.
    """
    prices = prices.reset_index(drop=True)
    out = pd.DataFrame({"date": prices["date"], "adj_close": prices["adj_close"]})
    for name in names:
        out[name] = FEATURES[name](prices).astype("float64")
    values = out[list(names)].to_numpy()
    finite = np.isfinite(values).all(axis=1)
    # Only leading rows may lack history; a NaN later on is bad data and must not vanish silently.
    first_complete = int(np.argmax(finite)) if finite.any() else len(out)
    later_bad = ~finite[first_complete:]
    if later_bad.any():
        i = first_complete + int(np.argmax(later_bad))
        column = next(n for n in names if not np.isfinite(out[n].iloc[i]))
        raise ValueError(f"feature {column!r} is not finite on {out['date'].iloc[i].date()}")
    return out.iloc[first_complete:].reset_index(drop=True)
