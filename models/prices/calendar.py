"""Exchange sessions (exchange-calendars), normalized to tz-naive daily timestamps."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

# exchange-calendars builds a calendar for a fixed range; this start covers every history we load.
CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=8)
def get_calendar(exchange: str) -> xcals.ExchangeCalendar:
    """The exchange's calendar (cached: building one takes a fraction of a second)."""
    try:
        return xcals.get_calendar(exchange, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName as err:
        raise ValueError(f"unknown exchange calendar {exchange!r} (e.g. XNYS, XLON, XTKS)") from err


def sessions(exchange: str, start: dt.date, end: dt.date) -> pd.DatetimeIndex:
    """Sessions of `exchange` from `start` to `end`, both inclusive, as tz-naive datetime64[ns]."""
    cal = get_calendar(exchange)
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if hi < lo:
        return pd.DatetimeIndex([], dtype="datetime64[ns]", name="date")
    return pd.DatetimeIndex(cal.sessions_in_range(lo, hi).as_unit("ns"), name="date")


def last_closed_session(exchange: str, now: pd.Timestamp | None = None) -> dt.date:
    """The latest session whose close is at or before `now` (UTC; default: the current time)."""
    cal = get_calendar(exchange)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    today = now.tz_convert("UTC").normalize().tz_localize(None)
    candidates = cal.sessions_in_range(today - pd.Timedelta(days=14), min(today, cal.last_session))
    closes = cal.closes.loc[candidates]
    closed = candidates[closes <= now]
    if len(closed) == 0:
        raise ValueError(f"no {exchange} session has closed in the 14 days before {now}")
    return closed[-1].date()


def is_session(exchange: str, day: dt.date) -> bool:
    return bool(get_calendar(exchange).is_session(pd.Timestamp(day)))
