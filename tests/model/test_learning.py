"""The model learns the planted signal of the sample market, and does not pretend to on noise."""

import pytest

from models.dataset.arrays import load_arrays
from models.dataset.build import build_dataset
from models.training.evaluation import evaluate_run
from models.training.trainer import train
from tests.helpers import learning_config, sample_prices


def run(config, tmp_path):
    info = build_dataset(sample_prices(config), config, tmp_path / "dataset", {"kind": "sample"})
    result = train(info, config, tmp_path / "training", log=lambda _m: None)
    fatal = [d for d in result.diagnoses if d["fatal"]]
    return (
        info,
        result,
        evaluate_run(tmp_path / "dataset", tmp_path / "training" / "model.keras", config.gate, fatal),
    )


def test_signal_beats_the_baselines_by_a_clear_margin(tmp_path):
    config = learning_config("signal")
    info, result, evaluation = run(config, tmp_path)
    m, b = evaluation["metrics"], evaluation["baselines"]
    assert m["accuracy"] > b["majority"]["accuracy"] + 0.05
    assert m["balanced_accuracy"] > b["persistence"]["balanced_accuracy"] + 0.02
    assert evaluation["gate"]["verdict"] == "promoted", evaluation["gate"]["reasons"]
    assert len(load_arrays(info.path).ends["test"]) == m["windows"]


def test_noise_is_not_promoted(tmp_path):
    config = learning_config("noise")
    _, _, evaluation = run(config, tmp_path)
    # No claim that it wins: only that the gate does not let a random walk through.
    assert evaluation["gate"]["verdict"] == "rejected"
    assert evaluation["gate"]["reasons"]


@pytest.mark.slow
def test_training_is_reproducible_with_a_fixed_seed(tmp_path):
    config = learning_config("signal", training={"epochs": 2})
    _, first, _ = run(config, tmp_path / "a")
    _, second, _ = run(config, tmp_path / "b")
    assert first.history["loss"] == pytest.approx(second.history["loss"], rel=1e-5)
