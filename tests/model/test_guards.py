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
