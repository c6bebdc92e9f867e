"""Price sources behind one interface: the sample market, a CSV/Parquet folder, and yfinance.

`load` returns a frame with columns date, open, high, low, close, adj_close, volume (dates tz-naive,
datetime64[ns]) or raises an error that names the ticker. There is no fallback from one source to
another: the source a model was trained on is always the one configured, and it is recorded.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd

from models import sample
from models.config import SourceConfig, validate_ticker

COLUMN_ALIASES = {
    "date": "date",
    "datetime": "date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adj close": "adj_close",
    "adj_close": "adj_close",
    "adjclose": "adj_close",
    "adjusted close": "adj_close",
    "volume": "volume",
}


class SourceError(RuntimeError):
    """A source could not deliver prices for a ticker (network, unknown symbol, unreadable file)."""


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
    elif source.kind == "folder":
        info["folder"] = str(Path(source.folder or "").resolve())
    return info


def source_label(source: SourceConfig) -> str:
    """The value stored in the price store's `source` column."""
    if source.kind == "sample":
        return f"sample:{source.sample_variant}:seed={source.sample_seed}"
    if source.kind == "folder":
        return f"folder:{Path(source.folder or '').resolve()}"
    return "yfinance"


def load(source: SourceConfig, ticker: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Daily prices of `ticker` from `start` to `end` (inclusive) from the configured source."""
    ticker = validate_ticker(ticker)
    if source.kind == "sample":
        frame = sample.generate(
            ticker,
            end,
            start=start,
            seed=source.sample_seed,
            variant=source.sample_variant,
            exchange=source.exchange,
        )
    elif source.kind == "folder":
        frame = read_folder_file(Path(source.folder or ""), ticker)
    else:
        frame = fetch_yfinance([ticker], start, end)[ticker]
    in_range = (frame["date"] >= pd.Timestamp(start)) & (frame["date"] <= pd.Timestamp(end))
    return frame.loc[in_range].reset_index(drop=True)


def normalize_columns(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Map the usual spellings (`Date`, `Adj Close`, `adj_close`, any case) to the store's names."""
    renamed: dict[str, str] = {}
    for column in frame.columns:
        key = re.sub(r"\s+", " ", str(column).strip().lower())
        if key in COLUMN_ALIASES:
            target = COLUMN_ALIASES[key]
            if target in renamed.values():
                raise SourceError(f"{origin}: two columns map to {target!r}")
            renamed[column] = target
    frame = frame.rename(columns=renamed)
    missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in frame]
    if missing:
        raise SourceError(f"{origin}: missing column(s) {missing}; found {list(frame.columns)}")
    if "adj_close" not in frame:
        frame = frame.assign(adj_close=frame["close"])
    return frame[["date", "open", "high", "low", "close", "adj_close", "volume"]]


def read_folder_file(folder: Path, ticker: str) -> pd.DataFrame:
    """Read `<folder>/<TICKER>.parquet` or `.csv`; errors name the file, line and column."""
    candidates = [folder / f"{ticker}.parquet", folder / f"{ticker}.csv"]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise SourceError(f"{ticker}: no {candidates[0].name} or {candidates[1].name} in {folder}")
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # the reader's own message says what is wrong with the bytes
        raise SourceError(f"{path}: cannot be read: {err}") from err
    if raw.empty:
        raise SourceError(f"{path}: no rows")
    frame = normalize_columns(raw, str(path))
    parsed = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        line = i + 2 if path.suffix == ".csv" else i  # +1 header, +1 one-based
        where = f"line {line}" if path.suffix == ".csv" else f"row {line}"
        raise SourceError(
            f"{path}: {where} column 'date': {frame['date'].iloc[i]!r} is not a YYYY-MM-DD date"
        )
    frame = frame.assign(date=parsed.astype("datetime64[ns]"))
    for column in ("open", "high", "low", "close", "adj_close", "volume"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise SourceError(
                f"{path}: line {i + 2} column {column!r}: {frame[column].iloc[i]!r} is not a number"
            )
        frame[column] = values
    return frame


def fetch_yfinance(tickers: list[str], start: dt.date, end: dt.date) -> dict[str, pd.DataFrame]:
    """Download unadjusted OHLC + Adj Close through yfinance; an empty result raises for that ticker.

    `yf.download` does not raise when Yahoo is unreachable or a symbol is unknown: it logs and returns
    an empty frame. That is turned into a SourceError naming the ticker.
    """
    import yfinance as yf  # imported here: it is slow to import and only this source needs it

    raw = yf.download(
        tickers,
        start=start.isoformat(),
        end=(end + dt.timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
        interval="1d",
        auto_adjust=False,
        actions=False,
        group_by="column",
        multi_level_index=True,
        progress=False,
        threads=len(tickers) > 1,
    )
    out: dict[str, pd.DataFrame] = {}
    for ticker in tickers:
        if raw is None or raw.empty or ticker not in raw.columns.get_level_values("Ticker"):
            raise SourceError(f"{ticker}: yfinance returned no prices for {start}..{end}")
        one = raw.xs(ticker, axis=1, level="Ticker").dropna(how="all")
        if one.empty:
            raise SourceError(f"{ticker}: yfinance returned no prices for {start}..{end}")
        one = one.reset_index()
        one = normalize_columns(one, f"yfinance {ticker}")
        one["date"] = pd.to_datetime(one["date"]).dt.tz_localize(None).astype("datetime64[ns]")
        out[ticker] = one
    return out
