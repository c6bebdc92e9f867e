"""The fault catalogue: each classic way an LSTM "trains" without learning gets its own diagnosis,
and none of them moves an alias.

Every case runs the real `retrain` flow on Prefect's temporary API (holdout scheme and a tiny model,
where walk-forward adds nothing to what the case checks) in a copy of a data home whose registry
holds a promoted champion. A config fault goes in as the flow's parameter. A fault the flow cannot
be given as a parameter (broken labels, NaN in a built dataset, stats fitted on the wrong rows) is
injected where it would arise, between the dataset build and training, by wrapping
`models.training.trainer.train` (the function the flow's training task calls): everything before
and after it, the tasks, the gate and the registry, is the flow's own. Each case checks the stage
that stopped the run (the failed task, or the published verdict), the diagnosis code, and what the
registry holds afterwards: no new version for a run stopped before publishing, a new `rejected`
version for one that published, and the champion's aliases unchanged in both.

The positive and negative controls (planted signal promoted, noise and volatility rejected) are
tests/flows/test_controls.py; the live guards fired by real training, tests/model/test_guards.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.retrain import retrain
from models import config as config_module
from models.dataset import features
from models.dataset.arrays import ROWS_FILE, load_arrays
from models.dataset.normalization import fit_normalization, write_stats
from models.diagnosis import GuardFailure
from models.errors import ModelRejected
from models.registry import Registry
from models.training import trainer
from tests.helpers import learning_config, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")

# The failed task's name -> the stage it stands for.
STAGES = {
    "build_dataset": "dataset",
    "build_folds": "dataset",
    "train_model": "preflight",
    "fold": "preflight",
}


def holdout(**sections):
    return tiny_config(evaluation={"scheme": "holdout"}, **sections)


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory):
    """A data home whose registry holds a champion promoted by a real run of the flow."""
    home = tmp_path_factory.mktemp("champion-home")
    summary = retrain(learning_config("signal", evaluation={"scheme": "holdout"}), str(home))
    assert summary["verdict"] == "promoted"
    return home


@pytest.fixture
def home(champion_home, tmp_path):
    """A copy of the champion's registry, one per fault (prices are ingested again by each run)."""
    shutil.copytree(champion_home / "registry", tmp_path / "registry")
    return tmp_path


def failed_task(state) -> str | None:
    """The name (without its suffix) of the task run of this flow run that failed, if one did."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    failed = [r.name.rsplit("-", 1)[0] for r in runs if r.state is not None and r.state.is_failed()]
    return failed[0] if failed else None


def run(config, home) -> dict:
    """Run the flow; what stopped it (stage, codes) and what the registry holds afterwards."""
    registry = Registry(home / "registry")
    before = {"versions": registry.versions("updown"), "aliases": registry.aliases("updown")}
    assert before["aliases"]["champion"] == 1  # a champion that a wrong promotion would move
    state = retrain(config, str(home), return_state=True)
    assert state.is_failed(), "every fault fails the run"
    error = state.result(raise_on_failure=False)
    after = {"versions": registry.versions("updown"), "aliases": registry.aliases("updown")}
    assert after["aliases"] == before["aliases"], "a fault moved an alias"
    if isinstance(error, GuardFailure):
        assert after["versions"] == before["versions"], "a run stopped before publishing published"
        return {"stage": STAGES[failed_task(state)], "codes": error.codes, "message": str(error)}
    assert isinstance(error, ModelRejected), error
    (new,) = sorted(set(after["versions"]) - set(before["versions"]))
    manifest = registry.manifest(f"updown/{new}")
    assert error.summary["version"] == new and manifest["gate"]["verdict"] == "rejected"
    return {
        "stage": "published",
        "codes": [d["code"] for d in manifest["diagnoses"]],
        "reasons": manifest["gate"]["reasons"],
        "manifest": manifest,
    }


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


@pytest.mark.parametrize("name", [n for n, case in CONFIG_FAULTS.items() if case])
def test_config_fault(name, home):
    sections, stage, code = CONFIG_FAULTS[name]
    outcome = run(holdout(**sections), home)
    assert outcome["stage"] == stage, outcome
    assert code in outcome["codes"], outcome
    if stage == "published":  # the live guard's fatal diagnosis reached the gate, which says so
        assert any(reason.startswith(f"guard '{code}'") for reason in outcome["reasons"]), outcome


def test_a_fatal_live_diagnosis_in_a_walk_forward_fold_rejects_the_version(home):
    """The default scheme: the folds' fatal diagnoses reach the pooled gate through the flow."""
    config = tiny_config(training={"learning_rate": 1000.0, "epochs": 2}, evaluation={"folds": 2})
    outcome = run(config, home)
    assert outcome["stage"] == "published"
    (rule,) = [r for r in outcome["manifest"]["gate"]["rules"] if r["rule"] == "no-fatal-diagnosis"]
    assert rule["passed"] is False and "exploding-loss" in rule["codes"]
    assert "guard 'exploding-loss'" in outcome["reasons"][0]


# -- faults injected between the dataset build and training -----------------------------------


def inject_into_training(monkeypatch, inject) -> None:
    """Wrap the training the flow calls: `inject(dataset)` may damage the dataset's files and may
    return labels that replace the dataset's (what a caller of the Python API could pass)."""
    original = trainer.train

    def train(dataset, config, out_dir, log=print, labels_override=None):
        labels = inject(dataset)
        return original(
            dataset, config, out_dir, log=log, labels_override=labels_override if labels is None else labels
        )

    monkeypatch.setattr(trainer, "train", train)


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
    "labels all one class": (labels_all_one_class, "class-missing"),
    "labels not one-hot": (labels_one_hot_with_empty_rows, "labels-not-one-hot"),
    "labels -1/0/1": (labels_as_signs, "labels-not-class-ids"),
    "labels scaled with the features": (labels_scaled_with_features, "labels-not-class-ids"),
    "NaN in features": (nan_in_features, "non-finite-input"),
    "stats fitted over all rows": (stats_over_all_rows, "leakage"),
    "stats fitted over all rows, labelled train-only": (stats_over_all_rows_labelled_train_only, "leakage"),
}


@pytest.mark.parametrize("name", list(INJECTED_FAULTS))
def test_injected_fault(name, home, monkeypatch):
    inject, code = INJECTED_FAULTS[name]
    inject_into_training(monkeypatch, inject)
    outcome = run(holdout(), home)
    assert outcome["stage"] == "preflight", outcome
    assert outcome["codes"][0] == code, outcome


def register_feature(monkeypatch, name, function):
    """Add a feature for one test: its function, and its name to those the config accepts."""
    monkeypatch.setitem(features.FEATURES, name, function)
    monkeypatch.setattr(config_module, "FEATURE_NAMES", (*config_module.FEATURE_NAMES, name))


def test_feature_constant_over_train_but_not_later_is_refused(home, monkeypatch):
    """A one-hot category never seen in training: std 0 on train (the seed's NaN), values later."""

    def regime_after_2023(prices):
        return (prices.date >= np.datetime64("2023-06-01")).astype(float)

    register_feature(monkeypatch, "after_2023", regime_after_2023)
    outcome = run(holdout(features={"names": ["log_return", "intraday_range", "after_2023"]}), home)
    assert outcome["stage"] == "preflight" and outcome["codes"] == ["constant-feature"], outcome
    assert "never saw them" in outcome["message"]


def test_feature_constant_everywhere_is_only_flagged(home, monkeypatch):
    """A flag, never fatal: the run goes on to the gate (here an unreachable margin rejects it)."""
    register_feature(monkeypatch, "always_one", lambda p: np.ones(len(p)))
    config = holdout(features={"names": ["log_return", "intraday_range", "always_one"]}, gate={"margin": 0.9})
    outcome = run(config, home)
    assert outcome["stage"] == "published"
    (flag,) = [d for d in outcome["manifest"]["diagnoses"] if d["code"] == "constant-feature"]
    assert flag["fatal"] is False and "always_one" in flag["message"]
    assert not any(reason.startswith("guard") for reason in outcome["reasons"])
    assert any("by the margin 0.9" in reason for reason in outcome["reasons"])  # the gate judged it


def test_a_bundle_a_fresh_process_cannot_serve_fails_its_smoke_test_and_moves_no_alias(tmp_path, monkeypatch):
    """A feature that exists only in the training process (registered at run time, not in the code a
    consumer imports): the gate promotes the model, the smoke test in a fresh process cannot compute
    its inputs, and the version is rejected before any alias moves."""
    register_feature(monkeypatch, "log_return_here_only", features.FEATURES["log_return"])
    names = ["log_return_here_only", *config_module.DEFAULT_FEATURES[1:]]
    config = learning_config("signal", evaluation={"scheme": "holdout"}, features={"names": names})
    state = retrain(config, str(tmp_path), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ModelRejected), error
    registry = Registry(tmp_path / "registry")
    manifest = registry.manifest(f"updown/{error.summary['version']}")
    assert manifest["smoke_test"]["state"] == "failed"
    assert "log_return_here_only" in manifest["smoke_test"]["reason"]
    assert manifest["gate"]["verdict"] == "rejected"
    assert all(c["passed"] for c in manifest["gate"]["comparisons"])  # the gate itself had passed
    assert manifest["gate"]["reasons"] == [
        f"serving smoke test failed in a fresh process: {manifest['smoke_test']['reason']}"
    ]
    assert registry.aliases("updown") == {}


def test_correct_one_hot_labels_train_like_class_ids(tmp_path):
    """One-hot labels through the Python training API used to pass the check, then crash in training."""
    from models.dataset.build import build_dataset
    from tests.helpers import sample_prices

    config = holdout()
    info = build_dataset(sample_prices(config), config, tmp_path / "dataset", {"kind": "sample"})
    labels = train_labels_of(info)
    encoded = np.eye(3, dtype=np.float32)[np.clip(labels, 0, 2)]
    encoded[labels < 0] = 0.0  # unlabelled rows: all zero
    one_hot = trainer.train(info, config, tmp_path / "one-hot", log=lambda _m: None, labels_override=encoded)
    plain = trainer.train(info, config, tmp_path / "ids", log=lambda _m: None)
    assert one_hot.history == plain.history
    assert [d for d in one_hot.diagnoses if d["fatal"]] == []
