"""Exchange sessions (exchange-calendars), normalized to tz-naive daily timestamps.

A calendar is built from CALENDAR_START and widened on demand to cover the earliest date asked for
(history before 1990 is common in real data sets), down to the first date the calendar itself knows.
"""

from __future__ import annotations

import datetime as dt
import threading

import exchange_calendars as xcals
import numpy as np
import pandas as pd

# Where a calendar starts unless earlier dates are asked for (building one takes ~0.1 s either way).
CALENDAR_START = "1990-01-02"

_calendars: dict[str, tuple[xcals.ExchangeCalendar, pd.Timestamp]] = {}  # calendar, start it was built from
_lock = threading.Lock()


def get_calendar(exchange: str, start: dt.date | pd.Timestamp | None = None) -> xcals.ExchangeCalendar:
    """The exchange's calendar, covering `start` when given (cached, widened when asked for earlier).

    A calendar with a lower bound (`bound_min`) is built from that bound when `start` is earlier;
    dates before its `first_session` are then outside what it knows (see `outside_reason`).

    Raises:
        ValueError: the exchange has no calendar.
    """
    wanted = pd.Timestamp(CALENDAR_START) if start is None else pd.Timestamp(start).normalize()
    with _lock:
        cached = _calendars.get(exchange)
        if cached is not None and (wanted >= cached[1] or cached[1] <= _bound_min(cached[0])):
            return cached[0]
        try:
            probe = cached[0] if cached else xcals.get_calendar(exchange)  # the library's default range
        except xcals.errors.InvalidCalendarName as err:
            raise ValueError(f"unknown exchange calendar {exchange!r} (e.g. XNYS, XLON, XTKS)") from err
        # Whole years, so a slightly earlier date next time does not rebuild the calendar.
        first = max(min(wanted, pd.Timestamp(CALENDAR_START)).replace(month=1, day=1), _bound_min(probe))
        built = xcals.get_calendar(exchange, start=first)
        _calendars[exchange] = (built, first)
        return built


def _bound_min(cal: xcals.ExchangeCalendar) -> pd.Timestamp:
    bound = type(cal).bound_min()
    return pd.Timestamp.min if bound is None else pd.Timestamp(bound).tz_localize(None)


def timezone(exchange: str):
    """The exchange's timezone (e.g. America/New_York for XNYS)."""
    return get_calendar(exchange).tz


def sessions(exchange: str, start: dt.date, end: dt.date) -> pd.DatetimeIndex:
    """Sessions of `exchange` from `start` to `end`, both inclusive, as tz-naive datetime64[ns]."""
    cal = get_calendar(exchange, start)
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if hi < lo:
        return pd.DatetimeIndex([], dtype="datetime64[ns]", name="date")
    return pd.DatetimeIndex(cal.sessions_in_range(lo, hi).as_unit("ns"), name="date")


def outside_reason(exchange: str, day: pd.Timestamp) -> str | None:
    """Why `day` lies outside the dates the exchange's calendar knows, or None when it lies inside."""
    cal = get_calendar(exchange, day)
    if day < cal.first_session:
        return (
            f"before {cal.first_session.date()}, the first session the {exchange} calendar knows, "
            "so it cannot be checked"
        )
    if day > cal.last_session:
        return (
            f"after {cal.last_session.date()}, the last session the {exchange} calendar knows, "
            "so it cannot be checked"
        )
    return None


def session_positions(exchange: str, dates: np.ndarray) -> np.ndarray:
    """The index of each date among the exchange's sessions (from the calendar's first session).

    Two rows are consecutive sessions exactly when their positions differ by 1, so a difference
    above 1 is a gap of missing sessions.

    Raises:
        ValueError: a date is not a session of the exchange, or lies outside its calendar.
    """
    dates = np.asarray(dates, dtype="datetime64[ns]")
    if len(dates) == 0:
        return np.zeros(0, dtype=np.int64)
    known = _session_array(get_calendar(exchange, pd.Timestamp(dates.min())))
    at = np.clip(np.searchsorted(known, dates), 0, len(known) - 1)
    bad = known[at] != dates
    if bad.any():
        day = pd.Timestamp(dates[int(np.argmax(bad))])
        reason = outside_reason(exchange, day) or f"not a {exchange} session"
        raise ValueError(
            f"{day.date()} is {reason}" if reason.startswith("not") else f"{day.date()}: {reason}"
        )
    return at.astype(np.int64)


_session_arrays: dict[int, np.ndarray] = {}


def _session_array(cal: xcals.ExchangeCalendar) -> np.ndarray:
    """Every session of `cal` as sorted datetime64[ns] (computed once per calendar: the dataset build
    looks up every ticker's dates)."""
    known = _session_arrays.get(id(cal))
    if known is None:
        known = cal.sessions.as_unit("ns").to_numpy()
        _session_arrays[id(cal)] = known
    return known


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
    return bool(get_calendar(exchange, day).is_session(pd.Timestamp(day)))
