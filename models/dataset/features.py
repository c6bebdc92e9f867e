"""Named features, computed per ticker from its own prices only, using data up to each day.

Every feature at day t is a function of rows <= t (a test mutates the future and checks). Rows
without enough history for every selected feature (the warm-up) are dropped, never filled.
Features are numpy functions of a ticker's price columns: the dataset build is dominated by them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from models.prices.store import PriceColumns

FeatureFn = Callable[[PriceColumns], np.ndarray]


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) > k:
        out[k:] = x[:-k]
    return out


def _window_sums(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of x and x² over each trailing window (O(n) with cumulative sums), and a mask of the
    windows that hold a NaN (those yield NaN, as in pandas' rolling)."""
    missing = np.isnan(x)
    clean = np.where(missing, 0.0, x)
    c1 = np.concatenate([[0.0], np.cumsum(clean)])
    c2 = np.concatenate([[0.0], np.cumsum(clean * clean)])
    cn = np.concatenate([[0], np.cumsum(missing)])
    return c1[window:] - c1[:-window], c2[window:] - c2[:-window], (cn[window:] - cn[:-window]) > 0


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        s1, _, bad = _window_sums(x, window)
        out[window - 1 :] = np.where(bad, np.nan, s1 / window)
    return out


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Sample std (ddof=1) of each trailing window; NaN until a full window exists."""
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        s1, s2, bad = _window_sums(x, window)
        var = np.maximum((s2 - s1 * s1 / window) / (window - 1), 0.0)  # rounding can dip below 0
        out[window - 1 :] = np.where(bad, np.nan, np.sqrt(var))
    return out


def _log_return(p: PriceColumns) -> np.ndarray:
    return np.log(p.adj_close) - np.log(_shift(p.adj_close, 1))


def _intraday_range(p: PriceColumns) -> np.ndarray:
    return (p.high - p.low) / p.close


def _close_location(p: PriceColumns) -> np.ndarray:
    span = p.high - p.low
    # A day with high == low has no range to be located in: call it the middle.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (p.close - p.low) / span, 0.5)


def _gap(p: PriceColumns) -> np.ndarray:
    # open/close are unadjusted: scale by the adjustment factor so a split is not a gap.
    factor = p.adj_close / p.close
    return np.log(p.open * factor) - np.log(_shift(p.close * factor, 1))


def _log_volume_change(p: PriceColumns) -> np.ndarray:
    logged = np.log1p(p.volume)
    return logged - _shift(logged, 1)


def _volatility_20(p: PriceColumns) -> np.ndarray:
    return _rolling_std(_log_return(p), 20)


def _momentum_20(p: PriceColumns) -> np.ndarray:
    return np.log(p.adj_close) - np.log(_shift(p.adj_close, 20))


def _rsi_14(p: PriceColumns) -> np.ndarray:
    change = p.adj_close - _shift(p.adj_close, 1)
    gain = _rolling_mean(np.clip(change, 0, None), 14)
    loss = _rolling_mean(np.clip(-change, 0, None), 14)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        # A flat fortnight (no gain, no loss) is neutral, 0.5; the warm-up stays NaN.
        return np.where(np.isnan(total), np.nan, np.where(total > 0, gain / total, 0.5))


def _weekday(day: int) -> FeatureFn:
    def feature(p: PriceColumns) -> np.ndarray:
        days = p.date.astype("datetime64[D]").astype(np.int64)
        return (((days + 3) % 7) == day).astype(np.float64)  # 1970-01-01 was a Thursday (3)

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


def feature_matrix(prices: PriceColumns, names: tuple[str, ...]) -> tuple[int, np.ndarray]:
    """The features of one ticker as a [rows, features] matrix, warm-up rows dropped.

    Args:
        prices: One ticker's prices, sorted by date.
        names: Ordered feature names from FEATURES.

    Returns:
        (first_row, matrix): the matrix holds rows first_row.. of `prices`, all finite.

    Raises:
        ValueError: a feature is not finite after the warm-up (bad data must not vanish silently).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.column_stack([np.asarray(FEATURES[n](prices), dtype=np.float64) for n in names])
    finite = np.isfinite(matrix).all(axis=1)
    first = int(np.argmax(finite)) if finite.any() else len(matrix)
    later_bad = ~finite[first:]
    if later_bad.any():
        i = first + int(np.argmax(later_bad))
        column = next(n for j, n in enumerate(names) if not np.isfinite(matrix[i, j]))
        raise ValueError(f"feature {column!r} is not finite on {str(prices.date[i])[:10]}")
    return first, matrix[first:]


def compute_features(prices: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Features of one ticker's prices (sorted by date) as a frame, warm-up rows dropped.

    Returns:
        `date`, `adj_close` and one float64 column per feature, in `names` order.
    """
    prices = prices.reset_index(drop=True)
    first, matrix = feature_matrix(PriceColumns.from_frame(prices), names)
    out = pd.DataFrame(matrix, columns=list(names))
    out.insert(0, "adj_close", prices["adj_close"].to_numpy()[first:])
    out.insert(0, "date", prices["date"].to_numpy()[first:])
    return out
