"""Real price files as users have them: what yfinance itself writes, every timezone shape, old history.

The yfinance files are produced by yfinance's own code (`Ticker.history`, `yf.download`, then pandas'
`.to_csv()` / `.to_parquet()`) against the local fake of Yahoo's chart API, so their shapes are the
real ones: dates with a UTC offset, Dividends/Stock Splits columns, the three-row download header.
Each is read by the one reader (`models.prices.reader`) and ingested through the folder source.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.config import SourceConfig
from models.dataset.build import build_dataset
from models.prices import calendar, ingest, reader, sources, store
from tests.helpers import tiny_config
from tests.yahoo_fake import FakeYahoo, Listing, adjusted, redirect_yfinance, traded_bars
from tests.yfinance_writer import write_with_yfinance

START, END = dt.date(2024, 1, 2), dt.date(2024, 6, 28)  # spans the switch to daylight saving time
FETCHED_AT = pd.Timestamp("2024-07-01 22:00", tz="UTC")
SESSIONS = calendar.sessions("XNYS", START, END)
LISTED = pd.Timestamp("2024-03-01")  # LATE's first session


@pytest.fixture(scope="module")
def yahoo(tmp_path_factory):
    """The fake Yahoo serving ACME (with a dividend, so Close and Adj Close differ) and OTHR."""
    patch = pytest.MonkeyPatch()
    fake = FakeYahoo().start()
    redirect_yfinance(patch, fake.url)
    fake.listings["ACME"] = Listing(traded_bars(SESSIONS, seed=1), dividends={"2024-03-06": 0.8})
    fake.listings["OTHR"] = Listing(traded_bars(SESSIONS, seed=2, level=40))
    fake.listings["LATE"] = Listing(traded_bars(SESSIONS[SESSIONS >= LISTED], seed=3, level=10))  # an IPO
    yield fake
    fake.stop()
    patch.undo()


SPAN = {"start": START.isoformat(), "end": (END + dt.timedelta(days=1)).isoformat()}  # end exclusive
# name: (file name, yfinance call, tickers, options, whether Close is adjusted (auto_adjust=True))
SHAPES: dict[str, tuple[str, str, list[str], dict, bool]] = {
    "history.csv": ("ACME.csv", "history", ["ACME"], {}, True),
    "history-unadjusted.csv": ("ACME.csv", "history", ["ACME"], {"auto_adjust": False}, False),
    "history.parquet": ("ACME.parquet", "history", ["ACME"], {}, True),
    "download.csv": ("ACME.csv", "download", ["ACME"], {}, True),
    "download-unadjusted.csv": ("ACME.csv", "download", ["ACME"], {"auto_adjust": False}, False),
    "download-two-tickers.csv": ("ACME.csv", "download", ["ACME", "OTHR"], {}, True),
    "download-by-ticker.csv": ("ACME.csv", "download", ["ACME", "OTHR"], {"group_by": "ticker"}, True),
    "download.parquet": ("ACME.parquet", "download", ["ACME"], {}, True),
    "download-two-tickers.parquet": ("ACME.parquet", "download", ["ACME", "OTHR"], {}, True),
}


@pytest.fixture(scope="module")
def written(yahoo, tmp_path_factory) -> dict[str, Path]:
    """Every shape, written by yfinance itself, each in a folder of its own: name -> file."""
    root = tmp_path_factory.mktemp("yfinance-files")
    specs = []
    for name, (file_name, call, tickers, options, _) in SHAPES.items():
        (root / name).mkdir()
        specs.append(
            {
                "path": str(root / name / file_name),
                "call": call,
                "tickers": tickers,
                "options": SPAN | options,
            }
        )
    (root / "othr-as-acme").mkdir()  # a download of another ticker saved under ACME's name
    other = {"path": str(root / "othr-as-acme" / "ACME.csv"), "call": "download", "tickers": ["OTHR"]}
    (root / "with-late").mkdir()  # LATE listed in March: no values before, in a wide frame
    late = {"path": str(root / "with-late" / "LATE.csv"), "call": "download", "tickers": ["ACME", "LATE"]}
    write_with_yfinance(
        yahoo.url, root / "cache", [*specs, other | {"options": SPAN}, late | {"options": SPAN}]
    )
    extra = {"othr-as-acme": Path(other["path"]), "with-late": Path(late["path"])}
    return {name: root / name / SHAPES[name][0] for name in SHAPES} | extra


def served_close(yahoo: FakeYahoo, adjusted_close: bool) -> tuple[np.ndarray, np.ndarray]:
    """ACME's close and adj_close as Yahoo serves them (auto_adjust=True scales Close to Adj Close)."""
    frame = adjusted(yahoo.listings["ACME"])
    close = frame["adjclose"] if adjusted_close else frame["close"]
    return close.to_numpy(), frame["adjclose"].to_numpy()


def folder_source(folder: Path, tickers=("ACME",), **extra) -> SourceConfig:
    return SourceConfig(kind="folder", folder=str(folder), tickers=tickers, start=START, **extra)


def stored_from(home: Path, folder: Path, ticker: str = "ACME") -> pd.DataFrame:
    """What the store holds for `ticker` from the folder source reading `folder`."""
    return store.read_prices(home, ticker, source=sources.source_label(folder_source(folder)))


def test_the_shapes_are_yfinances_own(written):
    """The files really are what yfinance writes (so the tests below read the real thing)."""
    head = written["history.csv"].read_text().splitlines()[:2]
    assert head[0] == "Date,Open,High,Low,Close,Volume,Dividends,Stock Splits"
    assert head[1].startswith("2024-01-02 00:00:00-05:00,")
    assert str(pd.read_parquet(written["history.parquet"]).index.tz) == "America/New_York"
    assert written["download.csv"].read_text().splitlines()[:3] == [
        "Price,Close,High,Low,Open,Volume",
        "Ticker,ACME,ACME,ACME,ACME,ACME",
        "Date,,,,,",
    ]
    assert written["download-by-ticker.csv"].read_text().splitlines()[0].startswith("Ticker,")
    assert pd.read_parquet(written["download-two-tickers.parquet"]).columns.names == ["Price", "Ticker"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_yfinance_shape_reads_as_one_row_per_session(yahoo, written, shape):
    path = written[shape]
    got = reader.read_price_file(path, "XNYS", ticker="ACME")
    assert list(got["date"]) == list(SESSIONS)
    assert (got["ticker"] == "ACME").all()
    close, adj_close = served_close(yahoo, SHAPES[shape][4])
    np.testing.assert_allclose(got["close"], close, rtol=1e-9)
    np.testing.assert_allclose(got["adj_close"], adj_close, rtol=1e-9)
    unit = "line" if path.suffix == ".csv" else "row"
    header_lines = 3 if shape.startswith("download") and path.suffix == ".csv" else 1
    first = header_lines + 1 if unit == "line" else 1
    assert got["location"].iloc[0] == f"{path}: {unit} {first}"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_yfinance_shape_ingests_through_the_folder_source(written, tmp_path, shape):
    folder = written[shape].parent
    record = ingest.ingest_ticker(folder_source(folder), "ACME", tmp_path / "home", END, FETCHED_AT)
    assert record.status == "ok" and record.rows_added == len(SESSIONS) and record.gaps == 0
    stored = stored_from(tmp_path / "home", folder)
    assert list(stored["date"]) == list(SESSIONS)


def test_a_download_file_without_the_ticker_is_refused_naming_what_it_holds(written):
    folder = written["othr-as-acme"].parent
    with pytest.raises(
        sources.SourceError, match=r"ACME.csv: holds no rows for ACME \(tickers in it: \['OTHR'\]\)"
    ):
        sources.load(folder_source(folder), "ACME", START, END)


def test_a_ticker_listed_later_in_a_download_file_starts_at_its_listing(written, tmp_path):
    """yf.download leaves a later listing's cells empty before it traded: not rows of that ticker."""
    path = written["with-late"]
    wide = pd.read_csv(path, header=[0, 1], index_col=0)
    assert wide["Close"]["LATE"].isna().sum() == (SESSIONS < LISTED).sum()  # empty cells before March
    record = ingest.ingest_ticker(folder_source(path.parent, ("LATE",)), "LATE", tmp_path, END, FETCHED_AT)
    stored = stored_from(tmp_path, path.parent, "LATE")
    assert list(stored["date"]) == list(SESSIONS[SESSIONS >= LISTED]) and record.gaps == 0
    assert len(reader.read_price_file(path, "XNYS", ticker="ACME")) == len(SESSIONS)


def test_a_history_frame_in_memory_reads_like_its_file(written):
    frame = pd.read_parquet(written["history.parquet"])  # Ticker.history()'s frame, tz-aware index
    from_frame = reader.price_frame(frame, "XNYS", ticker="ACME")
    from_file = reader.read_price_file(written["history.csv"], "XNYS")
    columns = ["ticker", *reader.COLUMNS]
    pd.testing.assert_frame_equal(from_frame[columns], from_file[columns], rtol=1e-12)
    wide = reader.price_frame(pd.read_parquet(written["download-two-tickers.parquet"]), "XNYS")
    assert sorted(set(wide["ticker"])) == ["ACME", "OTHR"] and len(wide) == 2 * len(SESSIONS)


def test_fetch_yfinance_dates_bars_by_the_listings_own_session_not_the_utc_date(yahoo, tmp_path):
    """Tokyo's midnight is 15:00 UTC the day before: a UTC date would shift every bar by one day."""
    days = calendar.sessions("XTKS", dt.date(2024, 3, 1), dt.date(2024, 3, 29))
    yahoo.listings["7203.T"] = Listing(traded_bars(days, seed=5, level=2500), timezone="Asia/Tokyo")
    frame = sources.fetch_yfinance(["7203.T"], days[0].date(), days[-1].date(), tmp_path, "XTKS")["7203.T"]
    assert list(frame["date"]) == list(days)
    store.validate_prices("7203.T", frame, store.ValidationRules(exchange="XTKS"))


# ---- every timezone shape: one row per session, none dropped, none twice ----------------------------


def good_prices(days: pd.DatetimeIndex = SESSIONS) -> pd.DataFrame:
    bars = traded_bars(days, seed=11, level=50)
    return bars.assign(adj_close=bars["close"] * 0.97)


def stamped(days: pd.DatetimeIndex, shape: str) -> pd.Series:
    """The session dates as a file might carry them."""
    ny = pd.DatetimeIndex(days).tz_localize("America/New_York")
    return pd.Series(
        {
            "naive": pd.DatetimeIndex(days),
            "exchange-tz": ny,  # what Ticker.history writes: New York midnight, -05:00 / -04:00
            "utc-0400-0500": ny.tz_convert("UTC"),  # the same instants in UTC: 05:00, 04:00 in summer
            "utc-midnight": pd.DatetimeIndex(days).tz_localize("UTC"),  # a date kept as midnight UTC
            "utc-at-the-close": (ny + pd.Timedelta(hours=16)).tz_convert("UTC"),  # 21:00 / 20:00 UTC
        }[shape]
    )


TZ_SHAPES = ["naive", "exchange-tz", "utc-0400-0500", "utc-midnight", "utc-at-the-close"]


def write_stamped(folder: Path, days: pd.DatetimeIndex, shape: str, kind: str) -> Path:
    """The same bars on the same days whatever the shape (a prefix of SESSIONS gets the same values)."""
    frame = good_prices(days if days[0] < SESSIONS[0] else SESSIONS).iloc[: len(days)].reset_index(drop=True)
    frame["date"] = stamped(days, shape).to_numpy()
    frame = frame.rename(columns={"date": "Date", "adj_close": "Adj Close"})
    path = folder / f"ACME.{kind}"
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("shape", TZ_SHAPES)
def test_every_timezone_shape_becomes_the_exchange_session(tmp_path, shape, kind):
    folder = tmp_path / "in"
    folder.mkdir()
    path = write_stamped(folder, SESSIONS, shape, kind)
    if shape == "utc-0400-0500" and kind == "csv":
        assert (
            "2024-01-02 05:00:00+00:00" in path.read_text()
            and "2024-06-28 04:00:00+00:00" in path.read_text()
        )
    record = ingest.ingest_ticker(folder_source(folder), "ACME", tmp_path / "home", END, FETCHED_AT)
    stored = stored_from(tmp_path / "home", folder)
    assert list(stored["date"]) == list(SESSIONS)  # every session once, none dropped, none moved
    assert record.rows_added == len(SESSIONS) and record.gaps == 0
    np.testing.assert_allclose(stored["close"], good_prices()["close"])


@pytest.mark.parametrize(("exchange", "tz"), [("XTKS", "Asia/Tokyo"), ("XASX", "Australia/Sydney")])
def test_midnight_east_of_utc_written_in_utc_is_the_exchanges_day_not_the_utc_one(tmp_path, exchange, tz):
    """Tokyo's midnight is 15:00 UTC of the day before: the UTC date would be one session early."""
    days = calendar.sessions(exchange, dt.date(2024, 3, 1), dt.date(2024, 4, 30))
    frame = good_prices(days).rename(columns={"date": "Date", "adj_close": "Adj Close"})
    frame["Date"] = [str(s) for s in pd.DatetimeIndex(days).tz_localize(tz).tz_convert("UTC")]
    assert frame["Date"].iloc[0].endswith(":00:00+00:00") and not frame["Date"].iloc[0].startswith(
        "2024-03-01"
    )
    frame.to_csv(tmp_path / "X.csv", index=False)
    got = reader.read_price_file(tmp_path / "X.csv", exchange)
    assert list(got["date"]) == list(days)
    store.validate_prices("X", got, store.ValidationRules(exchange=exchange))


def test_new_york_midnight_in_utc_after_a_naive_file_stores_each_session_once(tmp_path):
    """The reported failure: a store filled from a naive CSV, then a Parquet stamped at New York
    midnight in UTC. It left six sessions stored twice, dropped the last row and broke the retrain."""
    folder, home = tmp_path / "in", tmp_path / "home"
    folder.mkdir()
    first_end = dt.date(2024, 6, 14)
    write_stamped(folder, SESSIONS[SESSIONS <= pd.Timestamp(first_end)], "naive", "csv")
    ingest.ingest_ticker(folder_source(folder), "ACME", home, first_end, FETCHED_AT)
    (folder / "ACME.csv").unlink()
    write_stamped(folder, SESSIONS, "utc-0400-0500", "parquet")
    record = ingest.ingest_ticker(folder_source(folder), "ACME", home, END, FETCHED_AT)
    stored = stored_from(home, folder)
    assert list(stored["date"]) == list(SESSIONS)
    assert record.rows_added == len(calendar.sessions("XNYS", dt.date(2024, 6, 17), END))
    # ...and the dataset builds (before, the duplicates failed it with a misleading leakage message).
    config = tiny_config(window={"length": 5}, labels={"horizon": 2})
    label = sources.source_label(folder_source(folder))
    prices = {"ACME": store.read_columns(home, "ACME", START, END, source=label)}
    info = build_dataset(prices, config, tmp_path / "dataset", {"kind": "folder"})
    assert info.data_quality["missing_sessions"] == 0 and sum(info.sizes.values()) > 0


def test_one_file_mixing_offsets_and_naive_dates_is_refused(tmp_path):
    frame = good_prices().rename(columns={"date": "Date", "adj_close": "Adj Close"})
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    frame.loc[5, "Date"] = "2024-01-10 00:00:00-05:00"
    frame.to_csv(tmp_path / "ACME.csv", index=False)
    with pytest.raises(
        reader.PriceFileError, match=r"ACME.csv: line 7 column 'date': .* has a UTC offset and"
    ):
        reader.read_price_file(tmp_path / "ACME.csv", "XNYS")


def test_two_timestamps_of_one_session_are_a_duplicate_naming_file_and_line(tmp_path):
    """New York midnight and 05:00 UTC are the same session: one row per session, always."""
    frame = good_prices().rename(columns={"date": "Date", "adj_close": "Adj Close"})
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d 00:00:00-05:00")
    frame = frame.iloc[:10]
    extra = frame.iloc[[4]].assign(Date="2024-01-08 05:00:00+00:00")
    pd.concat([frame.iloc[:5], extra, frame.iloc[5:]]).to_csv(tmp_path / "ACME.csv", index=False)
    prices = reader.read_price_file(tmp_path / "ACME.csv", "XNYS")
    with pytest.raises(
        store.PriceValidationError,
        match=r"^ACME 2024-01-08 column 'date': duplicate date \(1 row\(s\); \S*/ACME.csv: line 7\)$",
    ):
        store.validate_prices("ACME", prices)


# ---- history before 1990 ------------------------------------------------------------------------------


def test_history_before_1990_is_ingested_on_the_calendar_of_its_own_dates(tmp_path):
    days = calendar.sessions("XNYS", dt.date(1985, 1, 2), dt.date(1986, 12, 31))
    assert days[0] == pd.Timestamp("1985-01-02") and len(days) == 505
    folder = tmp_path / "in"
    folder.mkdir()
    write_stamped(folder, days, "naive", "csv")
    source = SourceConfig(kind="folder", folder=str(folder), tickers=("ACME",), start=dt.date(1985, 1, 2))
    record = ingest.ingest_ticker(source, "ACME", tmp_path / "home", dt.date(1986, 12, 31), FETCHED_AT)
    assert record.status == "ok" and record.rows_added == 505 and record.gaps == 0
    assert record.first_date == "1985-01-02"


def test_a_date_outside_what_the_calendar_knows_says_so(tmp_path):
    """AIXK's calendar starts in 2017: a 2016 date is outside it, not "not a session"."""
    first = type(calendar.get_calendar("AIXK")).bound_min()
    days = calendar.sessions("AIXK", dt.date(2017, 1, 2), dt.date(2017, 3, 31))
    frame = good_prices(days)
    frame = pd.concat([frame.iloc[:1].assign(date=pd.Timestamp("2016-12-29")), frame], ignore_index=True)
    with pytest.raises(
        store.PriceValidationError,
        match=rf"2016-12-29 column 'date': before {pd.Timestamp(days[0]).date()}, the first session "
        r"the AIXK calendar knows, so it cannot be checked",
    ):
        store.validate_prices("ACME", frame, store.ValidationRules(exchange="AIXK"))
    assert pd.Timestamp(first) > pd.Timestamp("2016-12-29")
