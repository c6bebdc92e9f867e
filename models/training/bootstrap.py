"""Moving-block bootstrap over sessions, for metrics of windows whose labels overlap.

Windows that end on nearby sessions share most of their label horizon, and tickers move together,
so windows are not independent draws. Resampling whole blocks of consecutive sessions, each session
with every ticker's windows of that day, keeps both dependences inside a block; the spread of a
metric over the resamples is then an honest measure of its sampling noise.

Everything here is numpy: a resample is a vector of how often each session was drawn, and a metric
of a resample is a weighted sum over sessions (one matrix product for all resamples at once).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from models.training.metrics import K


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap bounds.

    `lower` is the one-sided lower bound at `confidence` (the (1 - confidence) quantile of the
    resamples), `upper` the one-sided upper bound (the confidence quantile); together they form a
    two-sided interval at 2 * confidence - 1.
    """

    estimate: float
    lower: float
    upper: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def default_block(horizon: int, sessions: int) -> int:
    """max(2 x horizon, cube root of the number of sessions): at least the label overlap, and growing
    slowly with the sample as the moving-block bootstrap's block should."""
    return max(2 * horizon, math.ceil(sessions ** (1 / 3)))


def block_weights(sessions: int, block: int, samples: int, seed: int) -> np.ndarray:
    """How often each session is drawn in each resample: [samples, sessions] integer counts.

    Each resample concatenates ceil(sessions / block) blocks of `block` consecutive sessions, with
    uniformly drawn starts, cut to `sessions` sessions.

    Raises:
        ValueError: fewer than two blocks' worth of sessions (no resampling is possible).
    """
    if sessions < 2 * block:
        raise ValueError(
            f"{sessions} sessions are fewer than two bootstrap blocks of {block}: too few to judge"
        )
    rng = np.random.default_rng(seed)
    n_blocks = math.ceil(sessions / block)
    starts = rng.integers(0, sessions - block + 1, size=(samples, n_blocks))
    drawn = (starts[:, :, None] + np.arange(block)).reshape(samples, -1)[:, :sessions]
    flat = drawn + (np.arange(samples) * sessions)[:, None]
    return np.bincount(flat.ravel(), minlength=samples * sessions).reshape(samples, sessions)


def session_index(dates: np.ndarray) -> tuple[np.ndarray, int]:
    """Each window's session number (0.. in date order) and the number of sessions."""
    unique, inverse = np.unique(dates, return_inverse=True)
    return inverse, len(unique)


def per_session(values: np.ndarray, session: np.ndarray, n_sessions: int) -> np.ndarray:
    """Sum of `values` (shape [windows] or [windows, m]) per session: [sessions] or [sessions, m]."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return np.bincount(session, weights=values, minlength=n_sessions)
    return np.stack(
        [np.bincount(session, weights=values[:, j], minlength=n_sessions) for j in range(values.shape[1])],
        axis=1,
    )


def balanced_accuracy_replicates(
    labels: np.ndarray, correct: np.ndarray, session: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Balanced accuracy of every resample: the mean over classes present in it of the (expected)
    share of that class's windows called correctly.

    Args:
        labels: True class of each window.
        correct: 1/0 for a hard prediction, or the probability given to the true class.
        session: Session number of each window.
        weights: `block_weights(...)`, [samples, sessions].
    """
    n_sessions = weights.shape[1]
    onehot = np.eye(K)[labels.astype(np.int64)]
    counts = weights @ per_session(onehot, session, n_sessions)  # [samples, K]
    hits = weights @ per_session(onehot * correct[:, None], session, n_sessions)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, hits / counts, np.nan)
    return np.nanmean(recall, axis=1)


def ratio_replicates(
    numerator: np.ndarray, denominator: np.ndarray, session: np.ndarray, weights: np.ndarray
):
    """sum(numerator) / sum(denominator) over the windows of every resample (NaN where empty)."""
    n_sessions = weights.shape[1]
    top = weights @ per_session(numerator, session, n_sessions)
    bottom = weights @ per_session(denominator, session, n_sessions)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def interval(estimate: float, replicates: np.ndarray, confidence: float) -> Interval:
    """Percentile bounds of the resamples around a point estimate (NaN resamples are dropped)."""
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return Interval(float(estimate), float("nan"), float("nan"), confidence)
    lower, upper = np.quantile(finite, [1 - confidence, confidence])
    return Interval(float(estimate), float(lower), float(upper), confidence)


def effective_windows(correct: np.ndarray, session: np.ndarray, weights: np.ndarray) -> float:
    """How many independent windows the sample is worth: N x (iid variance of the mean hit rate) /
    (its block-bootstrap variance), between 1 and N."""
    n = len(correct)
    p = float(np.mean(correct))
    iid = p * (1 - p) / n
    replicates = ratio_replicates(correct, np.ones(n), session, weights)
    block = float(np.nanvar(replicates))
    if iid <= 0 or block <= 0:
        return float(n)
    return float(min(n, max(1.0, n * iid / block)))
