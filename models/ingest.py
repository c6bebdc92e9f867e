"""Incremental ingestion of one ticker into the price store."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from models import calendar, sources, store
from models.config import SourceConfig


@dataclass(frozen=True)
class IngestRecord:
    """What ingesting one ticker did (a row of the ingest report)."""

    ticker: str
    status: str  # ok | up_to_date | restated | quarantined
    rows_added: int = 0
    first_date: str | None = None
    last_date: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def fetch_window(source: SourceConfig, last_stored: dt.date | None, end: dt.date) -> dt.date:
    """First date to fetch: the configured start, or `overlap_sessions` before the last stored day."""
    if last_stored is None:
        return source.start
    recent = calendar.sessions(
        source.exchange,
        last_stored - dt.timedelta(days=source.overlap_sessions * 3 + 10),
        last_stored,
    )
    back = recent[-(source.overlap_sessions + 1)] if len(recent) > source.overlap_sessions else recent[0]
    return max(source.start, back.date())


def ingest_ticker(
    source: SourceConfig,
    ticker: str,
    home: Path,
    end: dt.date,
    fetched_at: pd.Timestamp | None = None,
) -> IngestRecord:
    """Fetch new sessions of `ticker` (plus an overlap) and upsert them into the store.

    Raises:
        sources.SourceError: the source delivered nothing although sessions have closed.
        store.PriceValidationError: the fetched prices break a validation rule.
    """
    fetched_at = fetched_at or pd.Timestamp.now(tz="UTC")
    last = store.last_stored_date(home, ticker)
    if last is not None and last >= end:
        stored = store.read_prices(home, ticker)
        return IngestRecord(ticker, "up_to_date", 0, str(stored["date"].iloc[0].date()), str(last))
    start = fetch_window(source, last, end)
    frame = sources.load(source, ticker, start, end)
    if frame.empty:
        raise sources.SourceError(f"{ticker}: the {source.kind} source returned no prices for {start}..{end}")
    _, changed = store.upsert(home, ticker, frame, sources.source_label(source), fetched_at)
    stored = store.read_prices(home, ticker)
    return IngestRecord(
        ticker,
        "ok",
        changed,
        str(stored["date"].iloc[0].date()),
        str(stored["date"].iloc[-1].date()),
    )


def resolve_end(source: SourceConfig, now: pd.Timestamp | None = None) -> dt.date:
    """The configured end, or the exchange's last closed session."""
    return source.end or calendar.last_closed_session(source.exchange, now)
