"""A corpus of malformed folder-source inputs: each is refused with its own message, store untouched.

Every case starts from a store that already holds good data for ACME (an earlier ingest up to
2024-06-14), replaces the source file with a broken one whose fault lies in the new sessions, and
ingests up to 2024-06-28. The error must name what is wrong, and every file under `<home>/prices`
must be byte-for-byte what it was (no temp file left behind either).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.config import SourceConfig
from models.prices import calendar, ingest, sources, store

FIRST_END = dt.date(2024, 6, 14)
SECOND_END = dt.date(2024, 6, 28)
FETCHED_AT = pd.Timestamp("2024-07-01 22:00", tz="UTC")


def good_prices() -> pd.DataFrame:
    """ACME's daily bars for H1 2024 on XNYS sessions, with Yahoo-style column names."""
    days = calendar.sessions("XNYS", dt.date(2024, 1, 2), SECOND_END)
    rng = np.random.default_rng(11)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    return pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Open": close * 0.998,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Adj Close": close * 0.97,
            "Volume": rng.integers(10_000, 50_000, len(days)),
        }
    )


def row(frame: pd.DataFrame, day: str) -> int:
    return int(np.flatnonzero(frame["Date"] == day)[0])


def csv(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda folder: frame.to_csv(folder / "ACME.csv", index=False)


def edited(day: str, **values: object) -> Callable[[Path], None]:
    frame = good_prices().astype(object)
    for column, value in values.items():
        frame.loc[row(frame, day), column] = value
    return csv(frame)


def nan_row(folder: Path) -> None:
    frame = good_prices().astype(object)
    frame.loc[row(frame, "2024-06-20"), ["Open", "High", "Low", "Close", "Adj Close", "Volume"]] = None
    csv(frame)(folder)


def duplicate_date(folder: Path) -> None:
    frame = good_prices()
    i = row(frame, "2024-06-20")
    csv(pd.concat([frame.iloc[: i + 1], frame.iloc[i : i + 1], frame.iloc[i + 1 :]]))(folder)


def unsorted_dates(folder: Path) -> None:
    frame = good_prices()
    i = row(frame, "2024-06-20")
    order = list(range(len(frame)))
    order[i], order[i + 1] = order[i + 1], order[i]
    csv(frame.iloc[order])(folder)


def holiday(folder: Path) -> None:
    frame = good_prices()
    extra = frame.iloc[[row(frame, "2024-06-18")]].assign(Date="2024-06-19")  # Juneteenth: XNYS closed
    csv(pd.concat([frame, extra]).sort_values("Date"))(folder)


def missing_column(folder: Path) -> None:
    csv(good_prices().drop(columns=["Volume"]))(folder)


def empty_file(folder: Path) -> None:
    (folder / "ACME.csv").write_bytes(b"")


def header_only(folder: Path) -> None:
    csv(good_prices().iloc[:0])(folder)


def one_day_crash(folder: Path) -> None:
    frame = good_prices()
    i = row(frame, "2024-06-24")
    frame.loc[i, ["Open", "High", "Low", "Close", "Adj Close"]] *= 0.1  # -90 %, back the next day
    csv(frame)(folder)


def truncated_parquet(folder: Path) -> None:
    path = folder / "ACME.parquet"
    good_prices().to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def future_date(folder: Path) -> None:
    frame = good_prices()
    extra = frame.iloc[[-1]].assign(Date="2030-01-02")
    csv(pd.concat([frame, extra]))(folder)


def line_of(day: str, offset: int = 0) -> int:
    """The physical CSV line of `day`'s row in good_prices(): +1 for the header, +1 one-based."""
    return row(good_prices(), day) + 2 + offset


LINE_0620 = line_of("2024-06-20")


def at(line: int, file: str = "ACME.csv") -> str:
    """Where a validation error says the first broken row is: "(N row(s); <file>: line L)" at its end.

    A lookahead, so `at(L) + pattern` reads in the order of the CORPUS while the message itself ends
    with the location: "ACME 2024-06-20 column 'open': missing value (1 row(s); /.../ACME.csv: line 118)".
    """
    unit = "line" if file.endswith(".csv") else "row"
    return rf"(?=.*\(\d+ row\(s\); \S*/{re.escape(file)}: {unit} {line}\)$)"


def huge_price(folder: Path) -> None:
    frame = good_prices()
    i = row(frame, "2024-06-20")
    frame.loc[i, ["High", "Close"]] = 1e308
    csv(frame)(folder)


def huge_volume(folder: Path) -> None:
    frame = good_prices().astype(object)
    frame.loc[row(frame, "2024-06-20"), "Volume"] = 5e15
    csv(frame)(folder)


def with_blank_lines(folder: Path) -> None:
    """Blank lines before the broken row: the error names the line an editor shows (line 2739, not
    2737), so every blank line before it counts."""
    frame = good_prices().astype(object)
    frame.loc[row(frame, "2024-06-20"), "Close"] = "abc"
    text = frame.to_csv(index=False).splitlines()
    lines = [text[0], "", *text[1:10], "", "", *text[10:]]  # 3 blank lines before 2024-06-20
    (folder / "ACME.csv").write_text("\n".join(lines) + "\n")


def parquet_wrong_type(folder: Path) -> None:
    frame = good_prices().astype(object)
    frame.loc[row(frame, "2024-06-20"), "Close"] = "abc"
    frame["Close"] = frame["Close"].astype(str)
    frame.to_parquet(folder / "ACME.parquet", index=False)


def parquet_close_above_high(folder: Path) -> None:
    frame = good_prices()
    frame.loc[row(frame, "2024-06-20"), "Close"] = 1000.0
    frame.to_parquet(folder / "ACME.parquet", index=False)


def ragged_row(folder: Path) -> None:
    text = good_prices().to_csv(index=False).splitlines()
    i = row(good_prices(), "2024-06-20") + 1
    text[i] += ",7"
    (folder / "ACME.csv").write_text("\n".join(text) + "\n")


def mixed_timezones(folder: Path) -> None:
    frame = good_prices()
    stamps = pd.DatetimeIndex(frame["Date"]).tz_localize("America/New_York")
    frame["Date"] = [str(s) for s in stamps]
    frame.loc[row(good_prices(), "2024-06-20"), "Date"] = "2024-06-20"
    csv(frame)(folder)


def one_session_twice(folder: Path) -> None:
    """New York midnight with its offset and the same instant in UTC: one session, two rows."""
    frame = good_prices()
    stamps = pd.DatetimeIndex(frame["Date"]).tz_localize("America/New_York")
    frame["Date"] = [str(s) for s in stamps]
    i = row(good_prices(), "2024-06-20")
    extra = frame.iloc[[i]].assign(Date="2024-06-20 04:00:00+00:00")
    csv(pd.concat([frame.iloc[: i + 1], extra, frame.iloc[i + 1 :]]))(folder)


def other_ticker_download(folder: Path) -> None:
    """A yf.download CSV of another ticker saved as ACME.csv (three-row header, as yfinance writes)."""
    frame = good_prices().set_index("Date").drop(columns="Adj Close")
    frame.columns = pd.MultiIndex.from_product([frame.columns, ["OTHR"]], names=["Price", "Ticker"])
    frame.index.name = "Date"
    frame.to_csv(folder / "ACME.csv")


CORPUS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (write the broken source file, ticker asked for, expected error message pattern)
    "nan_row": (nan_row, "ACME", at(LINE_0620) + r"ACME 2024-06-20 column 'open': missing value"),
    "negative_price": (
        edited("2024-06-20", Close=-5.0),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'close': price must be positive",
    ),
    "zero_price": (
        edited("2024-06-20", Open=0.0),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'open': price must be positive",
    ),
    "negative_volume": (
        edited("2024-06-20", Volume=-100),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'volume': volume must be >= 0",
    ),
    "infinite_price": (
        edited("2024-06-20", High="inf"),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'high': not finite",
    ),
    "high_below_low": (
        edited("2024-06-20", High=40.0, Low=60.0),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'high': high below low",
    ),
    "close_above_high": (
        edited("2024-06-20", Close=1000.0),
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'close': close above high",
    ),
    "duplicate_date": (
        duplicate_date,
        "ACME",
        at(LINE_0620 + 1) + r"ACME 2024-06-20 column 'date': duplicate date",
    ),
    "unsorted_dates": (
        unsorted_dates,
        "ACME",
        at(LINE_0620 + 1) + r"ACME 2024-06-20 column 'date': dates not sorted ascending",
    ),
    "weekend_date": (
        edited("2024-06-21", Date="2024-06-22"),
        "ACME",
        at(line_of("2024-06-21")) + r"ACME 2024-06-22 column 'date': not a XNYS session \(Saturday\)",
    ),
    "holiday_date": (
        holiday,
        "ACME",
        at(line_of("2024-06-18", 1)) + r"ACME 2024-06-19 column 'date': not a XNYS session \(Wednesday\)",
    ),
    "missing_column": (missing_column, "ACME", r"ACME.csv: missing column\(s\) \['volume'\]"),
    "wrong_type": (
        edited("2024-06-20", Close="abc"),
        "ACME",
        rf"ACME.csv: line {LINE_0620} column 'close': 'abc' is not a number",
    ),
    "empty_file": (empty_file, "ACME", r"ACME.csv: cannot be read: No columns to parse from file"),
    "header_only": (header_only, "ACME", r"ACME.csv: no rows"),
    "path_escape_symbol": (csv(good_prices()), "../ACME", r"ticker '\.\./ACME' is not a valid symbol"),
    "one_day_90pct_drop": (
        one_day_crash,
        "ACME",
        at(line_of("2024-06-24"))
        + r"ACME 2024-06-24 column 'adj_close': adj_close moved -90\.\d% in one session \(limit 50%",
    ),
    "truncated_parquet": (truncated_parquet, "ACME", r"ACME.parquet: cannot be read: "),
    "mixed_date_formats": (
        edited("2024-06-20", Date="06/20/2024"),
        "ACME",
        rf"ACME.csv: line {LINE_0620} column 'date': '06/20/2024' is not a YYYY-MM-DD date",
    ),
    "future_date": (
        future_date,
        "ACME",
        at(len(good_prices()) + 2)
        + r"ACME 2030-01-02 column 'date': date is in the future \(today is 2024-07-01\)",
    ),
    "price_1e308": (
        huge_price,
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'high': 1e\+308 is larger than any market's price "
        r"\(max_price 1e\+09\)",
    ),
    "volume_5e15": (
        huge_volume,
        "ACME",
        at(LINE_0620) + r"ACME 2024-06-20 column 'volume': 5e\+15 is larger than any market's daily volume",
    ),
    "blank_lines": (
        with_blank_lines,
        "ACME",
        rf"ACME.csv: line {LINE_0620 + 3} column 'close': 'abc' is not a number",
    ),
    "ragged_row": (ragged_row, "ACME", rf"ACME.csv: line {LINE_0620}: 8 fields where the header has 7"),
    "parquet_wrong_type": (
        parquet_wrong_type,
        "ACME",
        rf"ACME.parquet: row {LINE_0620 - 1} column 'close': 'abc' is not a number",
    ),
    "parquet_close_above_high": (
        parquet_close_above_high,
        "ACME",
        at(LINE_0620 - 1, "ACME.parquet") + r"ACME 2024-06-20 column 'close': close above high",
    ),
    "mixed_timezones": (
        mixed_timezones,
        "ACME",
        rf"ACME.csv: line {LINE_0620} column 'date': '2024-06-20' has no UTC offset and "
        r"'2024-01-02 00:00:00-05:00' \(the first row\) does",
    ),
    "one_session_twice": (
        one_session_twice,
        "ACME",
        at(LINE_0620 + 1) + r"ACME 2024-06-20 column 'date': duplicate date",
    ),
    "other_ticker_download": (
        other_ticker_download,
        "ACME",
        r"ACME.csv: holds no rows for ACME \(tickers in it: \['OTHR'\]\)",
    ),
}


def store_fingerprint(home: Path) -> dict[str, str]:
    """sha256 of every file under <home>/prices, by relative path (a leftover temp file shows too)."""
    root = home / "prices"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def seeded(tmp_path):
    """A folder source and a store already holding ACME up to FIRST_END."""
    folder, home = tmp_path / "in", tmp_path / "home"
    folder.mkdir()
    csv(good_prices())(folder)
    source = SourceConfig(kind="folder", folder=str(folder), tickers=("ACME",), start=dt.date(2024, 1, 2))
    record = ingest.ingest_ticker(source, "ACME", home, FIRST_END, FETCHED_AT)
    assert record.status == "ok" and record.last_date == str(FIRST_END)
    (folder / "ACME.csv").unlink()
    return source, folder, home


@pytest.mark.parametrize("case", list(CORPUS))
def test_malformed_input_is_refused_and_leaves_the_store_unchanged(seeded, case):
    source, folder, home = seeded
    write, ticker, expected = CORPUS[case]
    write(folder)
    before = store_fingerprint(home)
    key = store.source_key(sources.source_label(source))
    assert set(before) == {f"{key}/ACME.parquet", f"{key}/source.json"}
    with pytest.raises((sources.SourceError, store.PriceValidationError, ValueError)) as caught:
        ingest.ingest_ticker(source, ticker, home, SECOND_END, FETCHED_AT)
    assert re.search(expected, str(caught.value)), str(caught.value)
    assert store_fingerprint(home) == before


def test_a_missing_session_is_a_reported_gap_not_an_error(seeded):
    source, folder, home = seeded
    frame = good_prices()
    csv(frame.drop(index=row(frame, "2024-06-20")))(folder)
    record = ingest.ingest_ticker(source, "ACME", home, SECOND_END, FETCHED_AT)
    assert record.status == "ok" and record.gaps == 1 and record.last_date == str(SECOND_END)
    stored = store.read_prices(home, "ACME", source=sources.source_label(source))
    assert store.session_gaps("XNYS", stored["date"]) == [dt.date(2024, 6, 20)]


def test_the_good_file_is_accepted(seeded):
    source, folder, home = seeded
    csv(good_prices())(folder)
    record = ingest.ingest_ticker(source, "ACME", home, SECOND_END, FETCHED_AT)
    assert record.status == "ok" and record.gaps == 0
    assert record.rows_added == len(calendar.sessions("XNYS", dt.date(2024, 6, 17), SECOND_END))
