"""Incremental ingestion, restatement refetch and crash safety of the Parquet store (folder source)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.config import SourceConfig
from models.prices import calendar, ingest, sources, store

ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2024, 1, 2)
DAY_1, DAY_2 = dt.date(2024, 6, 27), dt.date(2024, 6, 28)
RUN_1 = pd.Timestamp("2024-06-27 22:00", tz="UTC")
RUN_2 = pd.Timestamp("2024-06-28 22:00", tz="UTC")


def prices(end: dt.date) -> pd.DataFrame:
    """The same market every time: values on a session never depend on `end`."""
    days = calendar.sessions("XNYS", START, DAY_2)
    close = 80 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.01, len(days))))
    frame = pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "adj_close": close,
            "volume": 5000,
        }
    )
    return frame.loc[days <= pd.Timestamp(end)].reset_index(drop=True)


@pytest.fixture
def setup(tmp_path):
    folder, home = tmp_path / "in", tmp_path / "home"
    folder.mkdir()
    source = SourceConfig(kind="folder", folder=str(folder), tickers=("ACME",), start=START)
    return source, folder, home


def acme_file(source: SourceConfig, home: Path) -> Path:
    """The store file of ACME from `source` (one folder per source under <home>/prices)."""
    return store.price_path(home, "ACME", source=sources.source_label(source))


def test_a_day_later_only_the_new_session_and_the_overlap_are_fetched(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    first = ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    assert first.status == "ok" and first.fetched_from == str(START) and first.last_date == str(DAY_1)

    prices(DAY_2).to_csv(folder / "ACME.csv", index=False)  # the source grew by one session
    second = ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    # A folder file that changed is compared over the whole stored span (yfinance asks only for the
    # overlap: tests/data/test_yfinance_source.py).
    assert second.status == "ok" and second.fetched_from == str(START)
    assert second.rows_added == 1 and second.last_date == str(DAY_2)
    stored = store.read_prices(home, "ACME", source=sources.source_label(source))
    # Rows the second run only re-read (the overlap) keep the first run's fetched_at.
    assert (stored["fetched_at"].iloc[:-1] == RUN_1).all() and stored["fetched_at"].iloc[-1] == RUN_2

    # Same day again: the store is up to date and nothing is fetched or written.
    before = acme_file(source, home).read_bytes()
    third = ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert third.status == "up_to_date" and third.rows_added == 0
    assert acme_file(source, home).read_bytes() == before


def test_a_restated_overlap_triggers_a_full_refetch(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)

    # A dividend goes ex on DAY_2: every adjusted price before it is scaled down by 2 %.
    restated = prices(DAY_2)
    restated.loc[restated.index[:-1], "adj_close"] *= 0.98
    restated.to_csv(folder / "ACME.csv", index=False)
    record = ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert record.status == "restated" and record.fetched_from == str(START)
    assert record.reason.startswith(f"adj_close restated on {len(restated) - 1} re-read session(s)")
    assert record.rows_added == len(restated)
    stored = store.read_prices(home, "ACME", source=sources.source_label(source))
    np.testing.assert_allclose(stored["adj_close"], restated["adj_close"])
    assert (stored["fetched_at"] == RUN_2).all()


def test_a_difference_within_the_tolerance_is_not_a_restatement(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    nudged = prices(DAY_2)
    nudged.loc[nudged.index[:-1], "adj_close"] *= 1 + 1e-9  # float noise from a CSV round trip
    nudged.to_csv(folder / "ACME.csv", index=False)
    record = ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert record.status == "ok" and record.reason is None  # not "restated"


def test_a_restatement_whose_history_is_broken_leaves_the_store_unchanged(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    before = acme_file(source, home).read_bytes()
    broken = prices(DAY_2)
    broken["adj_close"] *= 0.98
    broken.loc[3, "high"] = broken.loc[3, "low"] / 2  # far back, outside the overlap
    broken.to_csv(folder / "ACME.csv", index=False)
    with pytest.raises(store.PriceValidationError, match=r"ACME 2024-01-05 column 'high': high below low"):
        ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert acme_file(source, home).read_bytes() == before


WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np, pandas as pd, pyarrow.parquet as pq
    from models.prices import store

    home, mode, label = sys.argv[1], sys.argv[2], sys.argv[3]
    n = 1_500_000
    frame = pd.DataFrame({
        "date": pd.date_range("1900-01-01", periods=n, freq="h").astype("datetime64[ns]"),
        **{c: np.full(n, 10.0) for c in ("open", "high", "low", "close", "adj_close")},
        "volume": np.arange(n, dtype="int64"),
    })
    table = store.to_store_table(frame, label, pd.Timestamp("2024-01-01", tz="UTC"))
    if mode == "exit":
        real = pq.write_table
        def write_then_die(table, where, **kwargs):
            real(table.slice(0, len(table) // 3), where, **kwargs)  # part of the bytes are on disk
            os._exit(9)
        pq.write_table = write_then_die
    print("writing", flush=True)
    store.write_atomic(table, store.price_path(home, "ACME", source=label))
    """
)


def stored_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_writer(home: Path, mode: str, label: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), mode, label], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )


@pytest.fixture
def stored(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    label = sources.source_label(source)
    path = acme_file(source, home)
    return home, label, path, stored_digest(path), store.read_prices(home, "ACME", source=label)


def assert_previous_file_intact(home: Path, label: str, path: Path, digest: str, frame: pd.DataFrame) -> None:
    assert stored_digest(path) == digest
    pd.testing.assert_frame_equal(store.read_prices(home, "ACME", source=label), frame)
    assert pq.ParquetFile(path).metadata.num_rows == len(frame)


def test_a_writer_dying_midway_leaves_the_previous_file_intact(stored):
    home, label, path, digest, frame = stored
    writer = start_writer(home, "exit", label)
    assert writer.wait(timeout=120) == 9
    leftovers = list(path.parent.glob(".ACME.parquet.*.tmp"))
    assert leftovers and leftovers[0].stat().st_size > 0  # it did die mid-write, in the temp file
    assert_previous_file_intact(home, label, path, digest, frame)
    # The next write clears the leftover once it is old enough to belong to no live writer.
    old = time.time() - store.STALE_TEMP_SECONDS - 1
    os.utime(leftovers[0], (old, old))
    store.write_atomic(pq.read_table(path), path)
    assert list(path.parent.glob(".ACME.parquet.*.tmp")) == []


def test_a_writer_killed_with_sigkill_mid_write_leaves_the_previous_file_intact(stored):
    home, label, path, digest, frame = stored
    writer = start_writer(home, "kill", label)
    assert writer.stdout.readline().strip() == b"writing"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill as soon as bytes land in the temp file
        if any(p.stat().st_size > 0 for p in path.parent.glob(".ACME.parquet.*.tmp")):
            break
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=60) == -signal.SIGKILL
    if stored_digest(path) != digest:  # the write won the race: the rename is whole or absent
        assert pq.ParquetFile(path).metadata.num_rows == 1_500_000
        pytest.skip("the writer finished before the kill landed; the new file is complete")
    assert_previous_file_intact(home, label, path, digest, frame)


def test_a_source_with_nothing_new_although_sessions_closed_is_an_error(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    before = acme_file(source, home).read_bytes()
    with pytest.raises(
        ingest.StaleSourceError,
        match=r"^ACME: the folder source's newest price is on 2024-06-27, 1 XNYS session\(s\) before "
        r"2024-06-28 \(the last closed session\)\. .* pass --end 2024-06-27 \(source\.end\)",
    ):
        ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)  # the file was not updated
    assert acme_file(source, home).read_bytes() == before
    # A weekend later no session has closed: up to date, not stale.
    prices(DAY_2).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert ingest.ingest_ticker(source, "ACME", home, dt.date(2024, 6, 30), RUN_2).status == "up_to_date"


def test_a_parquet_file_with_typed_dates_in_the_index_is_read(setup):
    source, folder, home = setup
    frame = prices(DAY_1).rename(columns={"date": "Date", "adj_close": "Adj Close"})
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.tz_localize("America/New_York")
    frame.set_index("Date").to_parquet(folder / "ACME.parquet")
    record = ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    assert record.status == "ok" and record.rows_added == len(frame) and record.last_date == str(DAY_1)


def test_a_restatement_refetch_that_would_drop_stored_rows_is_refused(setup):
    source, folder, home = setup
    prices(DAY_1).to_csv(folder / "ACME.csv", index=False)
    ingest.ingest_ticker(source, "ACME", home, DAY_1, RUN_1)
    before = acme_file(source, home).read_bytes()
    shorter = prices(DAY_2).iloc[100:].copy()  # the source now only serves recent history
    shorter["adj_close"] *= 0.98
    shorter.to_csv(folder / "ACME.csv", index=False)
    with pytest.raises(sources.SourceError, match=r"refusing to drop stored rows"):
        ingest.ingest_ticker(source, "ACME", home, DAY_2, RUN_2)
    assert acme_file(source, home).read_bytes() == before
