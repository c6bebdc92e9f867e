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
    status: str  # ok | backfilled | restated | up_to_date | cached | quarantined
    rows_added: int = 0
    first_date: str | None = None
    last_date: str | None = None
    gaps: int = 0  # sessions of the exchange missing between first_date and last_date
    # Stored sessions with volume 0: features treat them as missing volume (models.dataset.features).
    zero_volume: int = 0
    fetched_from: str | None = None  # first date asked of the source this run
    reason: str | None = None
    note: str | None = None  # e.g. how a store file written before per-source folders was adopted

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class StaleSourceError(sources.SourceError):
    """The source's newest price is older than the last session asked for (by more than allowed)."""


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


def due_session(exchange: str, end: dt.date) -> dt.date:
    """The last session of `exchange` on or before `end`: the newest price a fresh source has."""
    days = calendar.sessions(exchange, end - dt.timedelta(days=30), end)
    return days[-1].date() if len(days) else end


def check_fresh(source: SourceConfig, ticker: str, newest: dt.date, end: dt.date) -> None:
    """Raise StaleSourceError when `newest` lags the last session up to `end` by too many sessions.

    The one staleness rule, for a first ingest and every later one alike: the ticker's newest price
    (stored or just fetched) may lag the last session up to `end` by at most
    `source.max_lag_sessions`. History that ends in the past on purpose is read with `end` set to
    its last day (historical mode), not by switching the check off.
    """
    due = due_session(source.exchange, end)
    lag = len(calendar.sessions(source.exchange, newest + dt.timedelta(days=1), due))
    if lag > source.max_lag_sessions:
        asked = f"the configured end {source.end}" if source.end else "the last closed session"
        raise StaleSourceError(
            f"{ticker}: the {source.kind} source's newest price is on {newest}, {lag} {source.exchange} "
            f"session(s) before {due} ({asked}). If this history ends there on purpose (a research "
            f"data set), pass --end {newest} (source.end) to train on it as of that day; otherwise the "
            "feed is stale or the symbol was delisted"
        )


def ingest_ticker(
    source: SourceConfig,
    ticker: str,
    home: Path,
    end: dt.date,
    fetched_at: pd.Timestamp | None = None,
) -> IngestRecord:
    """Bring the ticker's store (in the namespace of `source`) up to `end`, from `source.start` on.

    - Nothing stored yet: fetch `source.start`..`end`.
    - Stored: fetch from `overlap_sessions` before the last stored session. When `source.start` lies
      before the earliest start ever asked for this ticker, fetch from `source.start` instead
      (backfill). A folder source whose file changed since it was read is read again over the whole
      stored span, so a replaced file is validated and its restatements are seen.
    - Already up to `end`, with nothing to backfill and an unchanged file: nothing is read.

    When the overlap's adj_close differs from the stored one beyond the configured tolerance (a split
    or dividend restated the adjusted history), the full history is refetched and replaces the file.
    A store file written before per-source folders is adopted first (see `store.adopt_legacy_file`).

    Args:
        source: Source settings, including overlap, tolerance and validation limits.
        ticker: Symbol to ingest.
        home: Data home; the store is `<home>/prices/<source key>`.
        end: Last session to load (inclusive).
        fetched_at: Time recorded on new rows, and the "today" future dates are judged against.

    Raises:
        ValueError: the symbol is not Yahoo-style.
        StaleSourceError: the ticker's newest price lags the last session up to `end` (see
            `check_fresh`); the store is untouched.
        sources.SourceError: the source delivered nothing (sources.TransientSourceError when
            retrying may help).
        store.PriceValidationError: the fetched prices break a validation rule; the store is untouched.
        store.SourceMismatchError: the ticker's file holds another source's rows.
    """
    fetched_at = fetched_at or pd.Timestamp.now(tz="UTC")
    rules = store.ValidationRules(
        exchange=source.exchange,
        max_daily_move=source.max_daily_move,
        today=fetched_at.tz_convert("UTC").date(),
        max_price=source.max_price,
        max_volume=source.max_volume,
    )
    label = sources.source_label(source)
    note = store.adopt_legacy_file(home, ticker)
    store.check_source(home, ticker, source=label)
    span = store.stored_span(home, ticker, source=label)
    meta = store.read_meta(home, ticker, source=label)
    file = sources.source_file(source, ticker)
    if span is None:
        start, asked_from = source.start, source.start
    else:
        first, last = span
        asked_from = dt.date.fromisoformat(meta["asked_from"]) if meta.get("asked_from") else first
        backfill = source.start < asked_from and len(
            calendar.sessions(source.exchange, source.start, first - dt.timedelta(days=1))
        )
        file_changed = file is not None and file != meta.get("source_file")
        if not backfill and not file_changed and last >= due_session(source.exchange, end):
            return _record(source, home, ticker, "up_to_date", 0, None, note=note)
        if backfill:
            start = source.start
        elif file_changed:
            start = min(source.start, first)  # the file is the whole history: compare all of it
        else:
            start = fetch_window(source, last, end)
        asked_from = min(asked_from, start)
    frame = _load(source, ticker, start, end, home, rules.today)
    newest = pd.Timestamp(frame["date"].max()).date()
    check_fresh(source, ticker, newest if span is None else max(newest, span[1]), end)
    lineage = {"asked_from": asked_from.isoformat(), "source_file": file}
    stored = store.read_prices(home, ticker, source=label)
    restated = store.restated_dates(stored, frame, source.restatement_tolerance)
    if restated:
        # Adjusted prices before the overlap changed too: only a full refetch makes them consistent.
        full_start = min(source.start, span[0])
        full = frame if start <= full_start else _load(source, ticker, full_start, end, home, rules.today)
        if pd.Timestamp(full["date"].min()) > pd.Timestamp(stored["date"].min()):
            raise sources.SourceError(
                f"{ticker}: history was restated but the refetch starts at {full['date'].min().date()}, "
                f"after the stored {stored['date'].min().date()}; refusing to drop stored rows"
            )
        _, changed = store.replace_prices(home, ticker, full, label, fetched_at, rules, meta=lineage)
        reason = f"adj_close restated on {len(restated)} re-read session(s) from {restated[0]}"
        return _record(source, home, ticker, "restated", changed, full_start, reason, note)
    _, changed = store.upsert(home, ticker, frame, label, fetched_at, rules, meta=lineage)
    earlier = span is not None and pd.Timestamp(frame["date"].min()).date() < span[0]
    return _record(source, home, ticker, "backfilled" if earlier else "ok", changed, start, note=note)


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
    note: str | None = None,
) -> IngestRecord:
    stored = store.read_prices(home, ticker, source=sources.source_label(source), columns=["date", "volume"])
    gaps = store.session_gaps(source.exchange, stored["date"])
    return IngestRecord(
        ticker,
        status,
        rows,
        str(stored["date"].iloc[0].date()),
        str(stored["date"].iloc[-1].date()),
        gaps=len(gaps),
        zero_volume=int((stored["volume"] == 0).sum()),
        fetched_from=None if fetched_from is None else str(fetched_from),
        reason=reason,
        note=note,
    )


def resolve_end(source: SourceConfig, now: pd.Timestamp | None = None) -> dt.date:
    """The configured end (historical mode), or the exchange's last closed session; never later
    than that session, since no price exists for a session that has not closed."""
    last_closed = calendar.last_closed_session(source.exchange, now)
    return min(source.end, last_closed) if source.end else last_closed


def summarize_reasons(records: list[IngestRecord]) -> str:
    """The failures of `records`, each distinct reason once with the tickers it hit.

    "SPY, QQQ: Yahoo answered HTTP 503 (…)" rather than the same sentence per ticker: when every
    ticker fails alike, the cause is the source, not the tickers, and it is said once. A reason that
    names its ticker in its own words ("BAD 2024-01-17 column 'high': …") is kept as it is.
    """
    groups: dict[str, list[IngestRecord]] = {}
    for record in records:
        reason = record.reason or f"{record.ticker}: no reason given"
        groups.setdefault(reason.removeprefix(f"{record.ticker}: "), []).append(record)
    parts = []
    for reason, group in groups.items():
        (first, *others) = group
        if not others and (first.reason or "").startswith(f"{first.ticker} "):
            parts.append(first.reason or reason)
        else:
            parts.append(f"{', '.join(r.ticker for r in group)}: {reason}")
    return "; ".join(parts)
