"""The built-in sample market: SYNTHETIC daily prices for offline demos, tests and benchmarks.

Nothing here is real market data. Each ticker's prices are a seeded random walk on real exchange
sessions. In the `signal` variant the walk's drift follows a hidden, persistent regime (bear, flat, bull;
a regime lasts ~200 sessions on average), so the direction of the next days is partly predictable from
the last ones: a planted, learnable signal. The `noise` variant is a pure random walk with no drift, a
negative control on which no model should beat the baselines.

Values on a given session depend only on (seed, ticker, variant) and that session, never on the end
date asked for, so the market grows by one day each trading day like a real feed and is identical on
every machine for an explicit end date.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Literal

import numpy as np
import pandas as pd

from models.prices import calendar

SAMPLE_SOURCE_NAME = "sample"
SYNTHETIC_NOTICE = (
    "SYNTHETIC sample market: seeded random walks with planted momentum regimes, not real prices"
)
# Every series starts here, so a session's values do not depend on the requested start.
ORIGIN = dt.date(2000, 1, 3)
REGIME_DRIFT = np.array([-0.004, 0.0, 0.004])  # bear, flat, bull: daily log-drift
REGIME_STAY = 0.995

Variant = Literal["signal", "noise"]


def _streams(seed: int, ticker: str, variant: Variant) -> list[np.random.Generator]:
    """Independent generators, one per random quantity, so each is a stable prefix in time."""
    key = [seed, zlib.crc32(ticker.encode()), 0 if variant == "signal" else 1]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(key).spawn(7)]


def generate(
    ticker: str,
    end: dt.date,
    *,
    start: dt.date = ORIGIN,
    seed: int = 7,
    variant: Variant = "signal",
    exchange: str = "XNYS",
) -> pd.DataFrame:
    """Synthetic daily OHLCV for one ticker on the exchange's sessions from `start` to `end`.

    Args:
        ticker: Symbol; it seeds the series, so different tickers get different paths.
        end: Last session (inclusive).
        start: First session returned (the series itself always starts at ORIGIN).
        seed: Market seed.
        variant: "signal" (persistent drift regimes) or "noise" (driftless random walk).
        exchange: Calendar whose sessions the series lives on.

    Returns:
        Columns date, open, high, low, close, adj_close, volume; one row per session.
    """
    days = calendar.sessions(exchange, ORIGIN, end)
    n = len(days)
    regime_rng, jump_rng, ret_rng, open_rng, high_rng, low_rng, vol_rng = _streams(seed, ticker, variant)
    profile = np.random.default_rng([seed, zlib.crc32(ticker.encode()), 99])
    sigma = profile.uniform(0.010, 0.018)
    base_price = profile.uniform(20, 300)
    base_volume = profile.uniform(2e5, 5e6)

    if variant == "signal":
        switches = regime_rng.random(n) > REGIME_STAY
        jumps = jump_rng.integers(1, 3, size=n)  # move to one of the two other regimes
        regime = np.empty(n, dtype=np.int64)
        state = 1
        for i in range(n):
            if switches[i]:
                state = (state + jumps[i]) % 3
            regime[i] = state
        drift = REGIME_DRIFT[regime]
    else:
        drift = np.zeros(n)

    returns = drift + sigma * ret_rng.standard_normal(n)
    log_close = np.log(base_price) + np.cumsum(returns)
    close = np.exp(log_close)
    prev_close = np.concatenate([[close[0] * np.exp(-returns[0])], close[:-1]])
    open_ = prev_close * np.exp(0.3 * sigma * open_rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(np.abs(0.5 * sigma * high_rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.5 * sigma * low_rng.standard_normal(n)))
    volume = np.round(base_volume * np.exp(0.3 * vol_rng.standard_normal(n) + 20 * np.abs(returns)))

    frame = pd.DataFrame(
        {
            "date": days,
            "open": open_.round(4),
            "high": high.round(4),
            "low": low.round(4),
            "close": close.round(4),
            "adj_close": close.round(4),
            "volume": volume.astype(np.int64),
        }
    )
    return frame.loc[frame["date"] >= pd.Timestamp(start)].reset_index(drop=True)
