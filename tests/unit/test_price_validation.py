"""Price validation rules, gap and restatement detection, and the yfinance error classification."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from yfinance import exceptions as yfe

from models.prices import calendar, sources, store


def flat(days: pd.DatetimeIndex, closes: list[float] | None = None) -> pd.DataFrame:
    closes = closes or [10.0] * len(days)
    return pd.DataFrame(
        {
            "date": days,
            "open": closes,
            "high": [c * 1.01 for c in closes],
            "low": [c * 0.99 for c in closes],
            "close": closes,
            "adj_close": closes,
            "volume": 100,
        }
    )


def test_the_one_day_move_limit_is_configurable():
    frame = flat(calendar.sessions("XNYS", dt.date(2024, 6, 3), dt.date(2024, 6, 7)), [10, 10, 1, 1, 1])
    with pytest.raises(
        store.PriceValidationError, match=r"ACME 2024-06-05 column 'adj_close': adj_close moved -90\.0%"
    ):
        store.validate_prices("ACME", frame, store.ValidationRules(max_daily_move=0.5))
    store.validate_prices("ACME", frame, store.ValidationRules(max_daily_move=0.95))
    store.validate_prices("ACME", frame)  # no rules: the move check is off


def test_sessions_follow_the_configured_exchange():
    frame = flat(pd.DatetimeIndex(pd.to_datetime(["2024-07-03", "2024-07-04", "2024-07-05"])))
    store.validate_prices("VOD.L", frame, store.ValidationRules(exchange="XLON"))
    with pytest.raises(
        store.PriceValidationError, match=r"2024-07-04 column 'date': not a XNYS session \(Thursday\)"
    ):
        store.validate_prices("ACME", frame, store.ValidationRules(exchange="XNYS"))


def test_a_date_after_today_is_refused():
    frame = flat(calendar.sessions("XNYS", dt.date(2024, 6, 3), dt.date(2024, 6, 7)))
    rules = store.ValidationRules(today=dt.date(2024, 6, 6))
    with pytest.raises(store.PriceValidationError, match=r"2024-06-07 column 'date': date is in the future"):
        store.validate_prices("ACME", frame, rules)


def test_gaps_are_the_missing_sessions_between_first_and_last():
    days = calendar.sessions("XNYS", dt.date(2024, 6, 17), dt.date(2024, 6, 28))
    assert store.session_gaps("XNYS", pd.Series(days)) == []
    assert store.session_gaps("XNYS", pd.Series(days.delete([2, 3]))) == [
        dt.date(2024, 6, 20),
        dt.date(2024, 6, 21),
    ]
    assert store.session_gaps("XNYS", pd.Series([], dtype="datetime64[ns]")) == []


def test_restated_dates_compare_adj_close_on_the_overlap_only():
    days = calendar.sessions("XNYS", dt.date(2024, 6, 3), dt.date(2024, 6, 7))
    stored = flat(days[:4])
    fetched = flat(days[2:], [10.0, 10.0 * (1 + 1e-9), 12.0])
    assert store.restated_dates(stored, fetched, tolerance=1e-6) == []
    fetched.loc[0, "adj_close"] = 9.8
    assert store.restated_dates(stored, fetched, tolerance=1e-6) == [dt.date(2024, 6, 5)]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (yfe.YFRateLimitError(), True),
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("timed out"), True),
        (json.JSONDecodeError("Expecting value", "<html>", 0), True),
        (yfe.YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"), True),
        (yfe.YFTzMissingError("NOPE"), False),
        (yfe.YFPricesMissingError("NOPE", "", yahoo_reason="No data found, symbol may be delisted"), False),
        (KeyError("chart"), False),
    ],
)
def test_yfinance_errors_are_classified(error, transient):
    classified = sources.classify_yfinance_error("ACME", error)
    assert classified.args[0].startswith("ACME: ")
    assert isinstance(classified, sources.SourceError)
    assert isinstance(classified, sources.TransientSourceError) is transient
