"""The fault catalogue: each classic way an LSTM "trains" without learning gets its own diagnosis,
and none of them moves an alias. The positive control (planted signal) is promoted; noise is not.

Each case injects one fault into a small run of the pipeline's models/ steps, after a good champion
was published, and checks the diagnosis code and that `aliases.json` did not change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import config as config_module
from models.dataset import features
from models.dataset.arrays import ROWS_FILE, load_arrays
from models.dataset.normalization import fit_normalization, write_stats
from models.registry import Registry
from tests.helpers import learning_config, run_without_prefect, tiny_config


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("registry-home")
    outcome = run_without_prefect(learning_config("signal", training={"epochs": 4}), home)
    assert outcome["verdict"] == "promoted", outcome.get("reasons")
    return home


@pytest.fixture
def home(champion_home, tmp_path):
    """A copy of the registry that holds the good champion, one per fault."""
    shutil.copytree(champion_home / "registry", tmp_path / "registry")
    return tmp_path


def aliases(home) -> dict:
    return Registry(home / "registry").aliases("updown")


def train_labels_of(info) -> np.ndarray:
    return load_arrays(info.path).labels.copy()


def labels_all_one_class(info):
    labels = train_labels_of(info)
    return np.where(labels >= 0, 2, labels).astype(np.int8)


def labels_one_hot_with_empty_rows(info):
    labels = train_labels_of(info)
    one_hot = np.eye(3, dtype=np.float32)[np.clip(labels, 0, 2)]
    one_hot[::7] = 0.0  # windows that fell through the labelling: all-zero rows
    return one_hot


def labels_as_signs(info):
    return train_labels_of(info).astype(np.int8) - 1  # -1/0/1 instead of 0/1/2


def labels_scaled_with_features(info):
    labels = train_labels_of(info).astype(np.float64)
    return ((labels - labels.mean()) / labels.std()).astype(np.float32)


def nan_in_features(info):
    folder = Path(info.path)
    path = folder / ROWS_FILE if (folder / ROWS_FILE).exists() else folder.parent / ROWS_FILE  # a fold's
    with np.load(path) as z:
        data = dict(z)
    data["matrix"][load_arrays(info.path).ends["train"][100], 0] = np.nan
    np.savez(path, **data)


def stats_over_all_rows(info):
    arrays = load_arrays(info.path)
    leaky = fit_normalization(
        arrays.matrix,
        info.features,
        {"fit_start": info.splits["train"][0], "fit_end": str(pd.Timestamp(arrays.dates.max()).date())},
    )
    write_stats(leaky, info.stats_path)


CONFIG_FAULTS = {
    "sigmoid + categorical CE": (
        {"model": {"output_activation": "sigmoid"}},
        "preflight",
        "output-activation-mismatch",
    ),
    "linear head without from_logits": None,  # linear compiles with from_logits=True: not a fault here
    "Dense(1) head": ({"model": {"output_width": 1}}, "preflight", "output-width-mismatch"),
    "learning rate 1e3": (
        {"training": {"learning_rate": 1000.0, "epochs": 3}},
        "published",
        "exploding-loss",
    ),
    "purge 0": ({"split": {"purge_sessions": 0}}, "dataset", "leakage"),
    "theta so large every label is range_bound": ({"labels": {"theta": 0.5}}, "dataset", "class-missing"),
    "stateful layers": ({"model": {"stateful": True}}, "preflight", "stateful-unsupported"),
    # Batches that divide every split used to train with shuffled batches and be promoted.
    "stateful layers, batches dividing every split": (
        {"model": {"stateful": True}, "training": {"batch_size": 4, "epochs": 1}},
        "preflight",
        "stateful-unsupported",
    ),
}


def stats_over_all_rows_labelled_train_only(info):
    """The fit range in the metadata says train; the numbers come from every row."""
    arrays = load_arrays(info.path)
    leaky = fit_normalization(
        arrays.matrix,
        info.features,
        {"fit_start": info.splits["train"][0], "fit_end": info.splits["train"][1]},
    )
    write_stats(leaky, info.stats_path)


INJECTED_FAULTS = {
    "labels all one class": (labels_all_one_class, "preflight", "class-missing"),
    "labels not one-hot": (labels_one_hot_with_empty_rows, "preflight", "labels-not-one-hot"),
    "labels -1/0/1": (labels_as_signs, "preflight", "labels-not-class-ids"),
    "labels scaled with the features": (labels_scaled_with_features, "preflight", "labels-not-class-ids"),
    "NaN in features": (nan_in_features, "preflight", "non-finite-input"),
    "stats fitted over all rows": (stats_over_all_rows, "preflight", "leakage"),
    "stats fitted over all rows, labelled train-only": (
        stats_over_all_rows_labelled_train_only,
        "preflight",
        "leakage",
    ),
}


@pytest.mark.parametrize("name", [n for n, case in CONFIG_FAULTS.items() if case])
def test_config_fault(name, home):
    sections, stage, code = CONFIG_FAULTS[name]
    before = aliases(home)
    outcome = run_without_prefect(tiny_config(**sections), home)
    assert outcome["stage"] == stage, outcome
    assert code in outcome["codes"], outcome
    assert aliases(home) == before
    if stage == "published":
        assert outcome["verdict"] == "rejected"
        assert any(code in reason for reason in outcome["reasons"])


@pytest.mark.parametrize("name", list(INJECTED_FAULTS))
def test_injected_fault(name, home):
    inject, stage, code = INJECTED_FAULTS[name]
    before = aliases(home)
    outcome = run_without_prefect(tiny_config(), home, inject=inject)
    assert outcome["stage"] == stage, outcome
    assert outcome["codes"][0] == code, outcome
    assert aliases(home) == before


def register_feature(monkeypatch, name, function):
    """Add a feature for one test: its function, and its name to those the config accepts."""
    monkeypatch.setitem(features.FEATURES, name, function)
    monkeypatch.setattr(config_module, "FEATURE_NAMES", (*config_module.FEATURE_NAMES, name))


def test_feature_constant_over_train_but_not_later_is_refused(home, monkeypatch):
    """A one-hot category never seen in training: std 0 on train (the seed's NaN), values later."""

    def regime_after_2023(prices):
        return (prices.date >= np.datetime64("2023-06-01")).astype(float)

    register_feature(monkeypatch, "after_2023", regime_after_2023)
    config = tiny_config(features={"names": ["log_return", "intraday_range", "after_2023"]})
    before = aliases(home)
    outcome = run_without_prefect(config, home)
    assert outcome["stage"] == "preflight" and outcome["codes"] == ["constant-feature"], outcome
    assert "never saw them" in outcome["message"]
    assert aliases(home) == before


def test_feature_constant_everywhere_is_only_flagged(home, monkeypatch):
    register_feature(monkeypatch, "always_one", lambda p: np.ones(len(p)))
    config = tiny_config(features={"names": ["log_return", "intraday_range", "always_one"]})
    outcome = run_without_prefect(config, home)
    assert outcome["stage"] == "published"
    flags = [d for d in outcome["manifest"]["diagnoses"] if d["code"] == "constant-feature"]
    assert sorted(d["fold"] for d in flags) == list(range(config.evaluation.folds))  # one per fold
    assert all(flag["fatal"] is False for flag in flags)
    assert "non-finite" not in outcome["codes"]


def test_correct_one_hot_labels_train_like_class_ids(home):
    """One-hot labels through the Python API used to pass the check, then crash in training."""

    def one_hot(info):
        labels = train_labels_of(info)
        encoded = np.eye(3, dtype=np.float32)[np.clip(labels, 0, 2)]
        encoded[labels < 0] = 0.0  # unlabelled rows: all zero
        return encoded

    outcome = run_without_prefect(tiny_config(), home / "one-hot", inject=one_hot)
    plain = run_without_prefect(tiny_config(), home / "ids")
    assert outcome["stage"] == plain["stage"] == "published", outcome
    assert outcome["manifest"]["training"]["history"] == plain["manifest"]["training"]["history"]


def test_positive_control_and_noise(tmp_path):
    signal = run_without_prefect(learning_config("signal"), tmp_path / "signal")
    assert signal["verdict"] == "promoted", signal["reasons"]
    assert not any(d["fatal"] for d in signal["manifest"]["diagnoses"])
    noise = run_without_prefect(learning_config("noise"), tmp_path / "noise")
    assert noise["verdict"] == "rejected"
    assert Registry(tmp_path / "noise" / "registry").aliases("updown") == {}
    assert (
        json.loads((tmp_path / "signal" / "registry" / "updown" / "aliases.json").read_text())["champion"]
        == 1
    )
