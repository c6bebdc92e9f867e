"""The built-in sample market: SYNTHETIC daily prices for offline demos, tests and benchmarks.

Nothing here is real market data. Each ticker's prices are a seeded walk on real exchange sessions,
in one of three variants, each a control for the gate:

- `signal` (the positive control): a hidden, persistent volatility regime per ticker, calm (daily
  sigma s, two thirds of the time, ~200 sessions per spell) or turbulent (2 s, ~100 sessions per
  spell). The day's drift is `0.4 * sign * sigma_t * tanh(z)`, where z is the last 20 sessions' log
  return in units of sigma_t * sqrt(20) and sign is +1 when calm and -1 when turbulent: momentum
  persists in calm markets and reverses in turbulent ones. Which way the next days go therefore
  depends on the past window *nonlinearly* (the sign of the trend times the volatility regime). A
  model that reads the window can learn it. A linear model on the same window learns only part of it
  (the trend-following and the mean reversion pull a linear fit in opposite directions; what is left
  is a small net momentum, since calm trends feed on themselves and grow larger), and a rule on
  volatility alone predicts how far prices move but not which way. On the demo's market a
  LSTM(32) beats the linear model by ~0.04-0.05 balanced accuracy (see README, "The gate").
- `volatility`: the same volatility regimes with no drift at all: volatility clustering and nothing
  directional. A model can learn when moves are large (range_bound is rarer in turbulence) but not
  their sign, so it must not beat the volatility-regime baseline.
- `noise`: a driftless random walk with constant volatility: nothing to learn.

`signal_until` switches the planted signal off after a session: up to it the `signal` market is
unchanged (same regimes, same shocks, same prices), after it the drift is zero and the market is the
`volatility` one (regimes, no direction). A model trained before the switch goes stale after it:
the control for the live scorecard's `model.degraded` (see models.monitoring).

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
    "SYNTHETIC sample market: seeded random walks with planted volatility regimes and, in the "
    "`signal` variant, momentum that persists when calm and reverses when turbulent; not real prices"
)
# Every series starts here, so a session's values do not depend on the requested start.
ORIGIN = dt.date(2000, 1, 3)
CALM_STAY = 0.995  # a calm spell lasts ~200 sessions on average
TURBULENT_STAY = 0.99  # a turbulent spell ~100: calm two thirds of the time
TURBULENCE = 2.0  # turbulent sigma / calm sigma
# The drift at a strong trend (|z| >> 1), in units of the day's sigma: with the trend when calm,
# against it when turbulent.
TREND_STRENGTH = 0.4
REVERSAL_STRENGTH = 0.4
MOMENTUM_SESSIONS = 20

Variant = Literal["signal", "noise", "volatility"]
# The index seeds the variant's streams: `noise` keeps the seeds (and prices) it always had.
VARIANTS: tuple[str, ...] = ("signal", "noise", "volatility")


def _streams(seed: int, ticker: str, variant: Variant) -> list[np.random.Generator]:
    """Independent generators, one per random quantity, so each is a stable prefix in time."""
    key = [seed, zlib.crc32(ticker.encode()), VARIANTS.index(variant)]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(key).spawn(7)]


def volatility_regimes(switch_draws: np.ndarray) -> np.ndarray:
    """1 where turbulent, 0 where calm, from uniform draws (a two-state Markov chain starting calm)."""
    turbulent = np.zeros(len(switch_draws), dtype=np.int8)
    state = 0
    for i, u in enumerate(switch_draws):
        if u > (TURBULENT_STAY if state else CALM_STAY):
            state = 1 - state
        turbulent[i] = state
    return turbulent


def signal_returns(
    shocks: np.ndarray, sigma: np.ndarray, turbulent: np.ndarray, active: np.ndarray | None = None
) -> np.ndarray:
    """Daily log returns whose drift follows the trend when calm and fades it when turbulent.

    `active` (default: every session) marks the sessions that carry the drift; elsewhere a return is
    its shock alone.
    """
    n = len(shocks)
    returns = np.empty(n)
    strength = np.where(turbulent == 1, -REVERSAL_STRENGTH, TREND_STRENGTH)
    if active is not None:
        strength = np.where(active, strength, 0.0)
    trail = 0.0  # sum of the last MOMENTUM_SESSIONS returns
    for i in range(n):
        z = trail / (sigma[i] * np.sqrt(MOMENTUM_SESSIONS))
        returns[i] = strength[i] * sigma[i] * np.tanh(z) + sigma[i] * shocks[i]
        trail += returns[i]
        if i >= MOMENTUM_SESSIONS:
            trail -= returns[i - MOMENTUM_SESSIONS]
    return returns


def generate(
    ticker: str,
    end: dt.date,
    *,
    start: dt.date = ORIGIN,
    seed: int = 7,
    variant: Variant = "signal",
    exchange: str = "XNYS",
    signal_until: dt.date | None = None,
) -> pd.DataFrame:
    """Synthetic daily OHLCV for one ticker on the exchange's sessions from `start` to `end`.

    Args:
        ticker: Symbol; it seeds the series, so different tickers get different paths.
        end: Last session (inclusive).
        start: First session returned (the series itself always starts at ORIGIN).
        seed: Market seed.
        variant: "signal", "volatility" or "noise" (see the module docstring).
        exchange: Calendar whose sessions the series lives on.
        signal_until: For `signal`: the last session with the planted drift; later sessions keep
            the regimes and shocks but no drift (None: the signal never stops).

    Returns:
        Columns date, open, high, low, close, adj_close, volume; one row per session.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown sample variant {variant!r}; known: {', '.join(VARIANTS)}")
    if signal_until is not None and variant != "signal":
        raise ValueError(f"signal_until applies to the signal variant only, not {variant!r}")
    days = calendar.sessions(exchange, ORIGIN, end)
    n = len(days)
    regime_rng, _, ret_rng, open_rng, high_rng, low_rng, vol_rng = _streams(seed, ticker, variant)
    profile = np.random.default_rng([seed, zlib.crc32(ticker.encode()), 99])
    base_sigma = profile.uniform(0.010, 0.018)
    base_price = profile.uniform(20, 300)
    base_volume = profile.uniform(2e5, 5e6)

    shocks = ret_rng.standard_normal(n)
    if variant == "noise":
        sigma = np.full(n, base_sigma)
        returns = sigma * shocks
    else:
        turbulent = volatility_regimes(regime_rng.random(n))
        # The calm sigma is set so the average variance matches the noise variant's.
        calm = base_sigma / np.sqrt((2 + TURBULENCE**2) / 3)
        sigma = np.where(turbulent == 1, TURBULENCE * calm, calm)
        if variant == "signal":
            active = None if signal_until is None else days <= pd.Timestamp(signal_until)
            returns = signal_returns(shocks, sigma, turbulent, None if active is None else np.asarray(active))
        else:
            returns = sigma * shocks

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
