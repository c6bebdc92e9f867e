"""Nightly predictions: the champion's, for each ticker's last closed session, in a plain Parquet file
written atomically; a rerun leaves it byte for byte as it was."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.monitoring import nightly
from models.monitoring import predictions as files
from models.monitoring.sessions import Champion
from models.prices import sources, store
from models.registry.bundle import MANIFEST
from tests.helpers import TRAINED_UNTIL

ROOT = Path(__file__).resolve().parents[2]
NIGHT = dt.date(2024, 7, 3)  # three sessions after the champion's training end
COLUMNS = [
    "model",
    "version",
    "ticker",
    "date",
    "p_down",
    "p_range_bound",
    "p_up",
    "label",
    "max_abs_z",
    "out_of_range",
]


def stored_frame(night_env, ticker: str) -> pd.DataFrame:
    label = sources.source_label(night_env.config.source)
    return store.read_prices(night_env.home, ticker, source=label).assign(ticker=ticker)


def test_the_sample_markets_last_session_is_predicted_by_the_champion(night):
    night.store(NIGHT)
    record = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    path = night.home / "predictions" / "updown" / f"{NIGHT}.parquet"
    assert record["status"] == "written" and record["path"] == str(path)
    assert record["version"] == 1 and record["rows"] == 8 and record["missing"] == {}

    frame = pd.read_parquet(path)
    assert list(frame.columns) == COLUMNS
    assert frame["ticker"].tolist() == night.tickers
    assert (frame["date"] == pd.Timestamp(NIGHT)).all() and (frame["version"] == 1).all()
    probs = frame[["p_down", "p_range_bound", "p_up"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert frame["label"].tolist() == [("down", "range_bound", "up")[k] for k in probs.argmax(axis=1)]

    # The consumer's predictor on the same stored prices, every window: the last one is the file's row.
    predictor = night.registry.load_predictor("updown@champion")
    prices = pd.concat([stored_frame(night, t) for t in night.tickers], ignore_index=True)
    consumer = predictor.predict(prices).groupby("ticker").tail(1).reset_index(drop=True)
    assert (consumer["date"] == pd.Timestamp(NIGHT)).all()
    np.testing.assert_allclose(probs, consumer[["p_down", "p_range_bound", "p_up"]].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(frame["max_abs_z"], consumer["max_abs_z"])
    assert frame["out_of_range"].tolist() == consumer["out_of_range"].tolist()

    meta = files.read_meta(path)
    assert meta["version"] == 1 and meta["night"] == NIGHT.isoformat() and meta["horizon"] == 5


def test_a_ticker_behind_the_night_is_predicted_on_its_own_last_session(night):
    night.store(NIGHT)
    late = night.config.source.model_copy(update={"tickers": ("AAA",)})
    label = sources.source_label(late)
    path = store.price_path(night.home, "AAA", source=label)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 2), path)  # AAA stops two sessions earlier
    record = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    frame = files.read_predictions(night.home, "updown", NIGHT)
    dates = dict(zip(frame["ticker"], frame["date"].dt.date, strict=True))
    assert dates["AAA"] == dt.date(2024, 7, 1) and dates["BBB"] == NIGHT and record["rows"] == 8


def test_rerunning_a_night_leaves_the_file_byte_for_byte(night, monkeypatch):
    night.store(NIGHT)
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    path = files.predictions_path(night.home, "updown", NIGHT)
    before = path.read_bytes()

    # Same inputs: nothing is recomputed (Keras is not even loaded) and the file is untouched.
    def no_keras(self):
        raise AssertionError("recomputed predictions whose inputs did not change")

    with monkeypatch.context() as patched:
        patched.setattr(Champion, "predictor", no_keras)
        again = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    assert again["status"] == "unchanged" and path.read_bytes() == before

    # Recomputed from scratch, the same bytes.
    forced = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT, force=True)
    assert forced["status"] == "written" and path.read_bytes() == before

    # A restated price changes the inputs: the night is predicted again.
    label = sources.source_label(night.config.source)
    stored = store.price_path(night.home, "CCC", source=label)
    table = pq.read_table(stored).to_pandas()
    table.loc[table.index[-1], ["close", "adj_close", "high"]] *= 1.01
    store.write_atomic(store.to_store_table(table, label, pd.Timestamp.now(tz="UTC")), stored)
    changed = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    assert changed["status"] == "written" and path.read_bytes() != before


def test_a_night_served_by_another_version_is_never_replaced(night):
    night.store(NIGHT)
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    path = files.predictions_path(night.home, "updown", NIGHT)
    before = path.read_bytes()
    bundle = night.registry.local_path("updown/1")
    manifest = night.registry.manifest("updown/1")
    names = [n for n in manifest["files"]]
    second = night.registry.add_version(
        "updown", {n: bundle / n for n in names}, {k: v for k, v in manifest.items() if k != "files"}
    )
    night.registry.promote("updown", second.version)
    kept = nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT, force=True)
    assert kept["status"] == "kept" and kept["version"] == 1 and path.read_bytes() == before


def test_a_failed_write_leaves_the_previous_file(night, monkeypatch):
    night.store(NIGHT)
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    path = files.predictions_path(night.home, "updown", NIGHT)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT, force=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_a_writers_temporary_file_is_never_read_as_a_night(night):
    """What a writer killed before its rename leaves (see the scorecard's kill test): skipped by
    this package and by a consumer reading the folder."""
    night.store(NIGHT)
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    path = files.predictions_path(night.home, "updown", NIGHT)
    (path.parent / f".{path.name}.0123abcd.tmp").write_bytes(b"half a parquet file")
    assert files.nights(night.home, "updown") == [NIGHT]
    assert len(pd.read_parquet(path.parent)) == 8


def test_a_consumer_reads_the_folder_with_pandas_or_pyarrow_alone(night, tmp_path):
    """The README's recipe, run in a process that cannot import this project."""
    for day in (dt.date(2024, 7, 2), NIGHT):
        night.store(day)
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, day)
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Reading the predictions")
    recipe = readme[
        readme.index("```python\n", start) + 10 : readme.index("```\n", readme.index("```python\n", start))
    ]
    script = recipe + (
        "\nassert len(history) == 16 and history['date'].nunique() == 2, history"
        "\nassert len(latest) == 8 and (latest['date'] == latest['date'].max()).all(), latest"
        "\nassert set(table.column_names) >= {'ticker', 'date', 'p_up', 'label', 'version'}"
        "\nassert tomorrow.shape == (8, 3), tomorrow"
        "\nimport sys; assert not any(m.split('.')[0] in ('models', 'tasks', 'flows') for m in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=night.home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert TRAINED_UNTIL < NIGHT
    assert (night.home / "registry" / "updown" / "1" / MANIFEST).exists()


def test_the_predictions_command_prints_a_night(night, capsys):
    from models import cli

    night.store(dt.date(2024, 7, 2))
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, dt.date(2024, 7, 2))
    night.store(NIGHT)
    nightly.predict_night(night.registry, night.home, night.config, night.tickers, NIGHT)
    home = ["--home", str(night.home), "--registry", str(night.home / "registry")]
    frame = files.read_predictions(night.home, "updown", NIGHT)

    assert cli.main(["predictions", "updown", *home]) == 0  # the latest night
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ticker", "date", "p_down", "p_range_bound", "p_up", "label", "max_abs_z", "out_of_range", "version"
    ]  # fmt: skip
    first = lines[1].split()
    assert first[:2] == ["AAA", NIGHT.isoformat()] and first[-1] == "updown/1" and len(lines) == 9
    assert first[2:6] == [f"{frame['p_down'][0]:.4f}", f"{frame['p_range_bound'][0]:.4f}",
                          f"{frame['p_up'][0]:.4f}", frame["label"][0]]  # fmt: skip

    assert cli.main(["predictions", "updown", "--date", "2024-07-02", "--csv", *home]) == 0
    import io

    earlier = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert (earlier["date"] == "2024-07-02").all() and len(earlier) == 8
    np.testing.assert_allclose(
        earlier["p_up"], files.read_predictions(night.home, "updown", dt.date(2024, 7, 2))["p_up"], atol=1e-6
    )

    # A night without a file: exit 1, one paragraph naming the nights there are.
    assert cli.main(["predictions", "updown", "--date", "2024-07-05", *home]) == 1
    err = capsys.readouterr().err
    assert "no predictions of updown for 2024-07-05" in err and "2024-07-02, 2024-07-03" in err
    assert cli.main(["predictions", "../etc", *home]) == 1  # as every subcommand: a registry error
    assert "'../etc' is not a model name" in capsys.readouterr().err
