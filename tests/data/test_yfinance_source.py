"""The yfinance source through yfinance's own request and parsing code, against a local fake Yahoo."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.config import SourceConfig
from models.prices import calendar, ingest, sources, store
from tests.yahoo_fake import FakeYahoo, Listing, redirect_yfinance, session_timestamp, traded_bars

START = dt.date(2024, 1, 2)
END = dt.date(2024, 3, 28)


@pytest.fixture
def yahoo(monkeypatch):
    fake = FakeYahoo().start()
    redirect_yfinance(monkeypatch, fake.url)
    yield fake
    fake.stop()


def traded(start: dt.date, end: dt.date, seed: int, level: float = 100.0) -> pd.DataFrame:
    """Unadjusted daily bars on XNYS sessions: a gentle random walk."""
    return traded_bars(calendar.sessions("XNYS", start, end), seed, level)


def test_one_ticker_round_trips_through_yfinance(yahoo, tmp_path):
    bars = traded(START, END, seed=1)
    yahoo.listings["ACME"] = Listing(bars)
    frame = sources.fetch_yfinance(["ACME"], START, END, tmp_path)["ACME"]
    assert list(frame.columns) == ["date", "open", "high", "low", "close", "adj_close", "volume"]
    assert frame["date"].dtype == "datetime64[ns]"
    assert list(frame["date"]) == list(bars["date"])
    np.testing.assert_allclose(frame["close"], bars["close"])
    np.testing.assert_allclose(frame["adj_close"], bars["close"])  # no events: nothing to adjust
    assert (frame["volume"] == bars["volume"]).all()
    probe, history = yahoo.chart_requests("ACME")
    assert probe["range"] == "1d"  # yfinance asks for the exchange timezone first
    assert int(history["period1"]) == int(pd.Timestamp("2024-01-02", tz="America/New_York").timestamp())
    assert int(history["period2"]) == int(pd.Timestamp("2024-03-29", tz="America/New_York").timestamp())
    assert history["events"] == "div,splits,capitalGains"
    # Caches go to the data home, not ~/.cache (yfinance creates the folder on first use per process).
    import yfinance.cache

    assert yfinance.cache._TzDBManager.get_location() == str(tmp_path / "cache" / "yfinance")


def test_several_tickers_each_get_their_own_prices(yahoo, tmp_path):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1, level=100))
    yahoo.listings["BRK-B"] = Listing(traded(START, END, seed=2, level=400))
    frames = sources.fetch_yfinance(["ACME", "BRK-B"], START, END, tmp_path)
    assert set(frames) == {"ACME", "BRK-B"}
    np.testing.assert_allclose(frames["ACME"]["close"], yahoo.listings["ACME"].prices["close"])
    np.testing.assert_allclose(frames["BRK-B"]["close"], yahoo.listings["BRK-B"].prices["close"])


def test_an_unknown_ticker_is_a_permanent_error_naming_it(yahoo, tmp_path):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1))
    with pytest.raises(sources.SourceError, match=r"^NOPE: unknown or delisted symbol") as caught:
        sources.fetch_yfinance(["NOPE"], START, END, tmp_path)
    assert not isinstance(caught.value, sources.TransientSourceError)


# What Yahoo answers when it is down or overloaded, as reported in yfinance's issue tracker: its HTML
# error page, an empty body ("Expecting value: line 1 column 1"), the chart API's JSON error, a JSON
# error under "finance" ({"finance": {"error": {"code": "Internal Server Error"}}}).
@pytest.mark.parametrize(
    ("status", "shape"),
    [
        (500, "html"),
        (502, "chart-json"),
        (503, "chart-json"),
        (503, "empty"),
        (500, "finance-json"),
        (504, "html"),
    ],
)
def test_a_yahoo_server_error_is_transient_whatever_yfinance_falls_back_to(yahoo, tmp_path, status, shape):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1))
    yahoo.failures["ACME"] = (status, shape)
    with pytest.raises(sources.TransientSourceError) as caught:
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)
    # Not "unknown or delisted symbol (HTTP 404)" from yfinance's quoteSummary fallback: the chart
    # API's own answer decides.
    assert str(caught.value) == f"ACME: Yahoo answered HTTP {status} (a server error)"


def test_a_rate_limit_is_transient(yahoo, tmp_path):
    yahoo.listings["ACME"] = Listing(traded(START, END, seed=1))
    yahoo.failures["ACME"] = 429
    with pytest.raises(
        sources.TransientSourceError, match=r"^ACME: Yahoo rate-limited the request \(HTTP 429\)$"
    ):
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)


def test_an_unreachable_server_is_transient(yahoo, tmp_path):
    yahoo.stop()
    with pytest.raises(sources.TransientSourceError, match=r"^ACME: network error") as caught:
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)
    assert "\n" not in str(caught.value) and "curl.se" not in str(caught.value)


def test_a_host_that_does_not_resolve_is_unreachable_not_transient_in_one_line(monkeypatch, tmp_path):
    redirect_yfinance(monkeypatch, "http://yahoo.invalid")  # .invalid never resolves (RFC 2606)
    with pytest.raises(sources.SourceUnreachable) as caught:
        sources.fetch_yfinance(["ACME"], START, END, tmp_path)
    assert not isinstance(caught.value, sources.TransientSourceError)
    message = str(caught.value)
    assert message.startswith("ACME: cannot resolve Yahoo's host from this machine: ")
    assert "yahoo.invalid" in message and "\n" not in message and "curl.se" not in message
    assert len(message) < 250
    with pytest.raises(
        sources.SourceUnreachable,
        match=r"^Yahoo Finance is unreachable from this machine: yahoo.invalid does not resolve",
    ):
        sources.check_reachable(yfinance_source(), attempts=2, pause_s=0)


def test_a_resolving_host_passes_the_reachability_check(yahoo):
    sources.check_reachable(yfinance_source(), attempts=1, pause_s=0)  # 127.0.0.1
    sources.check_reachable(SourceConfig(kind="sample"))  # no host: nothing to check


class _HTTPError(Exception):
    """Shaped like the HTTPError of curl_cffi and requests: named HTTPError, with a response."""

    def __init__(self, status: int):
        super().__init__(f"HTTP Error {status}")
        self.response = type("Response", (), {"status_code": status})()


_HTTPError.__name__ = "HTTPError"


@pytest.mark.parametrize(
    ("status", "transient"), [(404, False), (499, False), (500, True), (503, True), (599, True)]
)
def test_the_status_decides_between_transient_and_permanent(status, transient):
    from_chart = sources.classify_yfinance_error("ACME", ValueError("possibly delisted"), [status])
    from_raise = sources.classify_yfinance_error("ACME", _HTTPError(status))
    for error in (from_chart, from_raise):
        assert isinstance(error, sources.TransientSourceError) is transient, (status, error)
        assert isinstance(error, sources.SourceError)
    if not transient:
        assert "unknown or delisted symbol" in str(from_raise)


def test_a_five_hundred_from_the_chart_outranks_the_fallbacks_404():
    # yfinance's order of events on an outage: chart probe 503 (twice, with its other cookie
    # strategy), then quoteSummary 404 raised as an HTTPError.
    error = sources.classify_yfinance_error("ACME", _HTTPError(404), [503, 503])
    assert isinstance(error, sources.TransientSourceError)
    assert str(error) == "ACME: Yahoo answered HTTP 503 (a server error)"


def test_one_line_drops_curls_boilerplate():
    err = RuntimeError(
        "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com (Domain name not "
        "found). See https://curl.se/libcurl/c/libcurl-errors.html first for more details.\nmore"
    )
    assert sources.one_line(err) == (
        "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com (Domain name not found)."
    )
    assert len(sources.one_line(RuntimeError("x" * 1000))) == 200


def test_a_dividend_and_a_split_adjust_history_like_yahoo(yahoo, tmp_path):
    bars = traded(START, END, seed=3)
    dividend_day, split_day = "2024-02-07", "2024-03-01"
    after = bars["date"] >= pd.Timestamp(split_day)  # as traded: a 4:1 split quarters the price
    bars.loc[after, ["open", "high", "low", "close"]] /= 4
    bars.loc[after, "volume"] *= 4
    yahoo.listings["ACME"] = Listing(bars, dividends={dividend_day: 1.5}, splits={split_day: (4, 1)})
    frame = sources.fetch_yfinance(["ACME"], START, END, tmp_path)["ACME"].set_index("date")
    raw = bars.set_index("date")
    before_split = frame.index < pd.Timestamp(split_day)
    # Yahoo's close is split-adjusted (not dividend-adjusted); volume scales inversely.
    np.testing.assert_allclose(frame.loc[before_split, "close"], raw.loc[before_split, "close"] / 4)
    np.testing.assert_allclose(frame.loc[~before_split, "close"], raw.loc[~before_split, "close"])
    assert (frame.loc[before_split, "volume"] == raw.loc[before_split, "volume"] * 4).all()
    # adj_close also carries the dividend: scaled by 1 - D / previous close before the ex-date.
    before_dividend = frame.index < pd.Timestamp(dividend_day)
    previous_close = frame.loc[before_dividend, "close"].iloc[-1]
    factor = frame.loc[before_dividend, "adj_close"] / frame.loc[before_dividend, "close"]
    np.testing.assert_allclose(factor, 1 - 1.5 / previous_close)
    np.testing.assert_allclose(frame.loc[~before_dividend, "adj_close"], frame.loc[~before_dividend, "close"])
    # Adjusted, the 4:1 split is no 75 % crash: the one-day-move check passes.
    store.validate_prices(
        "ACME", frame.reset_index(), store.ValidationRules(exchange="XNYS", max_daily_move=0.5)
    )


def yfinance_source(**extra) -> SourceConfig:
    return SourceConfig(kind="yfinance", tickers=("ACME",), start=START, **extra)


def test_ingest_through_yfinance_fetches_only_new_sessions_then_detects_a_restatement(yahoo, tmp_path):
    bars = traded(START, dt.date(2024, 4, 30), seed=4)
    yahoo.listings["ACME"] = Listing(bars.loc[bars["date"] <= pd.Timestamp(END)].reset_index(drop=True))
    source = yfinance_source()
    first = ingest.ingest_ticker(source, "ACME", tmp_path, END)
    assert first.status == "ok" and first.rows_added == len(yahoo.listings["ACME"].prices)

    # A "month" later, no event: only the overlap (5 sessions before the last stored one) is asked for.
    yahoo.listings["ACME"] = Listing(bars)
    second = ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 4, 30))
    overlap_start = calendar.sessions("XNYS", dt.date(2024, 3, 1), END)[-6]
    assert second.status == "ok" and second.fetched_from == str(overlap_start.date())
    assert int(yahoo.chart_requests("ACME")[-1]["period1"]) == int(
        pd.Timestamp(overlap_start).tz_localize("America/New_York").timestamp()
    )
    assert second.rows_added == len(calendar.sessions("XNYS", dt.date(2024, 3, 29), dt.date(2024, 4, 30)))

    # A dividend goes ex the next day: every adjusted price before it changes, so history is refetched.
    later = traded(START, dt.date(2024, 5, 3), seed=4)
    yahoo.listings["ACME"] = Listing(later, dividends={"2024-05-01": 2.0})
    third = ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 5, 3))
    assert third.status == "restated" and "adj_close restated" in third.reason
    assert int(yahoo.chart_requests("ACME")[-1]["period1"]) == session_timestamp(pd.Timestamp(START)) - (
        9 * 3600 + 1800
    )  # the full history, from the configured start
    stored = store.read_prices(tmp_path, "ACME", source="yfinance")
    expected = sources.fetch_yfinance(["ACME"], START, dt.date(2024, 5, 3), tmp_path)["ACME"]
    np.testing.assert_allclose(stored["adj_close"], expected["adj_close"])
    assert stored["adj_close"].iloc[0] < stored["close"].iloc[0]


def test_the_yfinance_source_needs_the_data_home():
    with pytest.raises(ValueError, match="needs the data home"):
        sources.load(yfinance_source(), "ACME", START, END)


KERAS_FIRST = """
import sys
sys.path.insert(0, sys.argv[1])
import keras  # TensorFlow and its own libcurl, loaded before yfinance is ever imported
import datetime as dt, tempfile
import pandas as pd
import pytest
from models.prices import sources
from tests.yahoo_fake import FakeYahoo, Listing, redirect_yfinance
days = pd.bdate_range("2024-01-02", "2024-01-31")
fake = FakeYahoo().start()
redirect_yfinance(pytest.MonkeyPatch(), fake.url)
fake.listings["ACME"] = Listing(pd.DataFrame({"date": days, "open": 10.0, "high": 11.0, "low": 9.0,
                                             "close": 10.0, "volume": 100}))
frame = sources.fetch_yfinance(["ACME"], dt.date(2024, 1, 2), dt.date(2024, 1, 31), tempfile.mkdtemp())["ACME"]
print(len(frame))
"""


def test_yfinance_works_in_a_process_that_loaded_tensorflow_first():
    """Keras first, then yfinance: its HTTP client must not bind to TensorFlow's libcurl (#2528)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KERAS_FIRST, str(root)], capture_output=True, text=True, timeout=300, cwd=root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "22"  # the sessions of January 2024


def test_a_client_that_cannot_impersonate_is_a_permanent_error_saying_why():
    class ImpersonateError(Exception):
        pass

    error = sources.classify_yfinance_error(
        "ACME", ImpersonateError("Impersonating chrome152 is not supported")
    )
    assert type(error) is sources.SourceError
    assert "curl_cffi was loaded after TensorFlow" in str(error)


def test_each_kind_of_yfinance_failure_is_classified_and_named():
    """classify_yfinance_error's every branch, word for word, on the errors yfinance raises."""
    import json as json_module

    from yfinance import exceptions as yfe

    def classify(err, statuses=()):
        error = sources.classify_yfinance_error("ACME", err, list(statuses))
        return type(error).__name__, str(error)

    transient, permanent = "TransientSourceError", "SourceError"
    rate = "ACME: Yahoo rate-limited the request (HTTP 429)"
    assert classify(ValueError("x"), [429]) == (transient, rate)  # the status alone is enough
    assert classify(yfe.YFRateLimitError()) == (transient, rate)  # and yfinance's error alone
    assert classify(_HTTPError(0)) == (
        permanent,
        "ACME: unknown or delisted symbol on Yahoo (HTTP 0: HTTP Error 0)",
    )
    assert classify(_HTTPError(502)) == (transient, "ACME: Yahoo answered HTTP 502: HTTP Error 502")
    assert classify(ConnectionResetError("reset by peer")) == (
        transient,
        "ACME: network error while fetching from Yahoo: ConnectionResetError: reset by peer",
    )
    assert classify(json_module.JSONDecodeError("Expecting value", "", 0)) == (
        transient,
        "ACME: Yahoo answered with a non-JSON page (a server error such as HTTP 5xx): Expecting value: "
        "line 1 column 1 (char 0)",
    )
    assert classify(yfe.YFDataException("Yahoo Finance is down")) == (
        transient,
        "ACME: Yahoo Finance is down: Yahoo Finance is down",
    )
    assert classify(yfe.YFDataException("no price data")) == (
        permanent,
        "ACME: yfinance failed: YFDataException: no price data",
    )
    assert classify(RuntimeError("shutting down")) == (
        permanent,
        "ACME: yfinance failed: RuntimeError: shutting down",
    )
    assert classify(ValueError("boom")) == (permanent, "ACME: yfinance failed: ValueError: boom")


def test_errors_known_by_name_only_are_classified_like_their_kind():
    """Errors from other HTTP and JSON libraries share only the class name with the ones imported
    here; an HTTPError without a response is a permanent 'HTTP 0'."""
    from yfinance import exceptions as yfe

    def named(name, base=Exception):
        return type(name, (base,), {})

    def classify(err):
        error = sources.classify_yfinance_error("ACME", err, [])
        return type(error).__name__, str(error)

    assert classify(named("JSONDecodeError", ValueError)("Expecting value")) == (
        "TransientSourceError",
        "ACME: Yahoo answered with a non-JSON page (a server error such as HTTP 5xx): Expecting value",
    )
    assert classify(named("HTTPError")("no response")) == (
        "SourceError",
        "ACME: unknown or delisted symbol on Yahoo (HTTP 0: no response)",
    )
    assert classify(OSError("Broken pipe")) == (
        "TransientSourceError",
        "ACME: network error while fetching from Yahoo: OSError: Broken pipe",
    )
    impersonate = classify(named("ImpersonateError")("Impersonating chrome152 is not supported"))
    assert impersonate == (
        "SourceError",
        "ACME: yfinance's HTTP client cannot work in this process (Impersonating chrome152 is not "
        "supported): curl_cffi was loaded after TensorFlow, whose own libcurl then answers its calls; "
        "import yfinance through models.prices.sources.import_yfinance() before TensorFlow or keras",
    )
    missing = yfe.YFTickerMissingError("ACME", "no timezone found")
    assert classify(missing) == ("SourceError", f"ACME: unknown or delisted symbol on Yahoo ({missing})")
