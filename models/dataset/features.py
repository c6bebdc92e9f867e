"""Named features, computed per ticker from its own prices only, using data up to each day.

Every feature at day t is a function of rows <= t (a test mutates the future and checks). Rows
without enough history for every selected feature (the warm-up) are dropped, never filled.
Features are numpy functions of a ticker's price columns: the dataset build is dominated by them.

Missing sessions: a look-back counts rows, so it must never reach across a session the exchange
held and the data lacks (a "1-day" return over a gap spans several sessions). `segmented_features`
cuts a ticker's rows at every gap and computes each gap-free run on its own, each with its warm-up.

Zero volume: a session with volume 0 on a ticker that trades (index data has such prints) is a
session without a volume print, not a collapse of trading to nothing: `traded_volume` carries the
last traded volume over it, so `log_volume_change` is 0 there instead of -log(volume) (about -20,
or 100+ standard deviations). The same function serves training and prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.prices import calendar
from models.prices.store import PRICE_COLUMNS, PriceColumns

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


def traded_volume(volume: np.ndarray) -> np.ndarray:
    """Volume with each zero print replaced by the last non-zero one; NaN before the first."""
    volume = np.asarray(volume, dtype=np.float64)
    traded = volume > 0
    last = np.where(traded, np.arange(len(volume)), -1)
    np.maximum.accumulate(last, out=last)
    return np.where(last >= 0, volume[np.maximum(last, 0)], np.nan)


def _log_volume_change(p: PriceColumns) -> np.ndarray:
    logged = np.log1p(traded_volume(p.volume))
    change = logged - _shift(logged, 1)
    # No traded volume yet on either side (a run of leading zeros): no change, not a missing value.
    change = np.where(np.isnan(change), 0.0, change)
    if len(change):
        change[0] = np.nan  # the first row has no previous row: warm-up
    return change


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


@dataclass(frozen=True)
class SegmentedFeatures:
    """Features of one ticker computed per gap-free run, each run's warm-up dropped.

    Attributes:
        rows: Index into the ticker's price rows of each matrix row.
        matrix: [len(rows), features], all finite.
        segment: Run id of each matrix row (0, 1, ...); rows of one run are consecutive sessions.
        position: Position of each matrix row among its run's kept rows (0 = first after warm-up).
        bounds: (first, stop) price rows of each run, in order.
        missing_sessions: Sessions of the exchange missing between the first and last row.
    """

    rows: np.ndarray
    matrix: np.ndarray
    segment: np.ndarray
    position: np.ndarray
    bounds: tuple[tuple[int, int], ...]
    missing_sessions: int


def segmented_features(
    prices: PriceColumns, names: tuple[str, ...], exchange: str | None
) -> SegmentedFeatures:
    """`feature_matrix` over each gap-free run of `prices` (see `gap_segments`), concatenated.

    Raises:
        ValueError: a feature is not finite after a run's warm-up, or a date is not a session.
    """
    n = len(prices)
    if exchange is None or n == 0:
        positions = np.arange(n, dtype=np.int64)
    else:
        positions = calendar.session_positions(exchange, prices.date)
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    stops = np.concatenate([breaks, [n]]).astype(np.int64)
    rows, parts, segment, position = [], [], [], []
    for k, (a, b) in enumerate(zip(starts, stops, strict=True)):
        if b <= a:
            continue
        part = PriceColumns(**{f: prices[f][a:b] for f in ("date", *PRICE_COLUMNS)})
        first, matrix = feature_matrix(part, names)
        rows.append(np.arange(a + first, b, dtype=np.int64))
        parts.append(matrix)
        segment.append(np.full(len(matrix), k, dtype=np.int64))
        position.append(np.arange(len(matrix), dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    return SegmentedFeatures(
        rows=np.concatenate(rows) if rows else empty,
        matrix=np.concatenate(parts) if parts else np.zeros((0, len(names))),
        segment=np.concatenate(segment) if segment else empty,
        position=np.concatenate(position) if position else empty,
        bounds=tuple((int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b > a),
        missing_sessions=int(positions[-1] - positions[0] + 1 - n) if n else 0,
    )


def compute_features(
    prices: pd.DataFrame, names: tuple[str, ...], exchange: str | None = None
) -> pd.DataFrame:
    """Features of one ticker's prices (sorted by date) as a frame, warm-up rows dropped.

    With `exchange`, features are computed per gap-free run of sessions (see `segmented_features`).

    Returns:
        `date`, `adj_close` and one float64 column per feature, in `names` order, then `segment`
        and `position` (run id and position in the run) when `exchange` is given.
    """
    prices = prices.reset_index(drop=True)
    found = segmented_features(PriceColumns.from_frame(prices), names, exchange)
    out = pd.DataFrame(found.matrix, columns=list(names))
    out.insert(0, "adj_close", prices["adj_close"].to_numpy()[found.rows])
    out.insert(0, "date", prices["date"].to_numpy()[found.rows])
    if exchange is not None:
        out["segment"] = found.segment
        out["position"] = found.position
    return out
