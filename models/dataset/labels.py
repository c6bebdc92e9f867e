"""Direction labels from forward returns: down / range_bound / up, in that fixed class order."""

from __future__ import annotations

import numpy as np

from models.config import CLASS_NAMES

DOWN, RANGE_BOUND, UP = (CLASS_NAMES.index(n) for n in ("down", "range_bound", "up"))
UNLABELLED = -1


def forward_returns(adj_close: np.ndarray, horizon: int) -> np.ndarray:
    """r[t] = adj_close[t+h] / adj_close[t] - 1 for ONE ticker; NaN for the last `horizon` days."""
    prices = np.asarray(adj_close, dtype=np.float64)
    forward = np.full(prices.shape, np.nan)
    if len(prices) > horizon:
        forward[:-horizon] = prices[horizon:] / prices[:-horizon] - 1.0
    return forward


def trailing_volatility(adj_close: np.ndarray, window: int) -> np.ndarray:
    """Std (ddof=1) of the last `window` daily log returns up to and including day t; NaN before.

    Uses prices up to t only, so a threshold scaled by it is known on the day the window ends.
    """
    prices = np.asarray(adj_close, dtype=np.float64)
    out = np.full(prices.shape, np.nan)
    returns = np.diff(np.log(prices))
    if len(returns) >= window:
        view = np.lib.stride_tricks.sliding_window_view(returns, window)
        out[window:] = view.std(axis=1, ddof=1)
    return out


def classify(forward: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """`up` if r > threshold, `down` if r < -threshold, else `range_bound`; -1 where either is NaN."""
    threshold = np.broadcast_to(np.asarray(threshold, dtype=np.float64), forward.shape)
    labels = np.full(forward.shape, UNLABELLED, dtype=np.int8)
    known = np.isfinite(forward) & np.isfinite(threshold)
    labels[known] = RANGE_BOUND
    labels[known & (forward > threshold)] = UP
    labels[known & (forward < -threshold)] = DOWN
    return labels


def balancing_scale(forward: np.ndarray, unit: np.ndarray) -> float:
    """The threshold scale that makes about a third of these windows range-bound.

    Fitted on TRAIN windows only (the caller passes only those): the 1/3 quantile of |r| / unit,
    so with the rest split by sign the classes come out near 1/3 each.
    """
    ratio = np.abs(forward) / unit
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio) == 0:
        raise ValueError("no labelled train windows to choose a balancing threshold from")
    return float(np.quantile(ratio, 1 / 3))


def forward_labels(adj_close: np.ndarray, horizon: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Label each day t of ONE ticker by r = adj_close[t+h] / adj_close[t] - 1.

    `up` if r > theta, `down` if r < -theta, else `range_bound`. The last `horizon` days have no
    known future and get UNLABELLED (-1) and a NaN return; they are never trained on.

    Args:
        adj_close: Adjusted closes of one ticker, in date order.
        horizon: Sessions ahead.
        theta: Threshold on the forward return (0.01 = 1 %).

    Returns:
        (labels as int8 in 0..2 or -1, forward returns as float64)
    """
    forward = forward_returns(adj_close, horizon)
    return classify(forward, theta), forward


def class_shares(labels: np.ndarray) -> dict[str, float]:
    """Share of each class among labelled entries, keyed by class name."""
    labels = labels[labels >= 0]
    total = max(len(labels), 1)
    return {name: float((labels == i).sum() / total) for i, name in enumerate(CLASS_NAMES)}
