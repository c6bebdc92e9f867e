"""Drift: do the inputs the champion sees now look like the ones it was trained on?

Each night the features of the latest `monitoring.drift_sessions` sessions (every ticker of the
universe, computed by the same code as in training) are compared with the train rows' distribution
stored in the bundle's stats.parquet at training time, feature by feature:

- `mean_shift`: the recent mean in train standard deviations, (mean_recent - mean_train) / std_train
  (per-ticker stats: each row against its ticker's);
- `psi`: the population stability index sum((a - e) * ln(a / e)) over the train-fitted bins (the
  train deciles stored as `bin_edges`, `e` the train shares `bin_shares`, `a` the recent shares;
  both floored at 1e-4 so an empty bin counts without dividing by zero). Commonly read as < 0.1
  stable, 0.1-0.25 moderate, > 0.25 large.

A feature has drifted when its psi exceeds `monitoring.drift_psi` or |mean_shift| exceeds
`monitoring.drift_mean_shift`. Out-of-range inputs, rows with an input beyond
±`registry.out_of_range_z` train standard deviations (the predictor's flag), are counted per ticker.
Persistent features (20-session volatility and momentum) move with market regimes, so a regime
change shows as drift on them: that is the point, read with the scorecard.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from models.config import MonitoringConfig
from models.dataset.normalization import POOLED, bin_index
from models.monitoring.sessions import Champion, SessionRows

FLOOR = 1e-4


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of `actual` bin shares against `expected` ones."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), FLOOR)
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(
    champion: Champion,
    rows: SessionRows,
    monitoring: MonitoringConfig,
    bound: float,
    night: dt.date | None = None,
) -> dict:
    """Per-feature shift scores of the latest sessions against the train distribution, and the
    out-of-range inputs per ticker (see the module docstring).

    Returns:
        A JSON-able record: the sessions compared, one entry per feature (mean_shift, psi, drifted),
        `drifted` (the features over a threshold), `out_of_range` per ticker, and the thresholds.
    """
    stats = champion.stats
    dates = rows.dates
    if night is not None:
        keep = dates <= np.datetime64(pd.Timestamp(night), "ns")
    else:
        keep = np.ones(len(dates), dtype=bool)
    days = np.unique(dates[keep])[-monitoring.drift_sessions :]
    recent = keep & (dates >= days[0]) if len(days) else np.zeros(len(dates), dtype=bool)
    out: dict = {
        "model": champion.model,
        "version": champion.version,
        "sessions": int(len(days)),
        "first": str(pd.Timestamp(days[0]).date()) if len(days) else None,
        "last": str(pd.Timestamp(days[-1]).date()) if len(days) else None,
        "rows": int(recent.sum()),
        "thresholds": {"psi": monitoring.drift_psi, "mean_shift": monitoring.drift_mean_shift},
        "out_of_range_z": bound,
        "features": [],
        "drifted": [],
        "out_of_range": {},
        "bins": bool(stats.bins),
    }
    if not recent.any():
        return out
    raw = rows.raw[recent]
    names = rows.names[recent]
    scopes = np.full(len(raw), POOLED, dtype=object) if stats.pooled else names
    mean = _per_row(stats, stats.mean, scopes)
    std = _per_row(stats, stats.std, scopes)
    shifted = (raw - mean) / std
    for j, feature in enumerate(stats.features):
        entry = {"feature": feature, "mean_shift": float(shifted[:, j].mean()), "psi": None}
        if stats.bins:
            entry["psi"] = _psi_of(stats, feature, raw[:, j], scopes)
        entry["drifted"] = bool(
            abs(entry["mean_shift"]) > monitoring.drift_mean_shift
            or (entry["psi"] is not None and entry["psi"] > monitoring.drift_psi)
        )
        out["features"].append(entry)
    out["drifted"] = [e["feature"] for e in out["features"] if e["drifted"]]
    z = np.abs(stats.zscores(raw, None if stats.pooled else names))
    beyond = z > bound
    for ticker in sorted(set(names)):
        mine = names == ticker
        flagged = beyond[mine].any(axis=1)
        if flagged.any():
            out["out_of_range"][str(ticker)] = {
                "rows": int(flagged.sum()),
                "of": int(mine.sum()),
                "features": [f for j, f in enumerate(stats.features) if beyond[mine][:, j].any()],
                "max_abs_z": round(float(z[mine].max()), 3),
            }
    return out


def _per_row(stats, values: np.ndarray, scopes: np.ndarray) -> np.ndarray:
    if stats.pooled:
        return np.broadcast_to(np.asarray(values, dtype=np.float64), (len(scopes), len(stats.features)))
    index = np.asarray([stats.scopes.index(s) for s in scopes])
    return np.asarray(values, dtype=np.float64)[index]


def _psi_of(stats, feature: str, values: np.ndarray, scopes: np.ndarray) -> float | None:
    """PSI of one feature; per-ticker stats mix each scope's bins, weighted by its recent rows."""
    actual, expected, total = None, None, 0
    for scope in sorted(set(scopes)):
        bins = stats.bins.get((scope, feature))
        if bins is None:
            return None
        edges, shares = bins
        mine = values[scopes == scope]
        counts = np.bincount(bin_index(edges, mine), minlength=len(shares)).astype(np.float64)
        if actual is None:
            actual, expected = np.zeros(len(shares)), np.zeros(len(shares))
        if len(shares) != len(actual):  # per-ticker bins of different lengths: pad to the longest
            size = max(len(shares), len(actual))
            actual, expected = (
                np.pad(actual, (0, size - len(actual))),
                np.pad(expected, (0, size - len(expected))),
            )
            counts, shares = np.pad(counts, (0, size - len(counts))), np.pad(shares, (0, size - len(shares)))
        actual += counts
        expected += shares * len(mine)
        total += len(mine)
    if not total:
        return None
    return psi(actual / total, expected / total)
