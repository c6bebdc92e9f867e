"""Is there anything new to train on? The exchange calendar and the champion's fingerprint decide.

Both checks are cheap (a calendar lookup, the stored dates, one manifest) and import no TensorFlow,
so a nightly run with nothing to do ends in seconds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from models.config import PipelineConfig, SourceConfig
from models.prices import calendar, store
from models.prices.store import PriceColumns

PUBLISHING_ONLY = ("registry",)  # PipelineConfig sections that never change what is trained


def no_session_reason(source: SourceConfig, home: Path, now: pd.Timestamp) -> str | None:
    """Why there is no new session to load at `now`, or None when there is one.

    There is none when today, in the exchange's own timezone, is not a session (a weekend or a
    holiday), or when every ticker of the universe is already stored up to the last closed session.

    Args:
        source: The universe and its exchange.
        home: Data home holding the price store.
        now: The time to judge at (tz-aware; a naive one is taken as UTC).
    """
    now = now.tz_localize("UTC") if now.tzinfo is None else now
    exchange_tz = calendar.get_calendar(source.exchange).tz
    today = now.tz_convert(exchange_tz).date()
    if not calendar.is_session(source.exchange, today):
        return f"no session: {today:%A %Y-%m-%d} is not a {source.exchange} trading day"
    last_closed = calendar.last_closed_session(source.exchange, now)
    stored = [store.last_stored_date(home, t) for t in source.tickers]
    if all(day is not None and day >= last_closed for day in stored):
        return (
            f"no session: no {source.exchange} session closed since {last_closed}, "
            f"the last one stored for all {len(stored)} tickers"
        )
    return None


def stored_prices(home: Path, tickers: list[str], start: dt.date, end: dt.date) -> dict[str, PriceColumns]:
    """The stored prices of `tickers` from `start` to `end`: exactly what a run's dataset is built from."""
    return {ticker: store.read_columns(home, ticker, start, end) for ticker in tickers}


def unchanged_since(champion_manifest: dict, fingerprint: str, config: PipelineConfig) -> bool:
    """True when the champion was trained on this very dataset with this very configuration."""

    # The data fingerprint covers prices, source and dataset settings but not the model or training
    # settings, so a changed model config must still retrain: compare the config too, except what
    # only governs publishing (retention, smoke test) and cannot change the trained model.
    def training_relevant(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in PUBLISHING_ONLY}

    stored = champion_manifest.get("config") or {}
    return champion_manifest.get("data_fingerprint") == fingerprint and training_relevant(
        stored
    ) == training_relevant(config.model_dump(mode="json"))
