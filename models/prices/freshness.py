"""Is there anything new to train on? The exchange calendar and the registry's fingerprints decide.

Both checks are cheap (a calendar lookup, the stored dates, a few manifests) and import no TensorFlow,
so a nightly run with nothing to do ends in seconds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from models.config import PipelineConfig, SourceConfig
from models.prices import calendar, sources, store
from models.prices.store import PriceColumns

# PipelineConfig sections that never change what is trained: publishing and the nightly monitoring.
PUBLISHING_ONLY = ("registry", "monitoring")


def no_session_reason(source: SourceConfig, home: Path, now: pd.Timestamp) -> str | None:
    """Why there is no new session to load at `now`, or None when there is one.

    There is none when today, in the exchange's own timezone, is not a session (a weekend or a
    holiday), or when every ticker of the universe is already stored (from this source) up to the
    last closed session, or up to the configured `end` when that is earlier (historical mode).

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
    label = sources.source_label(source)
    stored = [store.last_stored_date(home, t, source=label) for t in source.tickers]
    if source.end is not None and source.end < last_closed:
        if all(day is not None and day >= source.end for day in stored):
            return (
                f"no session: all {len(stored)} tickers are stored up to {source.end}, "
                "the configured end (historical mode)"
            )
        return None
    if all(day is not None and day >= last_closed for day in stored):
        return (
            f"no session: no {source.exchange} session closed since {last_closed}, "
            f"the last one stored for all {len(stored)} tickers"
        )
    return None


def stored_prices(
    source: SourceConfig, home: Path, tickers: list[str], end: dt.date
) -> dict[str, PriceColumns]:
    """The prices of `tickers` stored from `source`, `source.start` to `end`: exactly what a run's
    dataset is built from (a narrower start than the store's reads a subset)."""
    label = sources.source_label(source)
    return {t: store.read_columns(home, t, source.start, end, source=label) for t in tickers}


def unchanged_since(champion_manifest: dict, fingerprint: str, config: PipelineConfig) -> bool:
    """True when the version was trained on this very dataset with this very configuration."""

    # The data fingerprint covers prices, source and dataset settings but not the model or training
    # settings, so a changed model config must still retrain: compare the config too, except what
    # only governs publishing (retention, smoke test) and cannot change the trained model.
    def training_relevant(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in PUBLISHING_ONLY}

    stored = champion_manifest.get("config") or {}
    return champion_manifest.get("data_fingerprint") == fingerprint and training_relevant(
        stored
    ) == training_relevant(config.model_dump(mode="json"))


def rejected_on_same_data(
    manifests: list[tuple[int, dict]], fingerprint: str, config: PipelineConfig
) -> tuple[int, list[str]] | None:
    """The newest rejected version trained on this very dataset and configuration, with its reasons.

    Args:
        manifests: (version, manifest) pairs of the model's versions, in any order.
        fingerprint: The dataset fingerprint this run would train on.
        config: This run's configuration.

    Returns:
        (version, gate reasons), or None when no rejected version matches.
    """
    for version, manifest in sorted(manifests, key=lambda pair: pair[0], reverse=True):
        gate = manifest.get("gate") or {}
        if gate.get("verdict") == "rejected" and unchanged_since(manifest, fingerprint, config):
            return version, list(gate.get("reasons") or [])
    return None
