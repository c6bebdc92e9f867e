"""The baselines a model must beat, computed directly on small arrays with known answers (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from models.dataset.arrays import Arrays
from models.training.baselines import (
    BASELINES,
    baselines,
    class_weights,
    expected_metrics,
    fit_baselines,
    linear_model,
    volatility_regime_rule,
)


def arrays_of(labels, known, ends, volatility=None, matrix=None) -> Arrays:
    n = len(labels)
    return Arrays(
        matrix=np.zeros((n, 1)) if matrix is None else matrix,
        ticker_ids=np.zeros(n, dtype=np.int32),
        dates=np.arange(n).astype("datetime64[D]").astype("datetime64[ns]"),
        label_dates=np.arange(n).astype("datetime64[D]").astype("datetime64[ns]"),
        labels=np.asarray(labels, dtype=np.int8),
        forward_returns=np.zeros(n),
        known_label=np.asarray(known, dtype=np.int8),
        ends={k: np.asarray(v, dtype=np.int64) for k, v in ends.items()},
        volatility=volatility,
    )


def test_holdout_baselines_majority_persistence_and_class_prior_by_hand():
    # train: up, up, up, down, range_bound -> prior (0.2, 0.2, 0.6), majority up
    # test: down, range_bound, up, up; known labels at those ends: range_bound, unknown, up, down
    labels = [2, 2, 2, 0, 1, 0, 1, 2, 2]
    known = [-1, -1, -1, -1, -1, 1, -1, 2, 0]
    arrays = arrays_of(labels, known, {"train": [0, 1, 2, 3, 4], "test": [5, 6, 7, 8]})
    out = baselines(arrays)
    assert out["majority"]["class"] == "up"
    assert out["majority"]["accuracy"] == 0.5
    assert out["majority"]["balanced_accuracy"] == pytest.approx(1 / 3)
    # persistence predicts range_bound, up (the majority, for the unknown label), up, down
    assert out["persistence"]["accuracy"] == 0.25
    assert out["persistence"]["balanced_accuracy"] == pytest.approx(1 / 6)
    assert out["persistence"]["confusion"] == [[0, 1, 0], [0, 0, 1], [1, 0, 1]]
    # drawn from the train prior: 0.2 x 0.25 + 0.2 x 0.25 + 0.6 x 0.5; balanced: mean of the prior
    assert out["class_prior"] == {"accuracy": pytest.approx(0.4), "balanced_accuracy": pytest.approx(1 / 3)}


def test_class_prior_balanced_accuracy_counts_only_the_classes_in_test():
    arrays = arrays_of([2, 2, 2, 0, 1, 2, 2, 1], [-1] * 8, {"train": [0, 1, 2, 3, 4], "test": [5, 6, 7]})
    assert baselines(arrays)["class_prior"]["balanced_accuracy"] == pytest.approx((0.2 + 0.6) / 2)


def test_class_weights_balance_the_classes_like_the_lstm():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), True), [4 / 9, 4 / 3, 4 / 3])
    np.testing.assert_array_equal(class_weights(np.array([0, 0, 0, 1]), False), [1.0, 1.0, 1.0])


def test_expected_metrics_of_a_prior_and_of_a_rule():
    labels = np.array([0, 1, 2, 2])
    prior = np.tile(np.array([0.2, 0.2, 0.6], dtype=np.float32), (4, 1))
    soft = expected_metrics(labels, prior)
    assert soft["windows"] == 4
    assert soft["accuracy"] == pytest.approx(0.4)
    assert soft["balanced_accuracy"] == pytest.approx((0.2 + 0.2 + 0.6) / 3)
    rule = expected_metrics(labels, np.eye(3, dtype=np.float32)[[0, 0, 2, 1]])
    assert rule["accuracy"] == 0.5 and rule["balanced_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert "confusion" in rule  # a hard rule is scored with the plain metrics of its argmax
    two_classes = expected_metrics(np.array([2, 2, 0]), prior[:3])
    assert two_classes["balanced_accuracy"] == pytest.approx((0.2 + 0.6) / 2)
    empty = expected_metrics(np.array([], dtype=np.int64), np.zeros((0, 3)) + 0.5)
    assert empty["accuracy"] == 0.0 and empty["balanced_accuracy"] == 0.0


def test_volatility_rule_prefers_fewer_regimes_on_a_tie():
    vol = np.linspace(0, 1, 200)
    cuts, classes = volatility_regime_rule(vol, np.full(200, 2), np.ones(3))
    assert len(cuts) == 1 and classes == [2, 2]
    assert cuts[0] == pytest.approx(np.quantile(vol, 0.1))


def test_volatility_rule_finds_two_cuts_when_the_middle_differs():
    rng = np.random.default_rng(1)
    vol = rng.uniform(0, 1, 2000)
    labels = np.where(vol < 0.3, 0, np.where(vol < 0.7, 1, 2))
    cuts, classes = volatility_regime_rule(vol, labels, np.ones(3))
    assert cuts == pytest.approx([0.3, 0.7], abs=0.06) and classes == [0, 1, 2]


def test_linear_model_picks_the_regularization_that_scores_best_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    y = np.where(x[:, 0] > 0.5, 2, np.where(x[:, 0] < -0.5, 0, 1))
    model, fitted = linear_model(x[:400], y[:400], x[400:], y[400:], np.ones(3))
    assert fitted["C"] == 1.0  # the weakest penalty: the signal is clean
    assert fitted["converged"] is True and fitted["validation_balanced_accuracy"] > 0.9
    assert (model.predict(x[400:]) == y[400:]).mean() > 0.9


def test_fit_baselines_fits_on_train_and_predicts_test_only():
    """A feature that says the class: the linear model and the volatility rule find it on train."""
    rng = np.random.default_rng(2)
    n = 900
    signal = rng.uniform(-1, 1, n)
    labels = np.where(signal > 0.33, 2, np.where(signal < -0.33, 0, 1)).astype(np.int8)
    known = np.roll(labels, 3)
    known[:3] = -1
    ends = {"train": np.arange(5, 500), "validation": np.arange(520, 650), "test": np.arange(700, 900)}
    arrays = arrays_of(labels, known, ends, volatility=signal + 1, matrix=signal[:, None])
    fits = fit_baselines(arrays, signal[:, None], window=1, balanced_weights=True)
    assert tuple(fits) == BASELINES
    y_test = labels[ends["test"]]
    for name, fit in fits.items():
        assert fit.probs.shape == (200, 3), name
    assert (fits["linear"].probs.argmax(axis=1) == y_test).mean() > 0.95
    assert (fits["volatility_regime"].probs.argmax(axis=1) == y_test).mean() > 0.9
    assert fits["volatility_regime"].fitted["classes"] == ["down", "range_bound", "up"]
    train_prior = np.bincount(labels[ends["train"]], minlength=3) / 495
    np.testing.assert_allclose(fits["class_prior"].probs[0], train_prior, rtol=1e-6)
    assert fits["class_prior"].fitted["prior"] == dict(
        zip(["down", "range_bound", "up"], train_prior.round(6).tolist(), strict=True)
    )
    majority = int(train_prior.argmax())
    assert (fits["majority"].probs.argmax(axis=1) == majority).all()
    np.testing.assert_array_equal(fits["persistence"].probs.argmax(axis=1), known[ends["test"]])
    assert fits["persistence"].fitted["unknown_share"] == 0.0


def test_fit_baselines_without_volatility_says_to_rebuild():
    arrays = arrays_of([0, 1, 2] * 10, [-1] * 30, {"train": [0, 1, 2], "validation": [3], "test": [4]})
    with pytest.raises(ValueError, match="no trailing volatility: rebuild"):
        fit_baselines(arrays, np.zeros((30, 1)), window=1, balanced_weights=True)


def test_holdout_baselines_when_train_or_test_lacks_a_class_or_holds_one_window():
    # Train lacks 'up', test has it: every share is over the three classes.
    out = baselines(arrays_of([0, 1, 2, 1], [-1] * 4, {"train": [0, 1], "test": [2, 3]}))
    assert out["class_prior"] == {"accuracy": pytest.approx(0.25), "balanced_accuracy": pytest.approx(0.25)}
    # Test lacks 'up', train has it.
    out = baselines(arrays_of([2, 2, 0], [-1] * 3, {"train": [0, 1], "test": [2]}))
    assert out["class_prior"] == {"accuracy": 0.0, "balanced_accuracy": 0.0}
    # One window each: shares are over one window, not two.
    out = baselines(arrays_of([1, 1], [-1] * 2, {"train": [0], "test": [1]}))
    assert out["class_prior"] == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    # No test window: no class to average over.
    with np.errstate(all="raise"):
        out = baselines(arrays_of([1, 1], [-1] * 2, {"train": [0, 1], "test": []}))
    assert out["class_prior"] == {"accuracy": 0.0, "balanced_accuracy": 0.0}


def test_volatility_rule_regimes_take_their_weighted_majority_and_an_empty_regime_says_down():
    # One volatility level: one cut at it, every window in the upper regime, the lower one empty.
    labels = np.array([0] * 10 + [2] * 8)
    cuts, classes = volatility_regime_rule(np.full(18, 0.2), labels, np.ones(3))
    assert cuts == [0.2] and classes == [0, 0]
    weighted = volatility_regime_rule(np.full(18, 0.2), labels, np.array([0.5, 10.0, 2.0]))[1]
    assert weighted == [0, 2]  # 8 x 2.0 beats 10 x 0.5


def test_volatility_rule_tries_two_neighbouring_deciles_as_cuts():
    vol = np.linspace(0, 1, 1001)
    labels = np.where((vol > 0.4) & (vol <= 0.5), 1, 0)  # the middle regime is one decile wide
    cuts, classes = volatility_regime_rule(vol, labels, np.array([1.0, 5.0, 1.0]))
    assert cuts == pytest.approx([0.4, 0.5]) and classes == [0, 1, 0]


def test_a_test_window_at_a_cut_belongs_to_the_upper_regime():
    n = 103
    vol = np.r_[np.zeros(50), np.ones(50), [0.5, 0.5, 0.5]]
    labels = np.r_[np.zeros(50), np.full(50, 2), [0, 0, 0]].astype(np.int8)
    ends = {"train": np.arange(100), "validation": np.arange(100), "test": np.array([100, 101, 102])}
    arrays = arrays_of(labels, np.full(n, -1), ends, volatility=vol, matrix=vol[:, None])
    fits = fit_baselines(arrays, vol[:, None], window=1, balanced_weights=False)
    assert fits["volatility_regime"].fitted == {"cuts": [0.5], "classes": ["down", "up"]}
    assert (fits["volatility_regime"].probs.argmax(axis=1) == 2).all()


def test_fit_baselines_records_what_each_baseline_was_fitted_to():
    rng = np.random.default_rng(4)
    n = 300
    signal = rng.uniform(-1, 1, n)
    labels = np.where(signal > 0.33, 2, np.where(signal < -0.33, 0, 1)).astype(np.int8)
    known = np.full(n, -1, dtype=np.int8)
    known[[200, 201]] = [0, 2]  # two test windows know their last label (one of them 'down')
    ends = {"train": np.arange(0, 150), "validation": np.arange(150, 200), "test": np.arange(200, 206)}
    arrays = arrays_of(labels, known, ends, volatility=np.round(signal + 1, 3), matrix=signal[:, None])
    fits = fit_baselines(arrays, signal[:, None], window=1, balanced_weights=True)
    train_prior = np.bincount(labels[:150], minlength=3) / 150
    majority = ["down", "range_bound", "up"][int(train_prior.argmax())]
    assert fits["majority"].fitted == {"class": majority}
    assert fits["persistence"].fitted == {"fallback": majority, "unknown_share": 0.666667}
    assert fits["persistence"].probs.argmax(axis=1)[:2].tolist() == [0, 2]
    cuts = fits["volatility_regime"].fitted["cuts"]
    assert cuts == [round(c, 8) for c in cuts] and fits["volatility_regime"].fitted["classes"][0] == "down"
    linear = fits["linear"].fitted
    assert set(linear) == {"C", "validation_balanced_accuracy", "converged"}
    assert linear["validation_balanced_accuracy"] == round(linear["validation_balanced_accuracy"], 6) > 0.8


def test_linear_model_keeps_the_strongest_penalty_on_a_tie_and_rounds_its_score():
    x = np.repeat(np.array([[-10.0], [0.0], [10.0]]), 20, axis=0)
    y = np.repeat([0, 1, 2], 20)
    _, fitted = linear_model(x, y, x, y, np.ones(3))
    assert fitted == {"C": 0.01, "validation_balanced_accuracy": 1.0, "converged": True}
    # A validation score that needs rounding: 2 of 3 classes right.
    _, fitted = linear_model(x, y, x[:40], np.r_[np.zeros(20), np.full(20, 2)].astype(int), np.ones(3))
    assert fitted["validation_balanced_accuracy"] == round(1 / 2, 6)


def test_linear_model_uses_the_class_weights():
    """Few 'up' windows that overlap the others: balanced weights make the model call 'up'."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 2))
    y = np.where(x[:, 0] + rng.normal(scale=1.5, size=600) > 2.2, 2, 0)
    weights = class_weights(y, True)
    plain, _ = linear_model(x, y, x, y, np.ones(3))
    balanced, _ = linear_model(x, y, x, y, weights)
    assert (balanced.predict(x) == 2).sum() > 3 * max((plain.predict(x) == 2).sum(), 1)


def test_fit_baselines_without_volatility_says_so_exactly():
    arrays = arrays_of([0, 1, 2] * 10, [-1] * 30, {"train": [0, 1, 2], "validation": [3], "test": [4]})
    with pytest.raises(ValueError) as err:
        fit_baselines(arrays, np.zeros((30, 1)), window=1, balanced_weights=True)
    assert str(err.value) == "the dataset has no trailing volatility: rebuild it to fit the volatility rule"


def test_linear_model_says_when_it_did_not_converge():
    """Features on scales 1 to 1e7 (never normalized): lbfgs stops at max_iter, and the record says so."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    y = np.argmax(x[:, :3], axis=1)
    x = x * np.logspace(0, 7, 20)
    _, fitted = linear_model(x, y, x, y, np.ones(3))
    assert fitted["converged"] is False
    # Scales 1 to 100: several hundred iterations, within the cap of 1000.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    y = np.argmax(x[:, :3], axis=1)
    _, fitted = linear_model(x * np.logspace(0, 2, 20), y, x * np.logspace(0, 2, 20), y, np.ones(3))
    assert fitted["converged"] is True


def test_fit_baselines_gives_the_volatility_rule_the_lstms_class_weights():
    """Low volatility: 5 'down', 8 'up'; high: 7 'down', 16 'up'. Balanced weights (1 for 'down',
    0.5 for 'up') call the low regime 'down'; plain counts call both 'up'."""
    vol = np.r_[np.full(13, 0.1), np.full(23, 0.9), [0.1, 0.9]]
    labels = np.r_[[0] * 5, [2] * 8, [0] * 7, [2] * 16, [0, 2]].astype(np.int8)
    ends = {"train": np.arange(36), "validation": np.arange(36), "test": np.array([36, 37])}
    arrays = arrays_of(labels, np.full(38, -1), ends, volatility=vol, matrix=vol[:, None])
    balanced = fit_baselines(arrays, vol[:, None], window=1, balanced_weights=True)
    assert balanced["volatility_regime"].probs.argmax(axis=1).tolist() == [0, 2]  # test: low, high
    plain = fit_baselines(arrays, vol[:, None], window=1, balanced_weights=False)
    assert plain["volatility_regime"].probs.argmax(axis=1).tolist() == [2, 2]


def test_fit_baselines_on_a_train_split_without_up_still_gives_three_probabilities():
    labels = np.array([0, 1] * 20 + [2, 2], dtype=np.int8)
    vol = np.linspace(0, 1, 42)
    ends = {"train": np.arange(40), "validation": np.arange(40), "test": np.array([40, 41])}
    fits = fit_baselines(arrays_of(labels, np.full(42, -1), ends, vol, vol[:, None]), vol[:, None], 1, True)
    assert fits["class_prior"].probs.tolist() == [[0.5, 0.5, 0.0]] * 2
    assert fits["class_prior"].fitted == {"prior": {"down": 0.5, "range_bound": 0.5, "up": 0.0}}


def test_fit_baselines_records_the_rules_cuts_to_eight_decimals():
    rng = np.random.default_rng(6)
    vol = rng.uniform(0, 1, 300)
    labels = np.where(vol > 0.55, 2, 0).astype(np.int8)
    ends = {"train": np.arange(200), "validation": np.arange(200, 250), "test": np.arange(250, 300)}
    fits = fit_baselines(arrays_of(labels, np.full(300, -1), ends, vol, vol[:, None]), vol[:, None], 1, False)
    raw, _ = volatility_regime_rule(vol[:200], labels[:200].astype(np.int64), np.ones(3))
    assert raw != [round(c, 8) for c in raw]  # the raw cuts have more decimals than the record
    assert fits["volatility_regime"].fitted["cuts"] == [round(c, 8) for c in raw]


def test_the_linear_model_reads_every_feature_of_every_window_session():
    """Windows of 3 sessions x 2 features: the class is in the second feature of the oldest session."""
    rng = np.random.default_rng(7)
    n = 400
    matrix = rng.normal(size=(n, 2))
    labels = np.zeros(n, dtype=np.int8)
    labels[2:] = np.where(matrix[:-2, 1] > 0.4, 2, np.where(matrix[:-2, 1] < -0.4, 0, 1))
    ends = {"train": np.arange(2, 250), "validation": np.arange(250, 320), "test": np.arange(320, 400)}
    arrays = arrays_of(labels, np.full(n, -1), ends, volatility=np.abs(matrix[:, 0]), matrix=matrix)
    fits = fit_baselines(arrays, matrix, window=3, balanced_weights=True)
    assert (fits["linear"].probs.argmax(axis=1) == labels[ends["test"]]).mean() >= 0.85
