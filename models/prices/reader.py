"""One reader for daily price files and frames, used by the folder source, `python -m models predict`,
the serving smoke test and `Predictor.predict`, so what trains a model is what it can predict from.

Accepted shapes, as CSV, as Parquet, or as a DataFrame in memory:

- the store's columns `date, open, high, low, close, adj_close, volume` in the usual spellings (`Date`,
  `Adj Close`, any case), with or without a `ticker` (or `symbol`) column; other columns are ignored;
- what yfinance writes: `Ticker.history(...)` (dates in the index with the exchange's UTC offset,
  `Dividends`, `Stock Splits` and `Capital Gains` columns, no `Adj Close` unless auto_adjust=False)
  and `yf.download(...)` (columns (Price, Ticker) or, with group_by="ticker", (Ticker, Price), for one
  ticker or several; in CSV a three-row header `Price,...` / `Ticker,...` / `Date,,,`), each through
  `.to_csv()` and `.to_parquet()`.

Dates become the exchange's session dates (`session_dates`): a timestamp that is midnight in the
timezone it is written in is that date (yfinance writes New York midnight as `00:00:00-05:00`, others
write midnight UTC); any other timestamp with a timezone is an instant, and its session is its date in
the exchange's timezone (05:00 UTC is New York's midnight in winter: that New York day). A naive
timestamp is a date in the exchange's own calendar.

Every row keeps where it came from in a `location` column, so that any error about it, here or in
`store.validate_prices` ("... (1 row(s); /data/ACME.csv: line 120)"), names the file and the line. One numbering, as you would look a row up: in a
CSV file the physical line (1 is the first line of the file; header lines and blank lines count, as in
an editor); in a Parquet file or a DataFrame the row number counting the first data row as row 1.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import validate_ticker
from models.prices import calendar

PRICE_FIELDS = ("open", "high", "low", "close", "adj_close", "volume")
COLUMNS = ("date", *PRICE_FIELDS)
LOCATION = "location"

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
    "ticker": "ticker",
    "symbol": "ticker",
}
# The strings pandas' CSV reader takes for a missing value (its defaults), so a CSV read here means
# what it meant when pandas read it.
MISSING = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
    | {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
# YYYY-MM-DD, optionally a time, optionally a UTC offset (Z, +HH:MM, +HHMM).
DATE_PATTERN = re.compile(
    r"^(?P<wall>\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?)"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?$"
)


class PriceFileError(ValueError):
    """A price file or frame that cannot be read as daily prices; the message names file and line."""


def read_price_file(path: str | Path, exchange: str, ticker: str | None = None) -> pd.DataFrame:
    """Daily prices from a CSV or Parquet file in any accepted shape (see the module docstring).

    Args:
        path: A `.csv` or `.parquet` file.
        exchange: The exchange whose session dates the timestamps are mapped to (e.g. XNYS).
        ticker: The ticker wanted. Without it, every ticker the file holds; a file that names none
            (no `ticker` column, not a yf.download file) holds the ticker named by its stem.

    Returns:
        Columns ticker, date (datetime64[ns], session dates), open, high, low, close, adj_close,
        volume (float64) and `location` ("<file>: line N" or "<file>: row N"), in file order.

    Raises:
        PriceFileError: unreadable bytes, missing columns, a value that is not a number or a date, or
            a file that does not hold `ticker`; the message names the file, and the line or row.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        raw, locations = _read_csv(path)
    else:
        try:
            raw = pd.read_parquet(path)
        except Exception as err:  # the reader's own message says what is wrong with the bytes
            raise PriceFileError(f"{path}: cannot be read: {err}") from err
        locations = np.array([f"{path}: row {i + 1}" for i in range(len(raw))], dtype=object)
    if raw.empty:
        raise PriceFileError(f"{path}: no rows")
    default = ticker or path.stem
    return _normalize(raw, locations, str(path), exchange, default, wanted=ticker)


def price_frame(
    frame: pd.DataFrame, exchange: str, ticker: str | None = None, origin: str = "prices"
) -> pd.DataFrame:
    """The same as `read_price_file` for a DataFrame already in memory (e.g. `Ticker.history()`).

    Args:
        frame: Prices in any accepted shape.
        exchange: The exchange whose session dates the timestamps are mapped to.
        ticker: The ticker of a frame that names none; None leaves such rows with ticker "".
        origin: How errors name the frame ("prices: row 12").
    """
    if frame.empty:
        raise PriceFileError(f"{origin}: no rows")
    locations = np.array([f"{origin}: row {i + 1}" for i in range(len(frame))], dtype=object)
    if LOCATION in frame.columns:  # rows read from files before: keep their file and line
        known = frame[LOCATION].to_numpy(dtype=object)
        locations = np.where(pd.isna(known), locations, known)
    return _normalize(frame, locations, origin, exchange, ticker or "", wanted=None)


def session_dates(stamps: pd.Series, exchange: str) -> pd.Series:
    """Session dates (tz-naive midnight, datetime64[ns]) of tz-aware timestamps.

    A timestamp at midnight in its own timezone is that date; any other is an instant whose session
    is its date in the exchange's timezone. Never the UTC date of an instant: New York's midnight is
    04:00 or 05:00 UTC, and its UTC date is the right day only by luck.
    """
    stamps = pd.Series(stamps)
    wall = stamps.dt.tz_localize(None)
    return _dates_of(wall, stamps, exchange)


def _dates_of(wall: pd.Series, instants: pd.Series, exchange: str) -> pd.Series:
    """The wall date where the wall time is midnight, else the instant's date in the exchange's tz."""
    midnight = (wall == wall.dt.normalize()).to_numpy()
    local = instants.dt.tz_convert(calendar.timezone(exchange)).dt.tz_localize(None).dt.normalize()
    dates = np.where(
        midnight, wall.dt.normalize().to_numpy("datetime64[ns]"), local.to_numpy("datetime64[ns]")
    )
    return pd.Series(dates, index=wall.index, dtype="datetime64[ns]")


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The CSV's records as strings (None for missing), with the physical line of each data record."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            records = _records(fh)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PriceFileError(f"{path}: cannot be read: {err}") from err
    if not records:
        raise PriceFileError(f"{path}: cannot be read: No columns to parse from file")
    (_, header), body = records[0], records[1:]
    columns: list[object] = [h.strip() for h in header]
    names: list[str] | None = None
    if _is_download_header(records):
        # yf.download(...).to_csv(): "Price,Close,..." / "Ticker,ACME,..." / "Date,,,..." then rows.
        levels = [[c.strip() for c in records[0][1]], [c.strip() for c in records[1][1]]]
        names = [levels[0][0], levels[1][0]]
        columns = [records[2][1][0].strip(), *zip(levels[0][1:], levels[1][1:], strict=False)]
        body = records[3:]
    width = len(header)
    for line, row in body:
        if len(row) != width:
            raise PriceFileError(f"{path}: line {line}: {len(row)} fields where the header has {width}")
    values = [[None if c.strip() in MISSING else c.strip() for c in row] for _, row in body]
    if names is None:
        raw = pd.DataFrame(values, columns=columns, dtype=object)
    else:
        index_name, rest = columns[0], columns[1:]
        data = pd.DataFrame([v[1:] for v in values], columns=pd.MultiIndex.from_tuples(rest, names=names))
        data.index = pd.Index([v[0] for v in values], name=index_name)
        raw = data
    return raw, np.array([f"{path}: line {line}" for line, _ in body], dtype=object)


def _records(fh) -> list[tuple[int, list[str]]]:
    """(physical line where the record starts, fields) of every non-blank record."""
    reader = csv.reader(fh)
    out = []
    previous = 0
    for row in reader:
        start = previous + 1
        previous = reader.line_num
        if not row or all(not c.strip() for c in row) and len(row) <= 1:
            continue  # a blank line
        out.append((start, row))
    return out


def _is_download_header(records: list[tuple[int, list[str]]]) -> bool:
    if len(records) < 3:
        return False
    first, second, third = (records[i][1][0].strip().lower() if records[i][1] else "" for i in range(3))
    return (
        {first, second} == {"price", "ticker"}
        and third in ("date", "datetime")
        and all(not c.strip() for c in records[2][1][1:])
    )


def _normalize(
    raw: pd.DataFrame, locations: np.ndarray, origin: str, exchange: str, default: str, wanted: str | None
) -> pd.DataFrame:
    if isinstance(raw.columns, pd.MultiIndex):
        raw, locations = _long_from_download(raw, locations, origin)
    if "date" not in {_key(c) for c in raw.columns} and (
        isinstance(raw.index, pd.DatetimeIndex) or _key(raw.index.name) in ("date", "datetime")
    ):
        raw = raw.reset_index(names="date" if raw.index.name is None else raw.index.name)
    frame = _rename(raw, origin)
    locations = np.asarray(locations, dtype=object)
    if "ticker" in frame.columns:
        tickers = frame["ticker"].astype(object)
        missing = tickers.isna().to_numpy()
        if missing.any():
            raise PriceFileError(f"{locations[int(np.argmax(missing))]} column 'ticker': missing ticker")
        frame["ticker"] = [str(t).strip().upper() for t in tickers]
    else:
        frame["ticker"] = default.strip().upper() if default else ""
    if wanted is not None:
        wanted = validate_ticker(wanted)
        keep = (frame["ticker"] == wanted).to_numpy()
        if not keep.any():
            held = sorted(set(frame["ticker"]))
            raise PriceFileError(f"{origin}: holds no rows for {wanted} (tickers in it: {held})")
        frame, locations = frame.loc[keep], locations[keep]
    frame = frame.reset_index(drop=True)
    frame["date"] = _dates(frame["date"], locations, exchange)
    for column in PRICE_FIELDS:
        frame[column] = _numbers(frame[column], column, locations)
    frame[LOCATION] = locations
    return frame[["ticker", *COLUMNS, LOCATION]]


def _long_from_download(raw: pd.DataFrame, locations: np.ndarray, origin: str):
    """yf.download's wide frame (one column per (field, ticker)) as rows with a ticker column."""
    if raw.columns.nlevels != 2:
        raise PriceFileError(f"{origin}: {raw.columns.nlevels} column header levels; yf.download writes 2")
    names = [_key(n) for n in raw.columns.names]
    if "ticker" in names:
        level = names.index("ticker")
    else:  # unnamed levels: the one holding the price fields is not the ticker level
        fields = [{_key(v) for v in raw.columns.get_level_values(i)} for i in range(2)]
        level = 1 if fields[0] & set(COLUMN_ALIASES) else 0
    parts, where = [], []
    for ticker in dict.fromkeys(raw.columns.get_level_values(level)):
        one = raw.xs(ticker, axis=1, level=level)
        # A wide frame has a row for every date any of its tickers traded: a date on which this
        # ticker has no value at all (before its listing, a failed download) is no row of its own.
        held = ~one.isna().all(axis=1).to_numpy()
        if held.any():
            parts.append(one.loc[held].assign(ticker=str(ticker)))
            where.append(locations[held])
    if not parts:
        raise PriceFileError(f"{origin}: no rows")
    return pd.concat(parts), np.concatenate(where)


def _key(name: object) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower())


def _rename(raw: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Map the usual spellings (`Date`, `Adj Close`, `adj_close`, any case) to the store's names."""
    renamed: dict[object, str] = {}
    for column in raw.columns:
        target = COLUMN_ALIASES.get(_key(column))
        if target is not None:
            if target in renamed.values():
                raise PriceFileError(f"{origin}: two columns map to {target!r}")
            renamed[column] = target
    frame = raw.rename(columns=renamed)
    missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in frame.columns]
    if missing:
        raise PriceFileError(f"{origin}: missing column(s) {missing}; found {list(raw.columns)}")
    if "adj_close" not in frame.columns:
        # Without Adj Close (yfinance's default auto_adjust=True), Close is the adjusted close.
        frame = frame.assign(adj_close=frame["close"])
    return frame[[c for c in frame.columns if c in ("ticker", *COLUMNS)]].copy()


def _dates(values: pd.Series, locations: np.ndarray, exchange: str) -> pd.Series:
    """Session dates, or an error naming the first value that is not a date."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return session_dates(values, exchange)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.normalize().astype("datetime64[ns]")
    if values.map(lambda v: isinstance(v, str) or v is None).all():
        return _dates_from_text(values, locations, exchange)
    # Python date/datetime objects (a Parquet date32 column), maybe mixed with missing values.
    try:
        parsed = pd.to_datetime(values, errors="coerce")
    except (TypeError, ValueError):
        parsed = pd.Series(pd.NaT, index=values.index)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return session_dates(parsed, exchange)
    bad = parsed.isna().to_numpy() | values.map(lambda v: isinstance(v, (int, float, np.number))).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise PriceFileError(f"{locations[i]} column 'date': {values.iloc[i]!r} is not a date")
    return parsed.dt.normalize().astype("datetime64[ns]")


def _dates_from_text(values: pd.Series, locations: np.ndarray, exchange: str) -> pd.Series:
    text = values.fillna("").astype(str).str.strip()
    parts = text.str.extract(DATE_PATTERN)
    bad = parts["wall"].isna().to_numpy()
    wall = pd.to_datetime(parts["wall"], format="ISO8601", errors="coerce")
    bad = bad | wall.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise PriceFileError(
            f"{locations[i]} column 'date': {values.iloc[i]!r} is not a YYYY-MM-DD date "
            "(optionally with a time and a UTC offset)"
        )
    aware = parts["offset"].notna().to_numpy()
    if aware.any() and not aware.all():
        i = int(np.argmax(aware != aware[0]))
        raise PriceFileError(
            f"{locations[i]} column 'date': {values.iloc[i]!r} "
            + ("has a UTC offset and" if aware[i] else "has no UTC offset and")
            + f" {values.iloc[0]!r} (the first row) "
            + ("does not" if aware[i] else "does")
            + ": one file, one kind of timestamp"
        )
    if not aware.any():
        return wall.dt.normalize().astype("datetime64[ns]")
    # Midnight in the offset it is written with is a date (what yfinance writes); else an instant.
    return _dates_of(wall, pd.to_datetime(text, format="ISO8601", utc=True), exchange)


def _numbers(values: pd.Series, column: str, locations: np.ndarray) -> pd.Series:
    """Floats, or an error naming the first value that is not a number (missing values stay NaN)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() & values.notna()).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise PriceFileError(f"{locations[i]} column {column!r}: {values.iloc[i]!r} is not a number")
    return numbers.astype(np.float64)
