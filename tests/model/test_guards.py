"""The live guard callback and the preflight checks on real Keras models."""

import keras
import numpy as np
import pytest

from models.config import ModelConfig
from models.training import guards
from models.training.network import build_model


@pytest.fixture
def model():
    m = build_model(ModelConfig(lstm_units=(4,)), window=5, n_features=2)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_clip_floor_constant_is_the_seeds_loss():
    assert guards.CLIP_FLOOR == pytest.approx(1.1920929e-07, rel=1e-6)


def test_loss_at_clip_floor_with_low_accuracy_stops(model):
    guard = guards.GuardCallback(np.zeros((8, 5, 2), dtype="float32"))
    guard.set_model(model)
    guard.on_epoch_end(1, {"loss": 1.1920929e-07, "accuracy": 0.2020})
    assert [d.code for d in guard.diagnoses] == ["loss-at-clip-floor"]
    assert model.stop_training
    assert "0.2020" in guard.diagnoses[0].message


def test_nan_loss_stops_at_the_batch(model):
    guard = guards.GuardCallback(np.zeros((8, 5, 2), dtype="float32"))
    guard.set_model(model)
    guard.on_train_batch_end(3, {"loss": float("nan")})
    assert [d.code for d in guard.diagnoses] == ["non-finite"] and model.stop_training


def test_collapse_onto_one_class_stops_after_three_epochs(model):
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.array([0.0, 0.0, 50.0], dtype="float32")])
    guard = guards.GuardCallback(np.random.default_rng(0).normal(size=(64, 5, 2)).astype("float32"))
    guard.set_model(model)
    for epoch in range(3):
        assert not model.stop_training
        guard.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.4})
    assert [d.code for d in guard.diagnoses] == ["class-collapse"]
    assert "'up'" in guard.diagnoses[0].message


def test_frozen_weights_are_flagged(model):
    guard = guards.GuardCallback(
        np.random.default_rng(0).normal(size=(64, 5, 2)).astype("float32"), collapse_epochs=99
    )
    guard.set_model(model)
    for epoch in range(4):
        guard.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.4})
    assert [d.code for d in guard.diagnoses] == ["vanishing-updates"]
    assert not guard.diagnoses[0].fatal


@pytest.mark.parametrize(
    "labels, code",
    [
        (np.array([0, 1, 2, 1]), None),
        (np.eye(3)[[0, 1, 2]], None),
        (np.array([0, 1, 1, 1]), "class-missing"),
        (np.array([-1, 0, 1, 1]), "labels-not-class-ids"),
        (np.array([0.5, -1.2, 0.7]), "labels-not-class-ids"),
        (np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]]), "labels-not-one-hot"),
        (np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]]), "labels-not-one-hot"),
        (np.array([[0.0], [1.0]]), "labels-not-one-hot"),
        (np.eye(3)[[0, 1, 1]], "class-missing"),  # one-hot, but no 'up' window
    ],
)
def test_label_checks(labels, code):
    found = guards.check_labels(labels)
    assert [d.code for d in found] == ([code] if code else [])


def test_model_checks_name_the_fix():
    sigmoid = build_model(ModelConfig(output_activation="sigmoid"), 5, 2)
    narrow = build_model(ModelConfig(output_width=1), 5, 2)
    logits = build_model(ModelConfig(output_activation="linear"), 5, 2)
    assert [d.code for d in guards.check_model(sigmoid, from_logits=False)] == ["output-activation-mismatch"]
    assert [d.code for d in guards.check_model(narrow, from_logits=False)] == ["output-width-mismatch"]
    assert guards.check_model(logits, from_logits=True) == []
    assert [d.code for d in guards.check_model(logits, from_logits=False)] == ["output-activation-mismatch"]
    assert "softmax" in guards.check_model(sigmoid, False)[0].suggestion


def test_sigmoid_head_does_not_give_probabilities():
    """Why the preflight refuses it: Keras 3 trains it from the logits, but predict is not a distribution."""
    model = build_model(ModelConfig(output_activation="sigmoid"), 5, 2)
    probs = keras.ops.convert_to_numpy(
        model(np.random.default_rng(1).normal(size=(16, 5, 2)).astype("float32"))
    )
    assert not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_non_finite_input_names_feature_and_date():
    matrix = np.zeros((4, 2))
    matrix[2, 1] = np.nan
    dates = np.array(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"], dtype="datetime64[ns]")
    (d,) = guards.check_inputs(matrix, ("a", "b"), dates)
    assert d.code == "non-finite-input" and "'b' on 2024-01-04" in d.message


def test_one_hot_rows_become_class_ids_and_other_rows_unlabelled():
    labels = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(guards.class_ids(labels), [2, 0, -1, 1, -1])
    ids = np.array([0, 2, -1], dtype=np.int8)
    assert guards.class_ids(ids) is ids
    with pytest.raises(ValueError, match="need 3 columns"):
        guards.class_ids(np.zeros((2, 4)))


def test_stateful_layers_are_refused_with_the_reason():
    (d,) = guards.check_stateful(True)
    assert d.code == "stateful-unsupported" and d.fatal and "model.stateful to false" in d.suggestion
    assert guards.check_stateful(False) == []


def test_why_stateful_is_refused_a_stateful_model_answers_the_same_input_differently():
    """The served model's answer depends on what it was asked before: Keras never resets the state."""
    model = build_model(ModelConfig(lstm_units=(4,), stateful=True), window=5, n_features=2, batch_size=8)
    x = np.random.default_rng(3).normal(size=(8, 5, 2)).astype("float32")
    first = model.predict(x, verbose=0, batch_size=8)
    second = model.predict(x, verbose=0, batch_size=8)
    assert np.abs(first - second).max() > 1e-4


# -- the live guards fired by real training, not by hand-made logs ------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from models.dataset.build import build_dataset
    from tests.helpers import sample_prices, tiny_config

    config = tiny_config(evaluation={"scheme": "holdout"})
    info = build_dataset(sample_prices(config), config, tmp_path_factory.mktemp("ds"), {"kind": "sample"})
    return config, info


def train_tiny(tiny_dataset, tmp_path, labels=None, **training):
    from models.training.trainer import train

    config, info = tiny_dataset
    config = config.model_copy(update={"training": config.training.model_copy(update=training)})
    return train(info, config, tmp_path, log=lambda _m: None, labels_override=labels)


def test_class_collapse_fires_when_training_learns_only_the_majority(tiny_dataset, tmp_path):
    """Labels that carry no information and are 94 % 'up', no class weights: the trained model says
    'up' for every validation window, epoch after epoch."""
    from models.dataset.arrays import load_arrays

    labels = load_arrays(tiny_dataset[1].path).labels.copy()
    rng = np.random.default_rng(0)
    known = labels >= 0
    labels[known] = rng.choice([0, 1, 2], size=int(known.sum()), p=[0.03, 0.03, 0.94])
    result = train_tiny(
        tiny_dataset,
        tmp_path,
        labels,
        class_weights=False,
        epochs=8,
        learning_rate=0.02,
        early_stopping_patience=8,
    )
    (collapse,) = [d for d in result.diagnoses if d["code"] == "class-collapse"]
    assert collapse["fatal"] and collapse["evidence"]["class"] == "up"
    assert collapse["evidence"]["share"] >= 0.98 and len(collapse["evidence"]["epochs"]) == 3
    assert result.epochs_run == collapse["evidence"]["epochs"][-1] < 8  # training stopped there


def test_vanishing_updates_are_flagged_when_the_weights_stop_moving(tiny_dataset, tmp_path):
    """A learning rate of 1e-12: the weights move by ~1e-12 of their size per epoch."""
    result = train_tiny(tiny_dataset, tmp_path, epochs=5, learning_rate=1e-12, early_stopping_patience=9)
    (flag,) = [d for d in result.diagnoses if d["code"] == "vanishing-updates"]
    assert flag["fatal"] is False and flag["evidence"]["epoch"] == 4
    assert flag["evidence"]["relative_change"] < 1e-7
    assert result.epochs_run == 5  # a flag, not a stop: the gate judges what was learned
    normal = train_tiny(tiny_dataset, tmp_path / "normal", epochs=5, early_stopping_patience=9)
    assert "vanishing-updates" not in [d["code"] for d in normal.diagnoses]


def test_loss_at_the_clip_floor_stops_a_real_fit(model):
    """What Keras 3 on a CPU can show of it: one-hot labels whose rows are all zero (every window fell
    through the labelling) give a loss of 0, at or below the clip floor, while accuracy is what the
    untrained head happens to say. This pipeline refuses those labels before training
    (`labels-not-one-hot`); a plain Keras fit with the guard attached is stopped in its first epoch."""
    x = np.random.default_rng(0).normal(size=(256, 5, 2)).astype("float32")
    y = np.zeros((256, 3), dtype="float32")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    guard = guards.GuardCallback(x[:64])
    history = model.fit(x, y, epochs=20, batch_size=64, callbacks=[guard], verbose=0)
    assert history.history["loss"][0] <= guards.CLIP_FLOOR
    (d,) = guard.diagnoses
    assert d.code == "loss-at-clip-floor" and d.fatal
    assert len(history.history["loss"]) == 1  # stopped after its first epoch
    assert d.evidence["accuracy"] < 0.99


def test_non_finite_weights_stop_training_at_the_epoch_end(model):
    guard = guards.GuardCallback(np.zeros((8, 5, 2), dtype="float32"))
    guard.set_model(model)
    weights = model.get_weights()
    weights[0][0, 0] = np.inf  # what an overflowing update leaves in the kernel
    model.set_weights(weights)
    guard.on_epoch_end(2, {"loss": 1.0, "accuracy": 0.4})
    (d,) = guard.diagnoses
    assert d.code == "non-finite" and d.fatal and model.stop_training
    assert d.message == "Model weights became NaN or infinite in epoch 3."
