"""The retrain flow end to end on Prefect's temporary API, with real training and real files."""

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from flows.retrain import retrain
from models.dataset.build import fingerprint
from models.errors import ModelRejected
from models.prices import sources
from models.registry import Registry
from tests.helpers import learning_config, sample_prices, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def first_run(home):
    config = learning_config("signal", training={"epochs": 4})
    return config, retrain(config, str(home))


def test_publishes_a_complete_verified_bundle(home, first_run):
    config, summary = first_run
    bundle = Path(summary["path"])
    assert summary["version"] == 1 and summary["verdict"] == "promoted"
    assert bundle == home.resolve() / "registry" / "updown" / "1"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "model.keras",
        "stats.parquet",
        "baselines.json",  # walk-forward: the published fold's baselines, for the live scorecard
        "report.md",
        "curves.png",
        "confusion.png",
    }
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert manifest["synthetic_data"] is True and "SYNTHETIC" in manifest["source"]["notice"]
    assert manifest["labels"]["classes"] == ["down", "range_bound", "up"]
    assert manifest["features"] == list(config.features.names)
    assert manifest["flow_run_id"]
    assert json.loads((bundle.parent / "aliases.json").read_text()) == {"latest": 1, "champion": 1}
    # A completed run leaves no scratch behind: everything it made is in the store and the registry.
    assert not (home / "runs" / manifest["flow_run_id"]).exists()


def test_bundle_loads_safely_and_predicts_probabilities(first_run):
    config, summary = first_run
    model = keras.saving.load_model(Path(summary["path"]) / "model.keras", safe_mode=True)
    x = np.random.default_rng(0).normal(size=(7, config.window.length, len(config.features.names)))
    probs = model.predict(x.astype("float32"), verbose=0)
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_a_forced_second_run_on_the_same_data_publishes_version_two(home, first_run):
    config, _ = first_run
    summary = retrain(config, str(home), force=True)
    assert summary["version"] == 2
    assert Registry(home / "registry").aliases("updown") == {"latest": 2, "champion": 2}
    # Judged against champion v1 on the windows out of sample for both: those after v1's validation.
    manifest = json.loads((Path(summary["path"]) / "manifest.json").read_text())
    first = json.loads((home.resolve() / "registry" / "updown" / "1" / "manifest.json").read_text())
    champion = manifest["champion"]
    assert champion["version"] == 1 and champion["compared"] and champion["windows"] > 0
    assert champion["from"] > first["splits"]["validation"][1]
    assert champion["difference"]["estimate"] == 0  # same data, same seeds: the same model
    (rule,) = [r for r in manifest["gate"]["rules"] if r["rule"] == "champion"]
    assert rule["passed"] and rule["criterion"]
    assert manifest["smoke_test"]["state"] == "passed"


def test_a_rejected_model_fails_the_run_and_moves_no_alias(home, first_run):
    config = tiny_config(gate={"min_effect": 0.9})  # unreachable: nothing can be promoted
    registry = Registry(home / "registry")
    before = registry.aliases("updown")
    state = retrain(config, str(home), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ModelRejected)
    assert error.summary["verdict"] == "rejected"
    assert registry.aliases("updown") == before
    assert error.summary["version"] in registry.versions("updown")  # kept for inspection
    scratch = home / "runs" / str(state.state_details.flow_run_id)
    assert (scratch / "folds" / "fold-0").is_dir()  # and its scratch, kept for inspection


def test_the_noise_market_in_the_signal_markets_home_trains_on_noise_and_is_rejected(home, first_run):
    """The README's negative control, `make demo` then `make demo ARGS="--variant noise"` in one home."""
    config, _ = first_run
    noise = config.model_copy(update={"source": config.source.model_copy(update={"sample_variant": "noise"})})
    registry = Registry(home / "registry")
    champion = registry.aliases("updown")["champion"]
    state = retrain(noise, str(home), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ModelRejected) and error.summary["verdict"] == "rejected"
    assert registry.aliases("updown")["champion"] == champion
    manifest = registry.manifest(f"updown/{error.summary['version']}")
    # Trained on the noise prices themselves: the fingerprint is that of the generated noise market.
    noise_prices = fingerprint(sample_prices(noise), noise, sources.describe(noise.source))
    assert manifest["data_fingerprint"] == noise_prices
    assert registry.manifest(f"updown/{champion}")["data_fingerprint"] != noise_prices
    assert manifest["source"]["variant"] == "noise"
    assert manifest["data"]["store"] == {"source": "sample:noise:seed=7", "key": "sample-noise-seed-7"}


def test_cli_options_override_a_config_file_without_resetting_it(tmp_path):
    from flows.cli import build_retrain_parser as build_parser
    from flows.cli import config_from_args

    config_file = tmp_path / "config.json"
    config_file.write_text(
        '{"source": {"kind": "folder", "folder": "/data/csv", "tickers": ["ACME"]}, "window": {"length": 7}}'
    )
    parser = build_parser()
    config = config_from_args(parser.parse_args(["--config", str(config_file), "--horizon", "3"]))
    assert config.source.kind == "folder" and config.source.tickers == ("ACME",)
    assert config.window.length == 7 and config.labels.horizon == 3
    assert config_from_args(parser.parse_args([])).source.kind == "sample"


def test_the_holdout_scheme_keeps_the_margin_gate(tmp_path):
    """`evaluation.scheme: holdout`: one split, the three simple baselines, the margin rules."""
    config = tiny_config(evaluation={"scheme": "holdout"}, gate={"margin": 0.9})
    state = retrain(config, str(tmp_path), return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ModelRejected)
    manifest = json.loads((Path(error.summary["path"]) / "manifest.json").read_text())
    assert "evaluation" not in manifest
    assert set(manifest["baselines"]) == {"majority", "persistence", "class_prior"}
    assert [c["against"] for c in manifest["gate"]["comparisons"]] == [
        "majority",
        "persistence",
        "class_prior",
    ]
    assert any("by the margin 0.9" in r for r in manifest["gate"]["reasons"])
    assert set(manifest["splits"]) == {"train", "validation", "test"}
