"""A local stand-in for Yahoo's chart API, so yfinance's own request and parsing code runs in tests.

Only the endpoint yfinance uses for daily history is served: `GET /v8/finance/chart/<SYMBOL>`, called
first with `range=1d` (yfinance's timezone probe) and then with `period1`/`period2` (epoch seconds,
period2 exclusive), `interval=1d`, `events=div,splits,capitalGains`. The response mirrors Yahoo's:

- `chart.result[0].meta` with `exchangeTimezoneName`, `currency`, `instrumentType`, `validRanges`, ...
- `timestamp`: one per session, the session's opening time (09:30 New York) in epoch seconds.
- `indicators.quote[0]`: open/high/low/close/volume, **split-adjusted** (Yahoo rescales every price
  before a split by its ratio and volume inversely), and `indicators.adjclose[0].adjclose`, adjusted
  for splits **and** dividends (before an ex-date each price is multiplied by 1 - dividend / the
  previous session's close). Adjustments use every event the listing has up to "now", as Yahoo does,
  which is why history already stored can be restated by a later event.
- `events.dividends` / `events.splits`: only the events inside the requested window, keyed by the
  event's timestamp as a string, with Yahoo's fields (`amount`, `date`; `numerator`, `denominator`,
  `splitRatio`).

Failures are Yahoo's shapes too (as reported in yfinance's issue tracker): an unknown symbol gets
HTTP 404 with `{"chart": {"result": null, "error": {"code": "Not Found", "description": ...}}}`; a
symbol put in `failures` gets that status with a body in one of the shapes Yahoo serves (`SHAPES`):
by default 500 with Yahoo's HTML error page, 429 with its plain-text body, any other status with the
chart API's JSON error. Anything else (quoteSummary, which yfinance falls back to for a timezone) gets
a 404 in Yahoo's JSON shape. Every request is recorded in `requests` as (symbol, params).
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

EXCHANGE_TZ = "America/New_York"
YAHOO_HOSTS = (
    "https://query1.finance.yahoo.com",
    "https://query2.finance.yahoo.com",
    "https://finance.yahoo.com",
)
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]

ERROR_PAGE_500 = """<!doctype html public "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">
<html>
<head><title>Yahoo! - Error report</title></head>
<body><div id="doc"><div id="bd"><h1>HTTP Status 500 - Internal Server Error</h1></div></div></body>
</html>
"""


@dataclass
class Listing:
    """One symbol's unadjusted daily prices and its corporate actions (ex-dates)."""

    prices: pd.DataFrame  # date, open, high, low, close, volume: as traded, not adjusted
    dividends: dict[str, float] = field(default_factory=dict)  # ex-date -> cash per share
    splits: dict[str, tuple[int, int]] = field(default_factory=dict)  # date -> (numerator, denominator)
    instrument_type: str = "EQUITY"
    timezone: str = EXCHANGE_TZ  # the exchange's timezone Yahoo reports (meta.exchangeTimezoneName)


def traded_bars(days: pd.DatetimeIndex, seed: int, level: float = 100.0) -> pd.DataFrame:
    """Unadjusted daily bars on the given sessions: a gentle random walk (what a listing serves)."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    return pd.DataFrame(
        {
            "date": days,
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(1_000, 5_000, len(days)),
        }
    )


def session_timestamp(day: pd.Timestamp, timezone: str = EXCHANGE_TZ) -> int:
    """Yahoo stamps a daily bar with the session's opening time (09:30 in the exchange's timezone)."""
    opening = pd.Timestamp(day.date()).tz_localize(timezone) + pd.Timedelta(hours=9, minutes=30)
    return int(opening.timestamp())


def adjusted(listing: Listing) -> pd.DataFrame:
    """Split-adjusted OHLCV plus a split-and-dividend-adjusted `adjclose`, as Yahoo serves them."""
    frame = listing.prices.copy()
    frame["date"] = pd.to_datetime(frame["date"])
    frame = frame.sort_values("date").reset_index(drop=True)
    split_factor = pd.Series(1.0, index=frame.index)
    for day, (num, den) in listing.splits.items():
        split_factor[frame["date"] < pd.Timestamp(day)] *= num / den
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column] / split_factor
    frame["volume"] = (frame["volume"] * split_factor).round().astype("int64")
    dividend_factor = pd.Series(1.0, index=frame.index)
    for day, amount in listing.dividends.items():
        before = frame["date"] < pd.Timestamp(day)
        if before.any():
            previous_close = frame.loc[before, "close"].iloc[-1]  # already split-adjusted
            dividend_factor[before] *= 1 - amount / previous_close
    frame["adjclose"] = frame["close"] * dividend_factor
    return frame


def chart_json(symbol: str, listing: Listing, params: dict[str, str]) -> dict:
    frame = adjusted(listing)
    tz = listing.timezone
    stamps = frame["date"].map(lambda day: session_timestamp(day, tz))
    if "range" in params:  # the timezone probe: Yahoo answers with the latest session
        window = frame.index[-1:]
    else:
        lo, hi = int(params["period1"]), int(params["period2"])
        window = frame.index[(stamps >= lo) & (stamps < hi)]
    rows = frame.loc[window]
    lo_ts = int(stamps.loc[window].min()) if len(window) else 0
    hi_ts = int(stamps.loc[window].max()) if len(window) else 0

    def in_window(day: str) -> bool:
        ts = session_timestamp(pd.Timestamp(day), tz)
        return len(window) > 0 and lo_ts <= ts <= hi_ts

    last = frame.iloc[-1]
    local_last = pd.Timestamp(last["date"]).tz_localize(tz)
    result: dict = {
        "meta": {
            "currency": "USD",
            "symbol": symbol,
            "exchangeName": "NMS",
            "fullExchangeName": "NasdaqGS",
            "instrumentType": listing.instrument_type,
            "firstTradeDate": int(stamps.iloc[0]),
            "regularMarketTime": int(stamps.iloc[-1]) + 23400,
            "hasPrePostMarketData": True,
            "gmtoffset": -18000 if tz == EXCHANGE_TZ else int(local_last.utcoffset().total_seconds()),
            "timezone": "EST" if tz == EXCHANGE_TZ else local_last.tzname(),
            "exchangeTimezoneName": tz,
            "regularMarketPrice": float(last["close"]),
            "chartPreviousClose": float(frame["close"].iloc[-2] if len(frame) > 1 else last["close"]),
            "priceHint": 2,
            "dataGranularity": "1d",
            "range": params.get("range", ""),
            "validRanges": VALID_RANGES,
        },
        "timestamp": [int(s) for s in stamps.loc[window]],
        "indicators": {
            "quote": [
                {
                    "open": [float(v) for v in rows["open"]],
                    "high": [float(v) for v in rows["high"]],
                    "low": [float(v) for v in rows["low"]],
                    "close": [float(v) for v in rows["close"]],
                    "volume": [int(v) for v in rows["volume"]],
                }
            ],
            "adjclose": [{"adjclose": [float(v) for v in rows["adjclose"]]}],
        },
    }
    events: dict = {}
    dividends = {
        str(session_timestamp(pd.Timestamp(d), tz)): {
            "amount": a,
            "date": session_timestamp(pd.Timestamp(d), tz),
        }
        for d, a in listing.dividends.items()
        if in_window(d)
    }
    splits = {
        str(session_timestamp(pd.Timestamp(d), tz)): {
            "date": session_timestamp(pd.Timestamp(d), tz),
            "numerator": n,
            "denominator": m,
            "splitRatio": f"{n}:{m}",
        }
        for d, (n, m) in listing.splits.items()
        if in_window(d)
    }
    if dividends:
        events["dividends"] = dividends
    if splits:
        events["splits"] = splits
    if events:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}


# Bodies of Yahoo's failures: its HTML error page, an empty body, the chart API's JSON error, the JSON
# error under a "finance" root (an internal error seen in the wild), its rate-limit text.
SHAPES = ("html", "empty", "chart-json", "finance-json", "text")


class FakeYahoo:
    """Serves `listings` on 127.0.0.1 in a background thread; `failures` maps symbol -> HTTP status,
    or (status, shape) with a shape of `SHAPES`."""

    def __init__(self) -> None:
        self.listings: dict[str, Listing] = {}
        self.failures: dict[str, int | tuple[int, str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()  # handlers run in threads of their own
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake Yahoo server is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeYahoo:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def chart_requests(self, symbol: str) -> list[dict[str, str]]:
        """Parameters of the chart requests made for `symbol`, in order."""
        with self._lock:
            return [p for s, p in self.requests if s == symbol]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        prefix = "/v8/finance/chart/"
        if not parts.path.startswith(prefix):
            return self._send(handler, 404, _not_found("finance", "Not Found"))
        symbol = parts.path[len(prefix) :]
        with self._lock:
            self.requests.append((symbol, params))
        failure = self.failures.get(symbol)
        if failure is not None:
            status, shape = failure if isinstance(failure, tuple) else (failure, _default_shape(failure))
            if shape == "html":
                return self._send(handler, status, ERROR_PAGE_500, "text/html;charset=utf-8")
            if shape == "empty":
                return self._send(handler, status, "", "text/html;charset=utf-8")
            if shape == "text":
                return self._send(handler, status, "Edge: Too Many Requests", "text/plain;charset=utf-8")
            if shape == "finance-json":
                return self._send(handler, status, _not_found("finance", "Internal Server Error"))
            return self._send(handler, status, _not_found("chart", "Internal Server Error"))
        listing = self.listings.get(symbol)
        if listing is None:
            return self._send(handler, 404, _not_found("chart", "No data found, symbol may be delisted"))
        return self._send(handler, 200, chart_json(symbol, listing, params))

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict | str,
        content_type: str = "application/json;charset=utf-8",
    ) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def _default_shape(status: int) -> str:
    return {500: "html", 429: "text"}.get(status, "chart-json")


def _not_found(root: str, description: str) -> dict:
    code = "Not Found" if "Not Found" in description or "delisted" in description else description
    return {root: {"result": None, "error": {"code": code, "description": description}}}


def redirect_yfinance(monkeypatch, base_url: str) -> None:
    """Point every Yahoo URL constant in the loaded yfinance modules at `base_url`; skip cookies.

    yfinance copies its base URLs into several modules at import (`from .const import _BASE_URL_`)
    and derives others from them (`_QUOTE_SUMMARY_URL_`), so each module's copy is patched.
    """
    from models.prices.sources import import_yfinance

    import_yfinance()  # loads the submodules whose constants are patched, as production loads them
    import yfinance.data

    for name, module in list(sys.modules.items()):
        if not name.startswith("yfinance") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, str) and value.startswith(YAHOO_HOSTS):
                host = next(h for h in YAHOO_HOSTS if value.startswith(h))
                monkeypatch.setattr(module, attr, base_url + value[len(host) :])
    # The cookie/crumb dance talks to fc.yahoo.com; the chart API answers without a crumb.
    monkeypatch.setattr(
        yfinance.data.YfData, "_get_cookie_and_crumb", lambda self, timeout=30: (None, "basic")
    )
    # YfData is a process-wide singleton whose lru cache would replay another test's responses.
    yfinance.data.YfData.cache_get.cache_clear()
