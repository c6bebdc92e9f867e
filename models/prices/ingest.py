"""Incremental ingestion of one ticker into the price store."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from models.config import SourceConfig
from models.prices import calendar, sources, store


@dataclass(frozen=True)
class IngestRecord:
    """What ingesting one ticker did (a row of the ingest report)."""

    ticker: str
    status: str  # ok | up_to_date | restated | quarantined
    rows_added: int = 0
    first_date: str | None = None
    last_date: str | None = None
    gaps: int = 0  # sessions of the exchange missing between first_date and last_date
    fetched_from: str | None = None  # first date asked of the source this run
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

    When the overlap's adj_close differs from the stored one beyond the configured tolerance (a split
    or dividend restated the adjusted history), the full history is refetched and replaces the file.

    Args:
        source: Source settings, including overlap, tolerance and validation limits.
        ticker: Symbol to ingest.
        home: Data home; the store is `<home>/prices`.
        end: Last session to load (inclusive).
        fetched_at: Time recorded on new rows, and the "today" future dates are judged against.

    Raises:
        ValueError: the symbol is not Yahoo-style.
        sources.SourceError: the source delivered nothing although sessions have closed
            (sources.TransientSourceError when retrying may help).
        store.PriceValidationError: the fetched prices break a validation rule; the store is untouched.
    """
    fetched_at = fetched_at or pd.Timestamp.now(tz="UTC")
    rules = store.ValidationRules(
        exchange=source.exchange,
        max_daily_move=source.max_daily_move,
        today=fetched_at.tz_convert("UTC").date(),
    )
    label = sources.source_label(source)
    last = store.last_stored_date(home, ticker)
    if last is not None and not session_closed_since(source.exchange, last, end):
        return _record(source, home, ticker, "up_to_date", 0, None)
    start = fetch_window(source, last, end)
    frame = _load(source, ticker, start, end, home, rules.today)
    if last is not None and frame["date"].max() <= pd.Timestamp(last):
        # Sessions have closed, so "nothing new" means a stale feed or a delisted symbol.
        raise sources.SourceError(
            f"{ticker}: the {source.kind} source has no prices after {last} although "
            f"{source.exchange} sessions up to {end} have closed (stale feed or delisted symbol?)"
        )
    stored = store.read_prices(home, ticker)
    restated = store.restated_dates(stored, frame, source.restatement_tolerance)
    if restated:
        # Adjusted prices before the overlap changed too: only a full refetch makes them consistent.
        full = frame if start <= source.start else _load(source, ticker, source.start, end, home, rules.today)
        if pd.Timestamp(full["date"].min()) > pd.Timestamp(stored["date"].min()):
            raise sources.SourceError(
                f"{ticker}: history was restated but the refetch starts at {full['date'].min().date()}, "
                f"after the stored {stored['date'].min().date()}; refusing to drop stored rows"
            )
        _, changed = store.replace_prices(home, ticker, full, label, fetched_at, rules)
        reason = f"adj_close restated on {len(restated)} overlap session(s) from {restated[0]}"
        return _record(source, home, ticker, "restated", changed, source.start, reason)
    _, changed = store.upsert(home, ticker, frame, label, fetched_at, rules)
    return _record(source, home, ticker, "ok", changed, start)


def _load(
    source: SourceConfig, ticker: str, start: dt.date, end: dt.date, home: Path, today: dt.date
) -> pd.DataFrame:
    frame = sources.load(source, ticker, start, end, home, today)
    if frame.empty:
        raise sources.SourceError(f"{ticker}: the {source.kind} source returned no prices for {start}..{end}")
    return frame


def _record(
    source: SourceConfig,
    home: Path,
    ticker: str,
    status: str,
    rows: int,
    fetched_from: dt.date | None,
    reason: str | None = None,
) -> IngestRecord:
    stored = store.read_prices(home, ticker)
    gaps = store.session_gaps(source.exchange, stored["date"])
    return IngestRecord(
        ticker,
        status,
        rows,
        str(stored["date"].iloc[0].date()),
        str(stored["date"].iloc[-1].date()),
        gaps=len(gaps),
        fetched_from=None if fetched_from is None else str(fetched_from),
        reason=reason,
    )


def session_closed_since(exchange: str, last_stored: dt.date, end: dt.date) -> bool:
    """Whether `exchange` has a session after `last_stored` and up to `end` (inclusive)."""
    return len(calendar.sessions(exchange, last_stored + dt.timedelta(days=1), end)) > 0


def resolve_end(source: SourceConfig, now: pd.Timestamp | None = None) -> dt.date:
    """The configured end, or the exchange's last closed session."""
    return source.end or calendar.last_closed_session(source.exchange, now)
