"""The store's merge and write rules, as pure functions and on small files: which rows count as
changed, which stored rows (and their `fetched_at`) are kept, when a file is rewritten, what lineage
it carries, and which overlap differences are restatements."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.prices import sample, store

OLD = pd.Timestamp("2024-03-29", tz="UTC")
NEW = pd.Timestamp("2024-04-30", tz="UTC")


def history(end: dt.date = dt.date(2024, 3, 28)) -> pd.DataFrame:
    return sample.generate("AAA", end, start=dt.date(2024, 1, 2), seed=1)


def as_stored(frame: pd.DataFrame, at: pd.Timestamp = OLD) -> pd.DataFrame:
    return store.to_store_table(frame, "sample-a", at).to_pandas()


def test_merge_keeps_unchanged_rows_with_their_fetch_time_and_counts_added_and_changed_rows():
    frame = history()
    old = as_stored(frame.iloc[:-5])
    new = as_stored(frame.iloc[-8:], NEW)  # 3 rows already stored, unchanged, then 5 new sessions
    new.loc[new.index[0], "volume"] += 1  # one stored session restated
    merged, changed = store._merge(old, new)
    assert changed == 6
    assert merged["date"].tolist() == as_stored(frame)["date"].tolist()
    fetched = merged.set_index("date")["fetched_at"]
    restated, unchanged = new["date"].iloc[0], new["date"].iloc[1:3]
    assert fetched[restated] == NEW and (fetched[unchanged] == OLD).all()
    assert (fetched[new["date"].iloc[3:]] == NEW).all()
    assert merged.set_index("date").loc[restated, "volume"] == new["volume"].iloc[0]


def test_merge_into_an_empty_store_takes_every_row_and_an_identical_frame_changes_nothing():
    new = as_stored(history())
    merged, changed = store._merge(new.iloc[:0], new)
    assert changed == len(new) and merged.equals(new)
    merged, changed = store._merge(new, as_stored(history(), NEW))
    assert changed == 0
    assert (merged["fetched_at"] == OLD).all() and len(merged) == len(new)


@pytest.mark.parametrize("column", store.PRICE_COLUMNS)
def test_merge_sees_a_change_in_each_price_column(column):
    old = as_stored(history())
    new = old.copy()
    new.loc[new.index[10], column] = new[column].iloc[10] * 2
    merged, changed = store._merge(old, new)
    assert changed == 1
    assert merged[column].iloc[10] == new[column].iloc[10]


def test_merge_inserts_sessions_before_between_and_after_the_stored_ones_in_date_order():
    full = as_stored(history())
    old = full.iloc[[3, 4, 8, 9]].reset_index(drop=True)
    new = full.iloc[[0, 6, 12]].reset_index(drop=True)
    merged, changed = store._merge(old, new)
    assert changed == 3
    assert merged["date"].tolist() == full.iloc[[0, 3, 4, 6, 8, 9, 12]]["date"].tolist()
    assert merged.index.tolist() == list(range(7))


def test_merge_tolerates_float_noise_only_below_a_relative_1e_12():
    old = as_stored(history())
    noisy = old.copy()
    noisy["close"] = noisy["close"] * (1 + 1e-13)
    assert store._merge(old, noisy)[1] == 0
    moved = old.copy()
    moved["close"] = moved["close"] * (1 + 1e-11)
    assert store._merge(old, moved)[1] == len(old)


def test_restated_dates_are_the_overlap_dates_beyond_the_relative_tolerance():
    stored = pd.DataFrame(
        {"date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]), "adj_close": [64.0, 64, 64]}
    )
    fetched = pd.DataFrame(
        {"date": ["2024-01-03", "2024-01-04", "2024-01-05"], "adj_close": [64.5, 63.0, 32.0]}
    )  # string dates, as a source may deliver them; 01-05 is not in the store. Relative differences
    # 1/128 and 1/64, exact in binary: a difference equal to the tolerance is not a restatement.
    assert store.restated_dates(stored, fetched, tolerance=0.005) == [
        dt.date(2024, 1, 3),
        dt.date(2024, 1, 4),
    ]
    assert store.restated_dates(stored, fetched, tolerance=1 / 128) == [dt.date(2024, 1, 4)]
    assert store.restated_dates(stored, fetched, tolerance=1 / 64) == []
    assert store.restated_dates(stored.iloc[:0], fetched, tolerance=0.0) == []
    assert store.restated_dates(stored, fetched.iloc[:0], tolerance=0.0) == []


def test_an_idempotent_upsert_does_not_rewrite_the_file_but_new_lineage_does(tmp_path):
    frame = history()
    path, changed = store.upsert(tmp_path, "AAA", frame, "sample-a", OLD, meta={"asked_from": "2024-01-02"})
    assert changed == len(frame)
    assert store.read_meta(tmp_path, "AAA", source="sample-a") == {
        "source": "sample-a",
        "asked_from": "2024-01-02",
    }
    namespace = json.loads((path.parent / store.NAMESPACE_FILE).read_text())
    assert namespace == {"source": "sample-a", "key": path.parent.name}
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    assert store.upsert(tmp_path, "AAA", frame, "sample-a", NEW, meta={"asked_from": "2024-01-02"}) == (
        path,
        0,
    )
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert store.upsert(tmp_path, "AAA", frame, "sample-a", NEW, meta={"asked_from": "2023-06-01"}) == (
        path,
        0,
    )
    assert store.read_meta(tmp_path, "AAA", source="sample-a")["asked_from"] == "2023-06-01"
    assert (store.read_prices(tmp_path, "AAA", source="sample-a")["fetched_at"] == OLD).all()
    assert sorted(p.name for p in path.parent.iterdir()) == ["AAA.parquet", store.NAMESPACE_FILE]


def test_upsert_checks_the_seam_with_the_stored_row_before_the_first_new_one(tmp_path):
    frame = history()
    store.upsert(tmp_path, "AAA", frame.iloc[:-1], "sample-a", OLD)
    jump = frame.iloc[-1:].copy()
    jump[["open", "high", "low", "close", "adj_close"]] *= 3  # a 200 % move from the stored last day
    rules = store.ValidationRules(max_daily_move=0.5)
    day = pd.Timestamp(jump["date"].iloc[0]).date()
    with pytest.raises(store.PriceValidationError, match=f"AAA {day} column 'adj_close'"):
        store.upsert(tmp_path, "AAA", jump, "sample-a", NEW, rules=rules)
    stored = store.read_prices(tmp_path, "AAA", source="sample-a")
    assert len(stored) == len(frame) - 1  # untouched


def test_upsert_does_not_revalidate_stored_history_before_the_seam(tmp_path):
    """Rows already stored passed the rules when written: only the seam and the new rows are checked,
    so a stored jump, even one just before the seam, does not block tonight's rows."""
    frame = history()
    jumped = frame.copy()
    jumped.loc[jumped.index[-2] :, ["open", "high", "low", "close", "adj_close"]] *= 3
    store.upsert(tmp_path, "AAA", jumped.iloc[:-1], "sample-a", OLD)  # no rules when stored
    rules = store.ValidationRules(max_daily_move=0.5)
    _, changed = store.upsert(tmp_path, "AAA", jumped.iloc[-1:], "sample-a", NEW, rules=rules)
    assert changed == 1


def test_a_backfilled_session_is_checked_against_the_stored_one_after_it(tmp_path):
    frame = history()
    store.upsert(tmp_path, "AAA", frame.iloc[1:], "sample-a", OLD)
    early = frame.iloc[:1].copy()
    early[["open", "high", "low", "close", "adj_close"]] *= 3  # a 67 % fall into the stored history
    rules = store.ValidationRules(max_daily_move=0.5)
    with pytest.raises(store.PriceValidationError, match="adj_close"):
        store.upsert(tmp_path, "AAA", early, "sample-a", NEW, rules=rules)
    assert len(store.read_prices(tmp_path, "AAA", source="sample-a")) == len(frame) - 1


def test_replace_prices_rewrites_the_whole_history_with_its_lineage_and_counts_changed_rows(tmp_path):
    frame = history()
    store.upsert(tmp_path, "AAA", frame, "sample-a", OLD)
    restated = frame.iloc[5:].copy()
    restated[["open", "high", "low", "close", "adj_close"]] *= 0.5  # a 2:1 split, rows 0-4 gone
    path, changed = store.replace_prices(
        tmp_path, "AAA", restated, "sample-a", NEW, meta={"asked_from": "2024-01-09"}
    )
    assert changed == len(restated)
    stored = store.read_prices(tmp_path, "AAA", source="sample-a")
    assert len(stored) == len(restated)
    assert np.allclose(stored["adj_close"], restated["adj_close"])
    assert (stored["fetched_at"] == NEW).all()
    assert store.read_meta(tmp_path, "AAA", source="sample-a") == {
        "source": "sample-a",
        "asked_from": "2024-01-09",
    }
    _, changed = store.replace_prices(tmp_path, "AAA", restated, "sample-a", NEW)
    assert changed == 0
    assert store.read_meta(tmp_path, "AAA", source="sample-a") == {"source": "sample-a"}


def test_the_lineage_is_added_to_the_files_other_metadata(tmp_path):
    table = pa.table({"x": [1]}).replace_schema_metadata({b"other": b"kept"})
    lineage = {"source": "s", "asked_from": "2024-01-02"}
    out = store._with_meta(table, lineage)
    assert out.schema.metadata[b"other"] == b"kept"
    assert json.loads(out.schema.metadata[store.META_KEY]) == lineage
    assert out.schema.metadata[store.META_KEY] == json.dumps(lineage, sort_keys=True).encode()
    assert (
        json.loads(store._with_meta(pa.table({"x": [1]}), lineage).schema.metadata[store.META_KEY]) == lineage
    )


def test_check_source_trusts_recorded_lineage_and_refuses_another_source_by_name(tmp_path):
    store.check_source(tmp_path, "AAA", source="sample-b")  # no file: nothing to check
    path, _ = store.upsert(tmp_path, "AAA", history(), "sample-a", OLD)
    copied = store.price_path(tmp_path, "AAA", source="sample-b")
    copied.parent.mkdir(parents=True)
    copied.write_bytes(path.read_bytes())  # lineage says sample-a
    with pytest.raises(store.SourceMismatchError) as err:
        store.check_source(tmp_path, "AAA", source="sample-b")
    assert str(err.value) == (
        f"AAA: {copied} holds prices from 'sample-a'; refusing to use them as prices from 'sample-b'"
    )
    # Lineage decides over the rows: rows relabelled, lineage still naming this source.
    table = pq.read_table(path)
    relabelled = table.set_column(
        table.schema.get_field_index("source"), "source", pa.array(["other"] * len(table))
    )
    pq.write_table(relabelled, path)
    store.check_source(tmp_path, "AAA", source="sample-a")


def test_an_empty_frame_without_columns_has_no_restated_dates():
    """Sources answer "nothing" with a bare empty frame (yfinance does): no columns to compare."""
    stored = as_stored(history())
    assert store.restated_dates(stored, pd.DataFrame(), tolerance=0.0) == []
    assert store.restated_dates(pd.DataFrame(), stored, tolerance=0.0) == []


def test_upsert_applies_the_callers_rules_to_rows_it_already_holds(tmp_path):
    """The frame handed to upsert is validated whole, even where it equals what is stored (and so
    changes nothing): rules the caller asks for are never skipped."""
    frame = history()
    store.upsert(tmp_path, "AAA", frame, "sample-a", OLD)
    strict = store.ValidationRules(today=dt.date(2024, 3, 1))  # the frame runs to 2024-03-28
    with pytest.raises(store.PriceValidationError, match="AAA 2024-03-04 column 'date'"):
        store.upsert(tmp_path, "AAA", frame, "sample-a", NEW, rules=strict)


def test_every_write_has_the_stores_schema(tmp_path):
    frame = history()
    for write in (store.upsert, store.replace_prices):
        path, _ = write(tmp_path, "AAA", frame, "sample-a", OLD)
        assert pq.read_schema(path).remove_metadata() == store.PRICE_SCHEMA


def test_replace_prices_refuses_a_file_of_another_source_by_name(tmp_path):
    path, _ = store.upsert(tmp_path, "AAA", history(), "sample-a", OLD)
    copied = store.price_path(tmp_path, "AAA", source="sample-b")
    copied.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), copied)  # rows of sample-a
    with pytest.raises(store.SourceMismatchError) as err:
        store.replace_prices(tmp_path, "AAA", history(), "sample-b", NEW)
    assert str(err.value) == (
        "AAA: the store holds prices from 'sample-a'; refusing to add prices from 'sample-b' to them"
    )


def test_rows_of_several_other_sources_are_all_named(tmp_path):
    path = store.price_path(tmp_path, "AAA", source="sample-b")
    path.parent.mkdir(parents=True)
    table = store.to_store_table(history(), "sample-c", OLD)
    labels = ["sample-c"] * (len(table) - 1) + ["sample-a"]
    pq.write_table(table.set_column(table.schema.get_field_index("source"), "source", pa.array(labels)), path)
    with pytest.raises(store.SourceMismatchError) as err:
        store.check_source(tmp_path, "AAA", source="sample-b")
    assert str(err.value) == (
        "AAA: the store holds prices from 'sample-a', 'sample-c'; refusing to add prices from 'sample-b' to them"
    )
