"""Lineage in the price store: one namespace per source, the old layout adopted, backfill, subsets,
one staleness rule for first and later ingests, and a changed folder file read again."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.config import PipelineConfig, SourceConfig
from models.dataset.build import fingerprint
from models.prices import calendar, freshness, ingest, sample, sources, store

END = dt.date(2024, 12, 31)
SIGNAL = SourceConfig(tickers=("AAA",), start=dt.date(2023, 1, 3), end=END)
NOISE = SIGNAL.model_copy(update={"sample_variant": "noise"})
FETCHED = pd.Timestamp("2025-01-02 22:00", tz="UTC")


def label(source: SourceConfig) -> str:
    return sources.source_label(source)


def generated(source: SourceConfig, ticker: str = "AAA") -> pd.DataFrame:
    return sample.generate(
        ticker, source.end, start=source.start, seed=source.sample_seed, variant=source.sample_variant
    )


def same_values(stored: pd.DataFrame, expected: pd.DataFrame) -> bool:
    columns = ["open", "high", "low", "close", "adj_close", "volume"]
    return len(stored) == len(expected) and np.allclose(
        stored[columns].to_numpy(float), expected[columns].to_numpy(float), rtol=0, atol=0
    )


def counting_loads(monkeypatch) -> list[tuple]:
    """Record every call the ingest makes to a source."""
    calls: list[tuple] = []
    real = sources.load

    def load(source, ticker, start, end, *args, **kwargs):
        calls.append((ticker, start, end))
        return real(source, ticker, start, end, *args, **kwargs)

    monkeypatch.setattr(sources, "load", load)
    return calls


def legacy_file(home: Path, ticker: str, parts: list[tuple[SourceConfig, dt.date, dt.date]]) -> Path:
    """A store file as the old layout wrote it: <home>/prices/<TICKER>.parquet, rows tagged by source."""
    frames = []
    for source, start, end in parts:
        frame = sample.generate(ticker, end, start=start, variant=source.sample_variant)
        frames.append(store.to_store_table(frame, label(source), FETCHED))
    path = home / "prices" / f"{ticker}.parquet"
    store.write_atomic(pa.concat_tables(frames), path)
    return path


# --- one namespace per source ------------------------------------------------------------------


def test_each_source_is_stored_in_its_own_readable_folder_and_never_mixed(tmp_path):
    ingest.ingest_ticker(SIGNAL, "AAA", tmp_path, END, FETCHED)
    noise = ingest.ingest_ticker(NOISE, "AAA", tmp_path, END, FETCHED)
    # The noise ingest fetched its own prices instead of finding "up to date" signal prices.
    assert noise.status == "ok" and noise.rows_added == len(generated(NOISE))
    assert store.price_path(tmp_path, "AAA", source=label(SIGNAL)) == (
        tmp_path / "prices" / "sample-signal-seed-7" / "AAA.parquet"
    )
    assert store.price_path(tmp_path, "AAA", source=label(NOISE)).parent.name == "sample-noise-seed-7"
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(SIGNAL)), generated(SIGNAL))
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(NOISE)), generated(NOISE))
    marker = json.loads((tmp_path / "prices" / "sample-noise-seed-7" / "source.json").read_text())
    assert marker == {"source": "sample:noise:seed=7", "key": "sample-noise-seed-7"}
    # What a run trains on is read from its own source's folder only.
    prices = freshness.stored_prices(NOISE, tmp_path, ["AAA"], END)
    np.testing.assert_array_equal(prices["AAA"].adj_close, generated(NOISE)["adj_close"].to_numpy())


def test_source_keys_are_readable_and_distinct():
    assert store.source_key("sample:signal:seed=7") == "sample-signal-seed-7"
    assert store.source_key("sample:signal:seed=8") == "sample-signal-seed-8"
    assert store.source_key("yfinance") == "yfinance"
    a, b = store.source_key("folder:/data/a/prices"), store.source_key("folder:/data/b/prices")
    assert a.startswith("folder-prices-") and b.startswith("folder-prices-") and a != b


def test_writing_one_sources_prices_onto_anothers_is_refused_naming_both(tmp_path):
    ingest.ingest_ticker(SIGNAL, "AAA", tmp_path, END, FETCHED)
    signal_file = store.price_path(tmp_path, "AAA", source=label(SIGNAL))
    noise_file = store.price_path(tmp_path, "AAA", source=label(NOISE))
    noise_file.parent.mkdir(parents=True)
    noise_file.write_bytes(signal_file.read_bytes())  # e.g. copied by hand into the wrong folder
    before = noise_file.read_bytes()
    with pytest.raises(store.SourceMismatchError) as caught:
        ingest.ingest_ticker(NOISE, "AAA", tmp_path, END, FETCHED)
    assert "'sample:signal:seed=7'" in str(caught.value) and "'sample:noise:seed=7'" in str(caught.value)
    assert noise_file.read_bytes() == before
    # A folder claimed by another source (source.json) is refused too.
    (noise_file.parent / "source.json").write_text(json.dumps({"source": "yfinance"}))
    noise_file.unlink()
    with pytest.raises(store.SourceMismatchError, match="holds prices from 'yfinance', not from"):
        ingest.ingest_ticker(NOISE, "AAA", tmp_path, END, FETCHED)


# --- a store written by the old layout ------------------------------------------------------------


def test_an_old_single_source_file_moves_into_its_namespace_unchanged(tmp_path, monkeypatch):
    old = legacy_file(tmp_path, "AAA", [(SIGNAL, SIGNAL.start, END)])
    digest = hashlib.sha256(old.read_bytes()).hexdigest()
    calls = counting_loads(monkeypatch)
    record = ingest.ingest_ticker(SIGNAL, "AAA", tmp_path, END, FETCHED)
    moved = store.price_path(tmp_path, "AAA", source=label(SIGNAL))
    assert not old.exists() and hashlib.sha256(moved.read_bytes()).hexdigest() == digest
    assert record.status == "up_to_date" and calls == []  # nothing fetched again
    assert record.note == f"moved {old} (written before per-source folders) to {moved}"


def test_an_old_file_of_another_source_goes_to_that_source_and_this_one_is_fetched(tmp_path):
    old = legacy_file(tmp_path, "AAA", [(SIGNAL, SIGNAL.start, END)])  # the signal market's demo
    record = ingest.ingest_ticker(NOISE, "AAA", tmp_path, END, FETCHED)  # then --variant noise
    assert not old.exists()
    assert record.status == "ok" and record.rows_added == len(generated(NOISE))
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(NOISE)), generated(NOISE))
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(SIGNAL)), generated(SIGNAL))


def test_an_old_file_that_mixes_sources_is_set_aside_and_the_ticker_fetched_again(tmp_path):
    mid = dt.date(2024, 6, 28)
    old = legacy_file(
        tmp_path, "AAA", [(SIGNAL, SIGNAL.start, mid), (NOISE, mid + dt.timedelta(days=3), END)]
    )
    original = old.read_bytes()
    record = ingest.ingest_ticker(SIGNAL, "AAA", tmp_path, END, FETCHED)
    aside = tmp_path / "prices" / "_legacy" / "AAA.parquet"
    assert aside.read_bytes() == original and not old.exists()  # kept, byte for byte, and unused
    assert record.note == (
        f"set {old} aside as {aside}, unused: it mixes prices from 'sample:noise:seed=7', "
        "'sample:signal:seed=7'"
    )
    assert record.status == "ok" and record.rows_added == len(generated(SIGNAL))
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(SIGNAL)), generated(SIGNAL))


# --- start: wider backfills, narrower reads a subset -----------------------------------------------


def test_a_wider_start_backfills_once_and_a_narrower_one_reads_the_subset(tmp_path, monkeypatch):
    late = SourceConfig(tickers=("AAA",), start=dt.date(2020, 1, 2), end=END)
    wide = late.model_copy(update={"start": dt.date(2016, 1, 4)})
    ingest.ingest_ticker(late, "AAA", tmp_path, END, FETCHED)
    record = ingest.ingest_ticker(wide, "AAA", tmp_path, END, FETCHED)
    backfilled = len(calendar.sessions("XNYS", wide.start, dt.date(2019, 12, 31)))
    assert record.status == "backfilled" and record.rows_added == backfilled
    assert record.first_date == "2016-01-04" and record.fetched_from == "2016-01-04"
    assert same_values(store.read_prices(tmp_path, "AAA", source=label(wide)), generated(wide))
    calls = counting_loads(monkeypatch)
    assert ingest.ingest_ticker(wide, "AAA", tmp_path, END, FETCHED).status == "up_to_date"
    assert calls == []

    # Narrowing back reads the stored subset: the same rows, the same fingerprint as a fresh home.
    assert ingest.ingest_ticker(late, "AAA", tmp_path, END, FETCHED).status == "up_to_date"
    fresh = tmp_path / "fresh"
    ingest.ingest_ticker(late, "AAA", fresh, END, FETCHED)
    config = PipelineConfig(source=late)
    here = freshness.stored_prices(late, tmp_path, ["AAA"], END)
    assert str(pd.Timestamp(here["AAA"].date[0]).date()) == "2020-01-02"
    describe = sources.describe(late)
    assert fingerprint(here, config, describe) == fingerprint(
        freshness.stored_prices(late, fresh, ["AAA"], END), config, describe
    )
    assert fingerprint(here, config, describe) != fingerprint(
        freshness.stored_prices(wide, tmp_path, ["AAA"], END), config, describe
    )


def test_a_source_without_earlier_history_is_asked_once_not_every_night(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    generated(SIGNAL).to_csv(folder / "AAA.csv", index=False)  # history from 2023-01-03
    source = SourceConfig(kind="folder", folder=str(folder), tickers=("AAA",), start=SIGNAL.start, end=END)
    ingest.ingest_ticker(source, "AAA", tmp_path, END, FETCHED)
    wider = source.model_copy(update={"start": dt.date(2016, 1, 4)})
    calls = counting_loads(monkeypatch)
    record = ingest.ingest_ticker(wider, "AAA", tmp_path, END, FETCHED)
    assert record.status == "ok" and record.rows_added == 0 and len(calls) == 1
    assert store.read_meta(tmp_path, "AAA", source=label(source))["asked_from"] == "2016-01-04"
    assert ingest.ingest_ticker(wider, "AAA", tmp_path, END, FETCHED).status == "up_to_date"
    assert len(calls) == 1  # asked once; the store remembers the source has nothing earlier


# --- staleness: one rule, first and later ingests ---------------------------------------------------


def folder_until(tmp_path: Path, last: dt.date, **extra) -> SourceConfig:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    frame = sample.generate("ACME", last, start=dt.date(2024, 1, 2))
    frame.to_csv(folder / "ACME.csv", index=False)
    return SourceConfig(
        kind="folder", folder=str(folder), tickers=("ACME",), start=dt.date(2024, 1, 2), **extra
    )


STALE = (
    r"^ACME: the folder source's newest price is on 2024-06-27, 1 XNYS session\(s\) before 2024-06-28 "
    r"\(the last closed session\)\. If this history ends there on purpose \(a research data set\), pass "
    r"--end 2024-06-27 \(source\.end\) to train on it as of that day; otherwise the feed is stale or the "
    r"symbol was delisted$"
)


def test_a_first_ingest_is_judged_stale_exactly_like_a_later_one(tmp_path):
    source = folder_until(tmp_path, dt.date(2024, 6, 27))
    with pytest.raises(ingest.StaleSourceError, match=STALE):  # first ingest: nothing stored yet
        ingest.ingest_ticker(source, "ACME", tmp_path / "first", dt.date(2024, 6, 28), FETCHED)
    assert not (tmp_path / "first" / "prices").exists()
    later = tmp_path / "later"
    ingest.ingest_ticker(source, "ACME", later, dt.date(2024, 6, 27), FETCHED)
    with pytest.raises(ingest.StaleSourceError, match=STALE):  # later ingest, same message
        ingest.ingest_ticker(source, "ACME", later, dt.date(2024, 6, 28), FETCHED)


def test_historical_mode_and_an_allowed_lag(tmp_path):
    source = folder_until(tmp_path, dt.date(2024, 6, 27), end=dt.date(2024, 6, 27))
    first = ingest.ingest_ticker(source, "ACME", tmp_path / "h", source.end, FETCHED)
    assert first.status == "ok" and first.last_date == "2024-06-27"
    assert ingest.ingest_ticker(source, "ACME", tmp_path / "h", source.end, FETCHED).status == "up_to_date"
    lagging = source.model_copy(update={"end": None, "max_lag_sessions": 1})
    record = ingest.ingest_ticker(lagging, "ACME", tmp_path / "lag", dt.date(2024, 6, 28), FETCHED)
    assert record.status == "ok" and record.last_date == "2024-06-27"
    with pytest.raises(ingest.StaleSourceError, match=r"2 XNYS session\(s\) before 2024-07-01"):
        ingest.ingest_ticker(lagging, "ACME", tmp_path / "lag", dt.date(2024, 7, 1), FETCHED)


def test_resolve_end_never_goes_past_the_last_closed_session():
    now = pd.Timestamp("2025-01-03 23:00", tz="UTC")
    assert ingest.resolve_end(SourceConfig(), now) == dt.date(2025, 1, 3)
    # An end after `now` (a config validates `end` against the real clock, not this pinned one).
    assert ingest.resolve_end(SourceConfig(end=dt.date(2025, 6, 2)), now) == dt.date(2025, 1, 3)
    assert ingest.resolve_end(SourceConfig(end=dt.date(2020, 6, 30)), now) == dt.date(2020, 6, 30)


# --- a folder file that changed is read again --------------------------------------------------------


def test_a_bad_file_put_in_place_after_a_same_day_ingest_is_read(tmp_path, monkeypatch):
    source = folder_until(tmp_path, dt.date(2024, 6, 28))
    ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 6, 28), FETCHED)
    path = store.price_path(tmp_path, "ACME", source=label(source))
    meta = store.read_meta(tmp_path, "ACME", source=label(source))
    csv_file = Path(source.folder) / "ACME.csv"
    assert meta["source_file"] == {
        "path": str(csv_file.resolve()),
        "sha256": hashlib.sha256(csv_file.read_bytes()).hexdigest(),
    }
    calls = counting_loads(monkeypatch)
    assert (
        ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 6, 28), FETCHED).status == "up_to_date"
    )
    assert calls == []  # unchanged file: not read

    before = path.read_bytes()
    broken = pd.read_csv(csv_file)
    broken.loc[3, "high"] = broken.loc[3, "low"] / 2  # far before any overlap
    broken.to_csv(csv_file, index=False)
    with pytest.raises(store.PriceValidationError, match=r"ACME 2024-01-05 column 'high': high below low"):
        ingest.ingest_ticker(source, "ACME", tmp_path, dt.date(2024, 6, 28), FETCHED)
    assert path.read_bytes() == before and len(calls) == 1
