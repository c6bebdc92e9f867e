"""Price sources behind one interface: the sample market, a CSV/Parquet folder, and yfinance.

`load` returns a frame with columns date, open, high, low, close, adj_close, volume (session dates,
tz-naive datetime64[ns]; the folder source adds each row's `location`, its file and line) or raises
an error that names the ticker. There is no fallback from one source to
another: the source a model was trained on is always the one configured, and it is recorded.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from models.config import SourceConfig, validate_ticker
from models.prices import reader, sample, store


class SourceError(RuntimeError):
    """A source could not deliver prices for a ticker (unknown symbol, unreadable file, no rows)."""


class TransientSourceError(SourceError):
    """A failure that may pass on its own (network, HTTP 5xx, rate limit): worth retrying later."""


class SourceUnreachable(SourceError):
    """The source cannot be reached from this machine at all (its host name does not resolve).

    Not retried ticker by ticker: every ticker would fail the same way, for minutes. The run fails
    once, saying so, and the next run tries again.
    """


def describe(source: SourceConfig) -> dict[str, object]:
    """What a manifest records about the source, including whether the data is synthetic."""
    info: dict[str, object] = {"kind": source.kind, "exchange": source.exchange, "synthetic": False}
    if source.kind == "sample":
        info |= {
            "synthetic": True,
            "variant": source.sample_variant,
            "seed": source.sample_seed,
            "notice": sample.SYNTHETIC_NOTICE,
        }
        if source.sample_signal_until is not None:
            info["signal_until"] = source.sample_signal_until.isoformat()
            info["notice"] = (
                f"{sample.SYNTHETIC_NOTICE}; the signal is switched off after "
                f"{source.sample_signal_until} (no direction after it)"
            )
    elif source.kind == "folder":
        info["folder"] = str(Path(source.folder or "").resolve())
    return info


def source_label(source: SourceConfig) -> str:
    """The value stored in the price store's `source` column."""
    if source.kind == "sample":
        label = f"sample:{source.sample_variant}:seed={source.sample_seed}"
        if source.sample_signal_until is not None:
            label += f":until={source.sample_signal_until.isoformat()}"
        return label
    if source.kind == "folder":
        return f"folder:{Path(source.folder or '').resolve()}"
    return "yfinance"


def source_file(source: SourceConfig, ticker: str) -> dict[str, str] | None:
    """For a folder source, the file `load` reads for `ticker` and its content's sha256; else None.

    Part of the source's identity: the store records it, and a file whose hash changed is read again.
    """
    if source.kind != "folder":
        return None
    path = folder_file(Path(source.folder or ""), validate_ticker(ticker))
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "sha256": digest.hexdigest()}


def folder_file(folder: Path, ticker: str) -> Path | None:
    """`<folder>/<TICKER>.parquet`, else `<folder>/<TICKER>.csv`, else None."""
    return next((p for p in (folder / f"{ticker}.parquet", folder / f"{ticker}.csv") if p.exists()), None)


def load(
    source: SourceConfig,
    ticker: str,
    start: dt.date,
    end: dt.date,
    home: Path | None = None,
    today: dt.date | None = None,
) -> pd.DataFrame:
    """Daily prices of `ticker` from `start` to `end` (inclusive) from the configured source.

    Args:
        source: Which source, and its settings.
        ticker: Yahoo-style symbol; refused before any path or URL is built from it.
        start: First date (inclusive).
        end: Last date (inclusive).
        home: Data home; yfinance keeps its caches under `<home>/cache/yfinance`.
        today: When given, a row dated after it is refused, although it lies outside the window:
            a file with future dates is broken as a whole.

    Raises:
        ValueError: the symbol is not Yahoo-style.
        store.PriceValidationError: a row is dated after `today`.
        SourceError: the source cannot deliver (TransientSourceError when a retry may help).
    """
    ticker = validate_ticker(ticker)
    if source.kind == "sample":
        frame = sample.generate(
            ticker,
            end,
            start=start,
            seed=source.sample_seed,
            variant=source.sample_variant,
            exchange=source.exchange,
            signal_until=source.sample_signal_until,
        )
    elif source.kind == "folder":
        frame = read_folder_file(Path(source.folder or ""), ticker, source.exchange)
    else:
        if home is None:
            raise ValueError("the yfinance source needs the data home (for yfinance's caches)")
        frame = fetch_yfinance([ticker], start, end, home, source.exchange)[ticker]
    if today is not None:
        future = frame["date"] > pd.Timestamp(today)
        if future.any():
            first = frame.loc[future].iloc[0]
            at = f"; {first['location']}" if "location" in frame.columns else ""
            raise store.PriceValidationError(
                f"{ticker} {first['date'].date()} column 'date': date is in the future "
                f"(today is {today}) ({int(future.sum())} row(s){at})"
            )
    in_range = (frame["date"] >= pd.Timestamp(start)) & (frame["date"] <= pd.Timestamp(end))
    return frame.loc[in_range].reset_index(drop=True)


def read_folder_file(folder: Path, ticker: str, exchange: str = "XNYS") -> pd.DataFrame:
    """Read `<folder>/<TICKER>.parquet` or `.csv` with `models.prices.reader` (every shape it accepts).

    Returns:
        date, open, high, low, close, adj_close, volume and `location` (file and line of each row).

    Raises:
        SourceError: no such file, or one that cannot be read as prices; the message names the file,
            line and column.
    """
    path = folder_file(folder, ticker)
    if path is None:
        raise SourceError(f"{ticker}: no {ticker}.parquet or {ticker}.csv in {folder}")
    try:
        frame = reader.read_price_file(path, exchange, ticker=ticker)
    except reader.PriceFileError as err:
        raise SourceError(str(err)) from err
    return frame.drop(columns="ticker")


def fetch_yfinance(
    tickers: list[str], start: dt.date, end: dt.date, home: Path, exchange: str = "XNYS"
) -> dict[str, pd.DataFrame]:
    """Unadjusted OHLC, Adj Close and volume per ticker through yfinance, or an error naming the ticker.

    `Ticker.history` is used rather than `yf.download`: the latter logs failures and returns an empty
    frame, which hides whether Yahoo was down (retry) or the symbol is unknown (quarantine). Both
    run the same request and parsing code per ticker.

    Args:
        tickers: Yahoo symbols.
        start: First date (inclusive).
        end: Last date (inclusive).
        home: Data home; yfinance's timezone and cookie caches go to `<home>/cache/yfinance`
            instead of the user's home folder.
        exchange: The calendar whose session dates the bars are dated by (`reader.session_dates`:
            yfinance stamps a daily bar at midnight of the listing's own timezone).

    Raises:
        TransientSourceError: network failure, HTTP 5xx or rate limit.
        SourceUnreachable: Yahoo's host name does not resolve from this machine.
        SourceError: unknown or delisted symbol, or no rows in the window.
    """
    yf = import_yfinance()  # imported here: it is slow to import and only this source needs it

    _point_yfinance_caches(str(Path(home) / "cache" / "yfinance"))
    # Raise instead of logging and returning an empty frame, so failures can be told apart.
    yf.config.debug.hide_exceptions = False
    # yfinance memoizes the timezone probe's response in-process, a 5xx page included: without this
    # a retry in the same worker would replay the failure instead of asking Yahoo again.
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()
    session = _yfinance_session()
    out: dict[str, pd.DataFrame] = {}
    for ticker in tickers:
        _ANSWERS.seen = []
        try:
            raw = yf.Ticker(ticker, session=session).history(
                start=start.isoformat(),
                end=(end + dt.timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                interval="1d",
                auto_adjust=False,
                actions=False,
                timeout=30,
            )
        except Exception as err:  # classified below: yfinance raises many unrelated types
            raise classify_yfinance_error(ticker, err, _chart_statuses(ticker)) from err
        if raw is None or raw.dropna(how="all").empty:
            raise SourceError(f"{ticker}: yfinance returned no prices for {start}..{end}")
        try:
            one = reader.price_frame(raw.dropna(how="all"), exchange, ticker, f"yfinance {ticker}")
        except reader.PriceFileError as err:
            raise SourceError(str(err)) from err
        out[ticker] = one[list(reader.COLUMNS)]
    return out


_IMPORT_LOCK = threading.Lock()


def load_http_client() -> None:
    """Load yfinance's HTTP client (curl_cffi) so that it keeps its own libcurl, whatever comes later.

    TensorFlow's library exports a libcurl and a BoringSSL of its own. When TensorFlow (keras
    included) is loaded first, curl_cffi's bundled libcurl-impersonate binds to those, which know
    nothing of browser impersonation, and every request fails with "ImpersonateError('Impersonating
    chrome152 is not supported')" (yfinance issue #2528): in a process that trained a model, or a test
    session that imported keras first. Loaded with RTLD_DEEPBIND, curl_cffi resolves its own symbols
    first, whatever was loaded before. Once curl_cffi is loaded it stays as it is, so this must come
    before any other import of yfinance or curl_cffi in the process.
    """
    with _IMPORT_LOCK:
        if "curl_cffi" in sys.modules or not (
            hasattr(os, "RTLD_DEEPBIND") and hasattr(sys, "setdlopenflags")
        ):
            return
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            import curl_cffi.requests  # noqa: F401  (loads its compiled libcurl)
        except ImportError:  # yfinance then falls back to plain requests
            pass
        finally:
            sys.setdlopenflags(flags)


def import_yfinance():
    """yfinance, imported after `load_http_client` (how this package always imports it)."""
    load_http_client()
    import yfinance

    return yfinance


def yahoo_host() -> str:
    """The host yfinance fetches daily history from (read from yfinance, so a redirect applies)."""
    import_yfinance()
    try:
        from yfinance.scrapers import history

        base = str(history._BASE_URL_)
    except (ImportError, AttributeError):  # another yfinance layout: its documented default
        base = "https://query2.finance.yahoo.com"
    return urlsplit(base).hostname or base


def check_reachable(source: SourceConfig, attempts: int = 3, pause_s: float = 2.0) -> None:
    """Fail at once, before any ticker, when the source's host does not resolve from this machine.

    A few quick attempts absorb a resolver hiccup; no network at all fails in seconds, once, instead
    of every ticker retrying the same error for minutes. Only the yfinance source has a host.

    Raises:
        SourceUnreachable: naming the host and the resolver's answer.
    """
    if source.kind != "yfinance":
        return
    host = yahoo_host()
    for attempt in range(attempts):
        try:
            socket.getaddrinfo(host, 443)
            return
        except socket.gaierror as err:
            reason = err.strerror or str(err)
        if attempt + 1 < attempts:
            time.sleep(pause_s)
    raise SourceUnreachable(
        f"Yahoo Finance is unreachable from this machine: {host} does not resolve ({reason}, "
        f"{attempts} attempts); no ticker was fetched"
    )


@functools.cache
def _point_yfinance_caches(location: str) -> None:
    """Move yfinance's timezone, cookie and ISIN caches to `location`, once per location.

    Once: moving closes yfinance's cache database, which would pull it from under a fetch running in
    another task thread. yfinance also keeps a database open once used, so in one process the first
    home used wins (a deployed run is one process with one home).
    """
    import yfinance as yf

    yf.set_tz_cache_location(location)  # yfinance 1.7's exported name; it moves all three caches


# yfinance swallows the HTTP status of Yahoo's answer: a timezone probe that got an error reply
# returns "no timezone", after which yfinance asks another endpoint (quoteSummary) or raises "possibly
# delisted". So a Yahoo outage (HTTP 5xx on the chart API) surfaced as "unknown symbol (HTTP 404)". The
# session below records the status of every answer in the calling thread; the chart API's own
# statuses decide the class of a failure.
_ANSWERS = threading.local()


@functools.cache
def _yfinance_session():
    """One HTTP session for yfinance in this process (yfinance keeps one per process anyway), which
    notes each answer's path and HTTP status for the calling thread; None without curl_cffi."""
    try:
        from curl_cffi import requests as curl_requests
    except ImportError:  # yfinance then uses plain requests; statuses stay unknown
        return None

    class AnswerRecordingSession(curl_requests.Session):
        def request(self, method, url, *args, **kwargs):
            answer = super().request(method, url, *args, **kwargs)
            seen = getattr(_ANSWERS, "seen", None)
            if seen is not None:
                seen.append((urlsplit(str(url)).path, int(answer.status_code)))
            return answer

    return AnswerRecordingSession(impersonate="chrome")  # what yfinance's own session impersonates


def _chart_statuses(ticker: str) -> list[int]:
    """HTTP statuses of the chart API's answers for `ticker` in this thread's last fetch."""
    suffix = f"/v8/finance/chart/{ticker}"
    return [status for path, status in getattr(_ANSWERS, "seen", []) if path.endswith(suffix)]


# Exception type names of the HTTP clients yfinance may use (curl_cffi or requests) for a failure
# on the wire; matched by name so neither client has to be imported here.
_NETWORK_ERROR_NAMES = frozenset(
    {
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeoutError",
        "ChunkedEncodingError",
        "RemoteDisconnected",
        "ProxyError",
        "SSLError",
        "CurlError",
        "RequestException",
    }
)
# A host name that does not resolve: curl_cffi's DNSError (curl error 6), requests' NameResolutionError,
# the socket module's gaierror.
_NAME_RESOLUTION_NAMES = frozenset({"DNSError", "NameResolutionError", "gaierror"})
_CURL_HINT = re.compile(r"\s*See https://curl\.se/\S+ first for more details\.?")


def one_line(err: BaseException) -> str:
    """The exception's first line without curl's link boilerplate, at most 200 characters."""
    text = _CURL_HINT.sub("", str(err)).strip().splitlines()
    line = text[0].strip() if text else type(err).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def classify_yfinance_error(
    ticker: str, err: BaseException, chart_statuses: list[int] | tuple = ()
) -> SourceError:
    """Turn an exception raised inside yfinance into a one-line SourceError naming the ticker.

    `chart_statuses` are the HTTP statuses Yahoo's chart API answered for this ticker (recorded by
    the session, since yfinance hides them). Yahoo fails in these shapes (yfinance's issue tracker):
    an HTML or empty page with 5xx (non-JSON: "Expecting value: line 1 column 1"), a JSON error body
    with 5xx (`{"chart"|"finance": {"result": null, "error": {"code": "Internal Server Error"}}}`),
    429 for rate limits, and 404 with `{"chart": {"error": {"code": "Not Found"}}}` for an unknown
    symbol. Transient: 5xx or 429 from the chart API whatever yfinance raised next, a failure on the
    wire, a non-JSON reply. Unreachable (not retried): a host name that does not resolve. Permanent:
    everything else, an unknown or delisted symbol first of all.
    """
    from yfinance import exceptions as yfe

    names = {cls.__name__ for cls in type(err).__mro__}
    if "ImpersonateError" in names:  # not the network: this process's HTTP client (see import_yfinance)
        return SourceError(
            f"{ticker}: yfinance's HTTP client cannot work in this process ({one_line(err)}): curl_cffi was "
            "loaded after TensorFlow, whose own libcurl then answers its calls; import yfinance through "
            "models.prices.sources.import_yfinance() before TensorFlow or keras"
        )
    server_errors = [s for s in chart_statuses if s >= 500]
    if isinstance(err, yfe.YFRateLimitError) or 429 in chart_statuses:
        return TransientSourceError(f"{ticker}: Yahoo rate-limited the request (HTTP 429)")
    if server_errors:  # whatever yfinance raised after it (its fallback's 404, "possibly delisted")
        return TransientSourceError(f"{ticker}: Yahoo answered HTTP {server_errors[-1]} (a server error)")
    if names & _NAME_RESOLUTION_NAMES:
        return SourceUnreachable(f"{ticker}: cannot resolve Yahoo's host from this machine: {one_line(err)}")
    if "HTTPError" in names:  # raised by raise_for_status(): the status decides
        status = getattr(getattr(err, "response", None), "status_code", None) or 0
        if status >= 500:
            return TransientSourceError(f"{ticker}: Yahoo answered HTTP {status}: {one_line(err)}")
        # yfinance falls back to quoteSummary for a symbol without a timezone; its 404 means unknown.
        return SourceError(f"{ticker}: unknown or delisted symbol on Yahoo (HTTP {status}: {one_line(err)})")
    if isinstance(err, (OSError, TimeoutError)) or names & _NETWORK_ERROR_NAMES:
        return TransientSourceError(
            f"{ticker}: network error while fetching from Yahoo: {type(err).__name__}: {one_line(err)}"
        )
    if isinstance(err, json.JSONDecodeError) or "JSONDecodeError" in names:
        return TransientSourceError(
            f"{ticker}: Yahoo answered with a non-JSON page (a server error such as HTTP 5xx): {one_line(err)}"
        )
    if isinstance(err, yfe.YFDataException) and "DOWN" in str(err).upper():
        return TransientSourceError(f"{ticker}: Yahoo Finance is down: {one_line(err)}")
    if isinstance(err, yfe.YFTickerMissingError):
        return SourceError(f"{ticker}: unknown or delisted symbol on Yahoo ({one_line(err)})")
    return SourceError(f"{ticker}: yfinance failed: {type(err).__name__}: {one_line(err)}")
