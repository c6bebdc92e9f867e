"""Direction labels from forward returns: down / range_bound / up, in that fixed class order."""

from __future__ import annotations

import numpy as np

from models.config import CLASS_NAMES

DOWN, RANGE_BOUND, UP = (CLASS_NAMES.index(n) for n in ("down", "range_bound", "up"))
UNLABELLED = -1


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
    prices = np.asarray(adj_close, dtype=np.float64)
    forward = np.full(prices.shape, np.nan)
    if len(prices) > horizon:
        forward[:-horizon] = prices[horizon:] / prices[:-horizon] - 1.0
    labels = np.full(prices.shape, UNLABELLED, dtype=np.int8)
    known = ~np.isnan(forward)
    labels[known] = RANGE_BOUND
    labels[known & (forward > theta)] = UP
    labels[known & (forward < -theta)] = DOWN
    return labels, forward


def class_shares(labels: np.ndarray) -> dict[str, float]:
    """Share of each class among labelled entries, keyed by class name."""
    labels = labels[labels >= 0]
    total = max(len(labels), 1)
    return {name: float((labels == i).sum() / total) for i, name in enumerate(CLASS_NAMES)}
