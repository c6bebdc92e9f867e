"""The consumer side on a really trained tiny model: predictor parity with training's preprocessing,
a reader without project code, tamper refusal at load time, the CLI, and the serving smoke test
that gates promotion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from models.dataset import arrays as dataset_arrays
from models.dataset.build import build_dataset
from models.dataset.windows import gather
from models.registry import Registry, RegistryError
from models.registry.publication import publish_run
from models.registry.smoke import run_smoke, smoke_test, write_smoke_prices
from models.training import evaluation
from models.training import trainer as training
from tests.helpers import sample_prices, tiny_config

REPO = Path(__file__).resolve().parents[2]
SOURCE = {"kind": "sample", "synthetic": True, "notice": "SYNTHETIC sample market (test)"}
PASSED_GATE = {"verdict": "promoted", "reasons": [], "comparisons": []}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained on the sample market, evaluated, and published through publish_run."""
    tmp = tmp_path_factory.mktemp("consumer")
    config = tiny_config()
    prices = sample_prices(config)
    info = build_dataset(prices, config, tmp / "dataset", SOURCE)
    trained = training.train(info, config, tmp / "training", log=lambda _: None)
    result = evaluation.evaluate_run(Path(info.path), Path(trained.model_path), config.gate, [])
    # The gate is tested elsewhere; here the model must pass it so the smoke test decides.
    result["gate"] = PASSED_GATE
    registry = Registry(tmp / "registry")
    smoke_prices = write_smoke_prices(prices, tmp / "smoke_prices.parquet")
    bundle, manifest = publish_run(
        registry,
        config,
        info,
        trained.as_dict(),
        result,
        SOURCE,
        None,
        tmp / "publish",
        smoke_prices,
        keep=10,
    )
    return {
        "tmp": tmp,
        "config": config,
        "prices": prices,
        "info": info,
        "trained": trained,
        "evaluation": result,
        "registry": registry,
        "bundle": bundle,
        "manifest": manifest,
        "smoke_prices": smoke_prices,
    }


def all_prices(prices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(ticker=t) for t, f in prices.items()], ignore_index=True)


def test_a_version_that_passes_the_smoke_test_is_promoted(run):
    registry, bundle = run["registry"], run["bundle"]
    assert bundle.version == 1 and run["manifest"]["gate"]["verdict"] == "promoted"
    assert registry.aliases("updown") == {"champion": 1, "latest": 1}
    assert set(run["manifest"]["files"]) == {
        "model.keras",
        "stats.parquet",
        "report.md",
        "curves.png",
        "confusion.png",
    }


def test_predictor_matches_training_preprocessing_window_for_window(run):
    """Raw prices through the predictor == the training pipeline's normalized matrix, same windows."""
    info, config = run["info"], run["config"]
    predictor = run["registry"].load_predictor("updown@champion")
    served = predictor.predict(all_prices(run["prices"]))

    arrays = dataset_arrays.load_arrays(Path(info.path))
    matrix = dataset_arrays.normalized_matrix(info, arrays)  # training's own normalized inputs
    w = config.window.length
    rows = np.arange(w - 1, len(arrays.ticker_ids))
    rows = rows[arrays.ticker_ids[rows - (w - 1)] == arrays.ticker_ids[rows]]  # within one ticker
    model = keras.saving.load_model(Path(run["trained"].model_path), safe_mode=True)
    expected = model.predict(gather(matrix, rows, w), verbose=0)
    tickers = np.asarray(info.tickers)[arrays.ticker_ids[rows]]
    reference = pd.DataFrame({"ticker": tickers, "date": arrays.dates[rows]})
    for k, name in enumerate(predictor.classes):
        reference[f"p_{name}"] = expected[:, k]

    merged = served.merge(reference, on=["ticker", "date"], suffixes=("", "_train"), validate="1:1")
    assert len(merged) == len(served) == len(reference) > 1000
    for name in predictor.classes:
        np.testing.assert_allclose(merged[f"p_{name}"], merged[f"p_{name}_train"], rtol=0, atol=1e-6)
    labels = np.asarray(predictor.classes)[
        merged[[f"p_{c}" for c in predictor.classes]].to_numpy().argmax(axis=1)
    ]
    assert (merged["label"].to_numpy() == labels).all()


def test_a_reader_without_project_code_reproduces_the_predictor(run, tmp_path):
    ticker = "BBB"
    frame = run["prices"][ticker]
    prices_path = tmp_path / f"{ticker}.parquet"
    frame.to_parquet(prices_path, index=False)
    out = tmp_path / "plain.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("plain_consumer.py")),
            str(run["bundle"].path),
            str(prices_path),
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: nothing of ours on the path but the script itself
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []

    plain = np.load(out)
    served = run["registry"].load_predictor("updown@champion").predict(frame.assign(ticker=ticker))
    assert [str(c) for c in plain["classes"]] == ["down", "range_bound", "up"]
    assert len(plain["probs"]) == len(served) == report["windows"]
    np.testing.assert_array_equal(
        plain["dates"].astype("datetime64[ns]"), served["date"].to_numpy("datetime64[ns]")
    )
    np.testing.assert_allclose(
        plain["probs"], served[["p_down", "p_range_bound", "p_up"]].to_numpy(), atol=1e-6
    )


@pytest.mark.parametrize("name", ["model.keras", "stats.parquet"])
def test_loading_a_tampered_bundle_is_refused(run, tmp_path, name):
    root = tmp_path / "registry"
    shutil.copytree(run["registry"].root, root)
    path = root / "updown" / "1" / name
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=rf"updown/1: {name} does not match its manifest checksum"):
        Registry(root).load_predictor("updown@champion")


def test_cli_predicts_from_a_price_file(run, tmp_path):
    prices = all_prices({t: f for t, f in run["prices"].items() if t in ("AAA", "CCC")})
    prices.to_parquet(tmp_path / "prices.parquet", index=False)
    out = tmp_path / "preds.parquet"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "models",
            "predict",
            "updown@champion",
            "--prices",
            str(tmp_path / "prices.parquet"),
            "--out",
            str(out),
            "--registry",
            str(run["registry"].root),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_parquet(out)
    expected = run["registry"].load_predictor("updown/1").predict(prices)
    assert list(got.columns) == [
        "ticker",
        "date",
        "p_down",
        "p_range_bound",
        "p_up",
        "label",
        "max_abs_z",
        "out_of_range",
    ]
    assert sorted(got["ticker"].unique()) == ["AAA", "CCC"]
    np.testing.assert_allclose(
        got[["p_down", "p_range_bound", "p_up"]], expected[["p_down", "p_range_bound", "p_up"]], atol=1e-6
    )


def test_smoke_test_reports_unusable_input_instead_of_raising(run, tmp_path):
    short = run["prices"]["AAA"].tail(15)
    short.to_parquet(tmp_path / "AAA.parquet", index=False)
    result = smoke_test(run["registry"].root, "updown/1", tmp_path / "AAA.parquet")
    assert result["passed"] is False
    assert "need at least the window" in result["reason"] or "usable rows" in result["reason"]


def test_a_failed_smoke_test_rejects_the_version_and_keeps_the_champion(run, tmp_path):
    """A model whose gate passed but whose served output is NaN must never become champion."""
    model = keras.saving.load_model(Path(run["trained"].model_path), safe_mode=True)
    weights = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.full_like(w, np.nan) for w in weights])
    broken = tmp_path / "model.keras"
    model.save(broken)
    trained = {**run["trained"].as_dict(), "model_path": str(broken)}
    registry = run["registry"]
    bundle, manifest = publish_run(
        registry,
        run["config"],
        run["info"],
        trained,
        run["evaluation"],
        SOURCE,
        None,
        tmp_path / "publish",
        run["smoke_prices"],
        keep=10,
    )
    assert bundle.version == 2
    assert manifest["gate"]["verdict"] == "rejected"
    (reason,) = manifest["gate"]["reasons"]
    assert reason.startswith(
        "serving smoke test failed in a fresh process: SmokeTestFailure: non-finite probabilities"
    )
    assert registry.aliases("updown") == {"champion": 1, "latest": 1}
    assert registry.verify("updown/2")["gate"]["verdict"] == "rejected"  # still a verifiable bundle
    report = (bundle.path / "report.md").read_text()
    assert report.startswith("# updown — REJECTED") and "serving smoke test failed" in report


def test_s3_round_trip_with_smoke_test_predictor_and_cli(run, s3_endpoint, tmp_path):
    """The same run published to the S3 server: smoke-tested in a fresh process that reads the bucket,
    promoted, then loaded back (verified download) with predictions identical to the local bundle."""
    url = f"s3://pipeline/consumer-{tmp_path.name}"
    registry = Registry(url)
    bundle, manifest = publish_run(
        registry,
        run["config"],
        run["info"],
        run["trained"].as_dict(),
        run["evaluation"],
        SOURCE,
        None,
        tmp_path / "publish",
        run["smoke_prices"],
        keep=10,
    )
    assert (bundle.version, manifest["gate"]["verdict"]) == (1, "promoted")
    assert bundle.url == f"{url}/updown/1"
    assert Registry(url).aliases("updown") == {"champion": 1, "latest": 1}

    prices = all_prices(run["prices"])
    remote = Registry(url).load_predictor("updown@champion").predict(prices)
    local = run["registry"].load_predictor("updown/1").predict(prices)
    pd.testing.assert_frame_equal(remote, local)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "models",
            "--registry",
            url,
            "predict",
            "updown@champion",
            "--latest",
            "--prices",
            str(run["smoke_prices"]),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "ticker,date,p_down,p_range_bound,p_up,label,max_abs_z,out_of_range"
    assert len(lines) == 1 + 4
    listing = subprocess.run(
        [sys.executable, "-m", "models", "list", "--registry", url], capture_output=True, text=True, cwd=REPO
    )
    assert listing.stdout.splitlines()[1].split()[:2] == ["1", "promoted"], listing.stderr


def stateful_model_file(run, tmp_path) -> Path:
    """A model like the run's, with stateful LSTM layers (what `model.stateful` used to train)."""
    from models.config import ModelConfig
    from models.training.network import build_model

    config, info = run["config"], run["info"]
    model = build_model(
        ModelConfig(lstm_units=(8,), stateful=True), config.window.length, len(info.features), 8
    )
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def test_consumers_cannot_load_a_stateful_model(run, tmp_path):
    """A stateful model's answer to a window depends on earlier calls (0.02 apart on two identical
    calls, before this was refused)."""
    registry = Registry(tmp_path / "registry")
    files = {
        "model.keras": stateful_model_file(run, tmp_path),
        "stats.parquet": run["info"].stats_path,
    }
    bundle = registry.add_version("updown", files, {**run["manifest"], "gate": PASSED_GATE})
    with pytest.raises(RegistryError, match=rf"{bundle}: model.keras has stateful layers \(lstm_0\)"):
        registry.load_predictor(str(bundle))


@pytest.mark.slow
def test_the_smoke_test_rejects_a_stateful_model(run, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(run["registry"].root, root)
    registry = Registry(root)
    bundle, manifest = publish_run(
        registry,
        run["config"],
        run["info"],
        {**run["trained"].as_dict(), "model_path": str(stateful_model_file(run, tmp_path))},
        run["evaluation"],
        SOURCE,
        None,
        tmp_path / "publish",
        run["smoke_prices"],
    )
    assert manifest["gate"]["verdict"] == "rejected"
    assert "model.keras has stateful layers (lstm_0)" in manifest["gate"]["reasons"][-1]
    assert registry.aliases("updown")["champion"] == 1


# ---- real files and frames, out-of-range inputs, robust normalization ---------------------------------


@pytest.fixture
def yahoo_of_the_run(run, tmp_path):
    """The run's prices served by the fake Yahoo; yields `write((call, tickers, path), ...)`, which has
    yfinance's own code fetch them (auto_adjust=False, the run's whole span) and save them to `path`
    the way a user does (`.to_csv()` or `.to_parquet()`), so the files have yfinance's real shapes."""
    from tests.yahoo_fake import FakeYahoo, Listing
    from tests.yfinance_writer import write_with_yfinance

    fake = FakeYahoo().start()
    for ticker, frame in run["prices"].items():
        fake.listings[ticker] = Listing(frame.drop(columns="adj_close"))  # no events: adj_close == close
    dates = run["prices"]["AAA"]["date"]
    span = {
        "start": dates.iloc[0].date().isoformat(),
        "end": (dates.iloc[-1] + pd.Timedelta(days=1)).date().isoformat(),
        "auto_adjust": False,
    }

    def write(*files: tuple[str, list[str], Path]) -> list[Path]:
        specs = [{"path": str(p), "call": c, "tickers": t, "options": span} for c, t, p in files]
        return write_with_yfinance(fake.url, tmp_path / "yfcache", specs)

    yield write
    fake.stop()


def predict_cli(run, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models", "predict", "updown/1", "--registry", str(run["registry"].root)]
        + list(arguments),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_predict_reads_the_files_yfinance_writes_like_the_store(run, yahoo_of_the_run, tmp_path):
    """The CSV a user saves from yfinance trains a model through the folder source; `predict` must
    read it too (it crashed with KeyError: 'date'), and the download's multi-row header as well."""
    aaa, two, history_file, wide_file = yahoo_of_the_run(
        ("history", ["AAA"], tmp_path / "AAA.csv"),
        ("download", ["BBB", "CCC"], tmp_path / "two.csv"),
        ("history", ["AAA"], tmp_path / "AAA.parquet"),
        ("download", ["BBB", "CCC"], tmp_path / "two.parquet"),
    )
    first = run["prices"]["AAA"]["date"].iloc[0].date()
    assert aaa.read_text().splitlines()[1].startswith(f"{first} 00:00:00-05:00,")
    assert two.read_text().splitlines()[:3][2].startswith("Date,,")
    out = tmp_path / "preds.parquet"
    done = predict_cli(run, "--prices", str(aaa), str(two), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    got = pd.read_parquet(out)
    predictor = run["registry"].load_predictor("updown/1")
    expected = predictor.predict(all_prices({t: run["prices"][t] for t in ("AAA", "BBB", "CCC")}))
    assert sorted(got["ticker"].unique()) == ["AAA", "BBB", "CCC"] and len(got) == len(expected)
    columns = ["p_down", "p_range_bound", "p_up"]
    np.testing.assert_allclose(got[columns], expected[columns], atol=1e-6)
    # The frames in memory: Ticker.history() (tz-aware index, no ticker column), yf.download() (wide).
    history = pd.read_parquet(history_file)
    assert str(history.index.tz) == "America/New_York" and "Dividends" in history.columns
    alone = predictor.predict(history)
    np.testing.assert_allclose(alone[columns], expected.loc[expected["ticker"] == "AAA", columns], atol=1e-6)
    wide = pd.read_parquet(wide_file)
    assert wide.columns.names == ["Price", "Ticker"]
    np.testing.assert_allclose(
        predictor.predict(wide)[columns], expected.loc[expected["ticker"] != "AAA", columns], atol=1e-6
    )


def test_predict_refuses_what_ingest_refuses_naming_file_and_line(run, tmp_path, capsys):
    from models.cli import main as models_cli

    frame = run["prices"]["AAA"].copy()
    frame.loc[50, "close"] = frame.loc[50, "high"] * 2
    frame.to_csv(tmp_path / "AAA.csv", index=False)
    args = [
        "predict",
        "updown/1",
        "--prices",
        str(tmp_path / "AAA.csv"),
        "--registry",
        str(run["registry"].root),
    ]
    assert models_cli(args) == 1
    day = frame.loc[50, "date"].date()
    error = capsys.readouterr().err
    assert f"AAA {day} column 'close': close above high (1 row(s); {tmp_path / 'AAA.csv'}: line 52)" in error


def spiked(frame: pd.DataFrame, at: int) -> pd.DataFrame:
    """One session traded a million times its usual volume: log_volume_change ~ +14, then ~ -14."""
    frame = frame.copy()
    frame.loc[at, "volume"] = frame.loc[at, "volume"] * 1_000_000
    return frame


def test_windows_with_inputs_far_outside_training_are_flagged(run):
    predictor = run["registry"].load_predictor("updown/1")
    frame = run["prices"]["AAA"]
    plain = predictor.predict(frame.assign(ticker="AAA"))
    assert not plain["out_of_range"].any() and plain["max_abs_z"].max() < predictor.out_of_range_z == 10
    at = len(frame) - 40
    served = predictor.predict(spiked(frame, at).assign(ticker="AAA"))
    ends = served["date"].to_numpy()
    day, after = frame["date"].iloc[at], frame["date"].iloc[at + 1]
    w = predictor.window
    dates = frame["date"].to_numpy()
    holds = (ends >= np.datetime64(day)) & (ends <= dates[at + w])  # windows holding day or the next
    assert served.loc[holds, "out_of_range"].all() and not served.loc[~holds, "out_of_range"].any()
    assert served.loc[holds, "max_abs_z"].min() > 10 and after > day
    # The bound is the caller's to choose.
    assert not predictor.predict(spiked(frame, at).assign(ticker="AAA"), max_abs_z=1e6)["out_of_range"].any()


def test_the_smoke_test_reports_the_share_of_out_of_range_windows(run, tmp_path):
    prices = dict(run["prices"])
    prices["AAA"] = spiked(prices["AAA"], len(prices["AAA"]) - 1)  # only AAA's latest window holds it
    path = write_smoke_prices(prices, tmp_path / "smoke.parquet")
    result = run_smoke(run["registry"].root, "updown/1", path)  # what the fresh process runs and prints
    assert result["passed"] is True
    assert (result["windows"], result["out_of_range_windows"]) == (4 * 5, 1)
    assert result["out_of_range_share"] == 0.05 and result["out_of_range_z"] == 10


def test_robust_normalization_is_applied_alike_by_predictor_and_plain_recipe(run, tmp_path):
    """Median/IQR with clipping, recorded in stats.parquet: the recipe without this package must
    center, scale and clip exactly as the predictor does."""
    from models.dataset.normalization import fit_normalization, read_stats, write_stats

    info = run["info"]
    arrays = dataset_arrays.load_arrays(Path(info.path))
    lo, hi = (np.datetime64(pd.Timestamp(d), "ns") for d in info.splits["train"])
    train = (arrays.dates >= lo) & (arrays.dates <= hi)
    robust = ("log_volume_change", "intraday_range")
    stats = fit_normalization(
        arrays.matrix[train],
        info.features,
        read_stats(info.stats_path).metadata,
        robust=robust,
        robust_clip=1.5,
    )
    path = write_stats(stats, tmp_path / "stats.parquet")
    table = pd.read_parquet(path).set_index("feature")
    for name in robust:
        column = arrays.matrix[train, info.features.index(name)]
        q25, median, q75 = np.quantile(column, [0.25, 0.5, 0.75])
        assert table.loc[name, "method"] == "robust" and table.loc[name, "clip"] == 1.5
        assert table.loc[name, "center"] == pytest.approx(median) and table.loc[
            name, "mean"
        ] == pytest.approx(column.mean())
        assert table.loc[name, "scale"] == pytest.approx((q75 - q25) / 1.349)
    registry = run["registry"]
    bundle_dir = run["bundle"].path
    files = {name: bundle_dir / name for name in ("model.keras", "report.md", "curves.png", "confusion.png")}
    files["stats.parquet"] = path
    manifest = {
        k: v for k, v in json.loads((bundle_dir / "manifest.json").read_text()).items() if k != "files"
    }
    robust_bundle = registry.add_version("robust", files, manifest)

    ticker = "BBB"
    frame = run["prices"][ticker]
    frame.to_parquet(tmp_path / f"{ticker}.parquet", index=False)
    # The recipe's own functions (a test above runs it in a process of its own, without our code).
    from tests.registry import plain_consumer

    _, probs, _ = plain_consumer.predict(robust_bundle.path, tmp_path / f"{ticker}.parquet", ticker)
    plain = {"probs": probs}
    served = registry.load_predictor(str(robust_bundle)).predict(frame.assign(ticker=ticker))
    default = registry.load_predictor("updown/1").predict(frame.assign(ticker=ticker))
    columns = ["p_down", "p_range_bound", "p_up"]
    np.testing.assert_allclose(plain["probs"], served[columns].to_numpy(), atol=1e-6)
    assert np.abs(served[columns].to_numpy() - default[columns].to_numpy()).max() > 1e-3  # it matters
    # Clipping is active: some inputs of these windows lie beyond ±1.5 robust units before the clip.
    assert (np.abs(read_stats(path).zscores(arrays.matrix[~train])) > 1.5).any()


def test_the_readme_recipe_reproduces_the_predictor(run, tmp_path, monkeypatch):
    """The code block under "Without this package" in the README, run as printed (bundle path
    swapped), gives the predictor's probabilities: the README may not drift from plain_consumer.py."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Without this package") :]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    assert 'Path(".pipeline/registry/updown/7")' in block
    block = block.replace('Path(".pipeline/registry/updown/7")', f"Path({str(run['bundle'].path)!r})")
    run["prices"]["AAA"].to_parquet(tmp_path / "AAA.parquet", index=False)
    monkeypatch.chdir(tmp_path)  # the recipe reads f"{ticker}.parquet" from the working directory
    got: dict = {}
    exec(compile(block, "README.md", "exec"), got)  # noqa: S102 (the README's code, as printed)
    served = run["registry"].load_predictor("updown/1").predict(run["prices"]["AAA"].assign(ticker="AAA"))
    np.testing.assert_array_equal(
        got["dates"].astype("datetime64[ns]"), served["date"].to_numpy("datetime64[ns]")
    )
    np.testing.assert_allclose(
        got["probs"], served[["p_down", "p_range_bound", "p_up"]].to_numpy(), atol=1e-6
    )
