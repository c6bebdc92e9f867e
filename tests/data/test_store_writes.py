"""Store writes: temp-file cleanup by age never takes a live writer's file; a failed write leaves
nothing behind and the stored file as it was."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.prices import store


def temp_file(folder, name: str, age_s: float):
    path = folder / f".{name}.{age_s:.0f}s.tmp"
    path.write_bytes(b"partial parquet")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_cleanup_removes_only_temp_files_older_than_any_live_write(tmp_path):
    target = tmp_path / "ACME.parquet"
    live = temp_file(tmp_path, target.name, age_s=5)  # a writer of this file, still writing
    young = temp_file(tmp_path, target.name, age_s=store.STALE_TEMP_SECONDS - 60)
    dead = temp_file(tmp_path, target.name, age_s=store.STALE_TEMP_SECONDS + 60)
    other = temp_file(tmp_path, "OTHER.parquet", age_s=store.STALE_TEMP_SECONDS + 60)
    store.write_atomic(pa.table({"x": [1, 2, 3]}), target)
    assert pq.read_table(target).column("x").to_pylist() == [1, 2, 3]
    assert live.exists() and young.exists() and other.exists()
    assert not dead.exists()
    assert store.remove_stale_temp_files(target, older_than_s=30) == [young]
    assert live.exists()


def test_a_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "ACME.parquet"
    store.write_atomic(pa.table({"x": [1]}), target)
    before = target.read_bytes()

    def broken(table, where):
        open(where, "wb").write(b"half")  # noqa: SIM115
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_atomic(pa.table({"x": [2]}), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ACME.parquet"]


def test_rows_of_another_source_in_a_file_without_lineage_are_refused_by_name(tmp_path):
    """A file copied by hand into another source's namespace, its lineage metadata stripped: the rows'
    own `source` column still refuses the mix, naming both sources."""
    import datetime as dt

    import pandas as pd

    from models.prices import sample

    frame = sample.generate("AAA", dt.date(2024, 3, 28), start=dt.date(2024, 1, 2), seed=1)
    at = pd.Timestamp("2024-03-29", tz="UTC")
    path, _ = store.upsert(tmp_path, "AAA", frame, "sample-a", at)
    copied = store.price_path(tmp_path, "AAA", source="sample-b")
    copied.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), copied)
    expected = "AAA: the store holds prices from 'sample-a'; refusing to add prices from 'sample-b' to them"
    with pytest.raises(store.SourceMismatchError) as err:
        store.check_source(tmp_path, "AAA", source="sample-b")
    assert str(err.value) == expected
    with pytest.raises(store.SourceMismatchError) as err:
        store.upsert(tmp_path, "AAA", frame, "sample-b", at)
    assert str(err.value) == expected
    store.check_source(tmp_path, "AAA", source="sample-a")  # its own namespace: fine


def small_history():
    import datetime as dt

    import pandas as pd

    from models.prices import sample

    frame = sample.generate("AAA", dt.date(2024, 3, 28), start=dt.date(2024, 1, 2), seed=1)
    return frame, pd.Timestamp("2024-03-29", tz="UTC")


def test_upsert_and_replace_apply_the_callers_rules(tmp_path):
    frame, at = small_history()
    strict = store.ValidationRules(max_price=1.0)  # every sample price is above 1
    for write in (store.upsert, store.replace_prices):
        with pytest.raises(store.PriceValidationError, match="AAA"):
            write(tmp_path, "AAA", frame, "sample-a", at, rules=strict)


def test_a_restated_price_of_a_cent_is_a_changed_row(tmp_path):
    """Stored rows are compared with a relative tolerance of 1e-12 and no absolute one."""
    frame, at = small_history()
    store.upsert(tmp_path, "AAA", frame, "sample-a", at)
    restated = frame.copy()
    restated.loc[restated.index[-1], ["close", "adj_close"]] += 0.01
    restated.loc[restated.index[-1], "high"] = max(
        restated["high"].iloc[-1], restated["close"].iloc[-1], restated["open"].iloc[-1]
    )
    _, changed = store.upsert(tmp_path, "AAA", restated, "sample-a", at)
    assert changed == 1
    assert (
        store.read_prices(tmp_path, "AAA", source="sample-a")["close"].iloc[-1] == restated["close"].iloc[-1]
    )


def test_a_write_creates_the_folders_it_needs(tmp_path):
    target = tmp_path / "prices" / "new-source" / "ACME.parquet"
    store.write_atomic(pa.table({"x": [1]}), target)
    assert pq.read_table(target).column("x").to_pylist() == [1]


def test_cleanup_goes_on_past_a_file_another_cleanup_removed_first(tmp_path, monkeypatch):
    target = tmp_path / "ACME.parquet"
    first = temp_file(tmp_path, target.name, age_s=store.STALE_TEMP_SECONDS + 60)
    second = temp_file(tmp_path, "ACME.parquet.b", age_s=store.STALE_TEMP_SECONDS + 60)
    second = second.rename(tmp_path / f".{target.name}.zz.tmp")
    real_unlink, raced = type(first).unlink, []

    def unlink(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        if not raced:  # the other cleanup removed this one a moment before us
            raced.append(path)
            raise FileNotFoundError(path)

    monkeypatch.setattr(type(first), "unlink", unlink)
    removed = store.remove_stale_temp_files(target)
    assert len(raced) == 1 and removed == [p for p in (first, second) if p not in raced]
    assert not first.exists() and not second.exists()
