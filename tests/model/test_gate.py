"""The walk-forward gate's rules at their boundaries, the block bootstrap, and the fitted baselines.

No TensorFlow: the gate is a pure function of numbers, the bootstrap and the baselines are numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.config import GateConfig
from models.training import bootstrap as bs
from models.training.baselines import class_weights, volatility_regime_rule
from models.training.gate import holdout_gate, walk_forward_gate


def evidence(lower=0.01, fold_diffs=(0.02, 0.01, -0.01, 0.03), direction_lower=0.05) -> dict:
    diff = {"estimate": lower + 0.02, "lower": lower, "upper": lower + 0.04, "confidence": 0.95}
    return {
        "model": {"balanced_accuracy": 0.45},
        "baselines": {
            "linear": {"balanced_accuracy": 0.43, "difference": diff},
            "majority": {
                "balanced_accuracy": 0.33,
                "difference": {**diff, "lower": 0.1, "estimate": 0.12},
            },
        },
        "folds": [{"fold": i, "difference": d} for i, d in enumerate(fold_diffs)],
        "direction": {
            "difference": {
                "windows": 100,
                "model": 0.6,
                "baseline": 0.5,
                "baseline_class": "up",
                "estimate": 0.1,
                "lower": direction_lower,
            }
        },
    }


def rule(verdict, name, against=None):
    (found,) = [r for r in verdict.rules if r["rule"] == name and r.get("against", against) == against]
    return found


def test_every_criterion_met_promotes_and_records_each_rule():
    verdict = walk_forward_gate(evidence(), GateConfig(), [])
    assert verdict.promoted and verdict.reasons == []
    assert [r["rule"] for r in verdict.rules] == [
        "no-fatal-diagnosis",
        "beats-baseline",
        "beats-baseline",
        "fold-consistency",
        "direction-skill",
    ]
    linear = rule(verdict, "beats-baseline", "linear")
    assert linear["lower"] == 0.01 and linear["threshold"] == 0.0 and linear["passed"]


@pytest.mark.parametrize(
    ("lower", "min_effect", "promoted"),
    [(0.0, 0.0, False), (1e-9, 0.0, True), (-0.01, 0.0, False), (0.02, 0.02, False), (0.0201, 0.02, True)],
)
def test_lower_bound_must_be_strictly_above_the_minimum_effect(lower, min_effect, promoted):
    verdict = walk_forward_gate(evidence(lower=lower), GateConfig(min_effect=min_effect), [])
    assert verdict.promoted is promoted
    assert rule(verdict, "beats-baseline", "linear")["passed"] is promoted
    if not promoted:
        assert any("linear" in r and "is not above" in r for r in verdict.reasons)


@pytest.mark.parametrize(
    ("diffs", "share", "promoted"),
    [
        ((0.1, -0.1, 0.1, -0.1), 0.5, True),  # exactly the share needed
        ((0.1, -0.1, -0.1, -0.1), 0.5, False),
        ((0.1, 0.1, 0.1, 0.0), 1.0, False),  # a tie is not a win
        ((0.1, 0.1, 0.1, 0.1), 1.0, True),
    ],
)
def test_fold_consistency(diffs, share, promoted):
    verdict = walk_forward_gate(evidence(fold_diffs=diffs), GateConfig(min_fold_share=share), [])
    assert rule(verdict, "fold-consistency")["passed"] is promoted
    assert verdict.promoted is promoted


def test_direction_skill_is_reported_always_and_a_criterion_only_when_required():
    weak = evidence(direction_lower=0.0)
    reported = walk_forward_gate(weak, GateConfig(), [])
    assert reported.promoted and rule(reported, "direction-skill")["criterion"] is False
    assert rule(reported, "direction-skill")["passed"] is False
    required = walk_forward_gate(weak, GateConfig(require_direction_skill=True), [])
    assert not required.promoted and any("sign accuracy" in r for r in required.reasons)
    assert walk_forward_gate(
        evidence(direction_lower=1e-9), GateConfig(require_direction_skill=True), []
    ).promoted


@pytest.mark.parametrize(
    ("classes", "named"),
    [
        ("up", "vs always 'up' 0.5000"),
        ("down/up", "vs each fold's train-majority direction (down/up) 0.5000"),
    ],
)
def test_the_direction_baseline_is_named_as_it_was_fitted(classes, named):
    """Folds whose train majorities differ were not compared with 'always up' (nor 'always down/up')."""
    ev = evidence()
    ev["direction"]["difference"]["baseline_class"] = classes
    assert named in rule(walk_forward_gate(ev, GateConfig(), []), "direction-skill")["message"]


def test_a_fatal_diagnosis_in_any_fold_rejects():
    fatal = [{"code": "exploding-loss", "message": "loss 1e4", "fold": 2}]
    verdict = walk_forward_gate(evidence(), GateConfig(), fatal)
    assert not verdict.promoted and verdict.reasons == ["fold 2: guard 'exploding-loss': loss 1e4"]


def champion(upper, compared=True, blocks=True):
    base = {"version": 3, "compared": compared, "blocks": blocks}
    if not compared:
        return base | {"reason": "only 5 common out-of-sample sessions"}
    diff = {"estimate": upper - 0.02, "lower": upper - 0.04, "upper": upper, "confidence": 0.95}
    return base | {
        "windows": 800,
        "sessions": 100,
        "from": "2024-01-02",
        "ours": 0.45,
        "balanced_accuracy": 0.46,
        "difference": diff,
    }


@pytest.mark.parametrize(
    ("upper", "tolerance", "promoted"),
    [(-0.01, 0.01, True), (-0.0101, 0.01, False), (0.0, 0.0, True), (-1e-9, 0.0, False)],
)
def test_champion_may_not_beat_the_model_beyond_the_interval(upper, tolerance, promoted):
    verdict = walk_forward_gate(evidence(), GateConfig(champion_tolerance=tolerance), [], champion(upper))
    assert rule(verdict, "champion", "champion v3")["passed"] is promoted
    assert verdict.promoted is promoted


def test_a_champion_that_cannot_be_compared_blocks_only_when_it_is_not_older():
    newer = walk_forward_gate(evidence(), GateConfig(), [], champion(0, compared=False, blocks=True))
    assert not newer.promoted and "only 5 common" in newer.reasons[0]
    older = walk_forward_gate(evidence(), GateConfig(), [], champion(0, compared=False, blocks=False))
    assert older.promoted and rule(older, "champion", "champion v3")["criterion"] is False


# -- the bootstrap ------------------------------------------------------------------------------


def test_block_weights_draw_whole_blocks_of_consecutive_sessions():
    weights = bs.block_weights(100, 10, 50, seed=1)
    assert weights.shape == (50, 100) and (weights.sum(axis=1) == 100).all()
    again = bs.block_weights(100, 10, 50, seed=1)
    np.testing.assert_array_equal(weights, again)
    with pytest.raises(ValueError, match="fewer than two bootstrap blocks"):
        bs.block_weights(19, 10, 5, seed=0)


def test_balanced_accuracy_replicates_equal_the_plain_metric_without_resampling():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    correct = (rng.random(300) < 0.5).astype(float)
    session, n = bs.session_index(np.repeat(np.arange(100), 3))
    identity = np.ones((1, n), dtype=np.int64)
    expected = np.mean([correct[labels == c].mean() for c in range(3)])
    assert bs.balanced_accuracy_replicates(labels, correct, session, identity)[0] == pytest.approx(expected)


def test_windows_that_move_together_count_as_fewer_independent_windows():
    """Eight tickers sharing every outcome are worth one ticker; independent ones are worth eight."""
    rng = np.random.default_rng(3)
    days = np.repeat(np.arange(400), 8)
    session, n = bs.session_index(days)
    weights = bs.block_weights(n, 10, 2000, seed=0)
    shared = np.repeat(rng.random(400) < 0.5, 8).astype(float)
    independent = (rng.random(3200) < 0.5).astype(float)
    assert bs.effective_windows(shared, session, weights) < 3200 / 8 * 1.5
    assert bs.effective_windows(independent, session, weights) > 3200 * 0.6


def test_a_true_edge_has_a_positive_lower_bound_and_none_has_not():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 4000)
    session, n = bs.session_index(np.repeat(np.arange(500), 8))
    weights = bs.block_weights(n, 10, 1000, seed=0)
    base = (rng.random(4000) < 0.40).astype(float)
    better = (rng.random(4000) < 0.48).astype(float)
    same = (rng.random(4000) < 0.40).astype(float)

    def lower(a, b):
        reps = bs.balanced_accuracy_replicates(labels, a, session, weights) - bs.balanced_accuracy_replicates(
            labels, b, session, weights
        )
        return bs.interval(0.0, reps, 0.95).lower

    assert lower(better, base) > 0
    assert lower(same, base) < 0


# -- baselines ----------------------------------------------------------------------------------


def test_volatility_rule_finds_the_planted_threshold_on_train():
    rng = np.random.default_rng(0)
    vol = rng.uniform(0, 1, 3000)
    labels = np.where(vol < 0.3, 1, rng.choice([0, 2], 3000))  # calm: range_bound; else up or down
    cuts, classes = volatility_regime_rule(vol, labels, class_weights(labels, True))
    # The calm regime below ~0.3 predicts range_bound; above it only up or down (the split between
    # those two is noise the rule may fit, which the out-of-sample evaluation then charges it for).
    assert cuts[0] == pytest.approx(0.3, abs=0.06)
    assert classes[0] == 1 and set(classes[1:]) <= {0, 2}


# -- every rule's record, exactly (what the report and the logs show) ---------------------------


def test_each_rule_records_the_numbers_it_compared_and_says_them_in_words():
    verdict = walk_forward_gate(evidence(), GateConfig(), [], champion(-0.005))
    assert verdict.as_dict()["verdict"] == "promoted" and verdict.label == "promoted"
    assert verdict.rules == [
        {
            "rule": "no-fatal-diagnosis",
            "criterion": True,
            "passed": True,
            "message": "no fold raised a fatal diagnosis",
            "codes": [],
        },
        {
            "rule": "beats-baseline",
            "criterion": True,
            "passed": True,
            "message": "balanced accuracy 0.4500 vs linear 0.4300: difference +0.0300, 95% lower bound "
            "+0.0100 is above the minimum effect 0.0",
            "against": "linear",
            "ours": 0.45,
            "theirs": 0.43,
            "difference": pytest.approx(0.03),
            "lower": 0.01,
            "threshold": 0.0,
            "confidence": 0.95,
        },
        {
            "rule": "beats-baseline",
            "criterion": True,
            "passed": True,
            "message": "balanced accuracy 0.4500 vs majority 0.3300: difference +0.1200, 95% lower bound "
            "+0.1000 is above the minimum effect 0.0",
            "against": "majority",
            "ours": 0.45,
            "theirs": 0.33,
            "difference": 0.12,
            "lower": 0.1,
            "threshold": 0.0,
            "confidence": 0.95,
        },
        {
            "rule": "fold-consistency",
            "criterion": True,
            "passed": True,
            "message": "beats its fold's strongest baseline in 3 of 4 folds (75%; needs 50%)",
            "wins": 3,
            "folds": 4,
            "share": 0.75,
            "threshold": 0.5,
        },
        {
            "rule": "direction-skill",
            "criterion": False,
            "passed": True,
            "message": "sign accuracy on 100 up/down calls that moved beyond the threshold: 0.6000 vs "
            "always 'up' 0.5000, difference +0.1000, lower bound +0.0500",
            "estimate": 0.1,
            "lower": 0.05,
            "threshold": 0.0,
        },
        {
            "rule": "champion",
            "criterion": True,
            "passed": True,
            "message": "on 800 common out-of-sample windows (100 sessions from 2024-01-02): balanced "
            "accuracy 0.4500 vs champion v3 0.4600, difference -0.0250, upper bound -0.0050 is not "
            "below -0.01",
            "against": "champion v3",
            "ours": 0.45,
            "theirs": 0.46,
            "difference": pytest.approx(-0.025),
            "upper": -0.005,
            "threshold": -0.01,
            "confidence": 0.95,
        },
    ]


def test_a_failed_rule_says_so_and_becomes_the_reason():
    fatal = [
        {"code": "exploding-loss", "message": "loss 1e4", "fold": 0},
        {"code": "nan-loss", "message": "loss nan"},  # a fold-less diagnosis (holdout-style)
    ]
    verdict = walk_forward_gate(
        evidence(lower=-0.01, fold_diffs=(0.1, -0.1, -0.1)), GateConfig(), fatal, champion(-0.02)
    )
    assert verdict.label == "rejected" and verdict.as_dict()["verdict"] == "rejected"
    assert verdict.reasons == [
        "fold 0: guard 'exploding-loss': loss 1e4; fold ?: guard 'nan-loss': loss nan",
        "balanced accuracy 0.4500 vs linear 0.4300: difference +0.0100, 95% lower bound -0.0100 is not "
        "above the minimum effect 0.0",
        "beats its fold's strongest baseline in 1 of 3 folds (33%; needs 50%)",
        "on 800 common out-of-sample windows (100 sessions from 2024-01-02): balanced accuracy 0.4500 vs "
        "champion v3 0.4600, difference -0.0400, upper bound -0.0200 is below -0.01",
    ]
    assert rule(verdict, "no-fatal-diagnosis")["codes"] == ["exploding-loss", "nan-loss"]
    assert [r["passed"] for r in verdict.rules] == [False, False, True, False, True, False]


def test_no_folds_is_not_consistency_and_no_up_down_call_is_no_skill():
    bare = evidence(fold_diffs=())
    bare["direction"]["difference"] |= {"windows": 0, "lower": 0.2}  # a bound without windows
    verdict = walk_forward_gate(bare, GateConfig(min_fold_share=0.0, require_direction_skill=True), [])
    consistency = rule(verdict, "fold-consistency")
    assert consistency["passed"] is False and consistency["share"] == 0.0 and consistency["folds"] == 0
    skill = rule(verdict, "direction-skill")
    assert skill["passed"] is False and skill["criterion"] is True
    assert skill["message"] == "the model made no up/down call on a window that moved beyond the threshold"
    assert not verdict.promoted and len(verdict.reasons) == 2


def test_a_champion_that_cannot_be_compared_records_why():
    older = walk_forward_gate(evidence(), GateConfig(), [], champion(0, compared=False, blocks=False))
    assert rule(older, "champion", "champion v3") == {
        "rule": "champion",
        "criterion": False,
        "passed": True,
        "message": "champion v3: only 5 common out-of-sample sessions",
        "against": "champion v3",
    }
    newer = walk_forward_gate(evidence(), GateConfig(), [], champion(0, compared=False, blocks=True))
    assert rule(newer, "champion", "champion v3")["passed"] is False
    # A record without `compared` (or `blocks`) is not a comparison and does not block.
    bare = {"version": 4, "reason": "not comparable"}
    assert rule(walk_forward_gate(evidence(), GateConfig(), [], bare), "champion", "champion v4") == {
        "rule": "champion",
        "criterion": False,
        "passed": True,
        "message": "champion v4: not comparable",
        "against": "champion v4",
    }


# -- the holdout gate ---------------------------------------------------------------------------


def holdout_baselines(persistence=0.40, majority_accuracy=0.50) -> dict:
    return {
        "majority": {"class": "up", "accuracy": majority_accuracy, "balanced_accuracy": 0.3333},
        "persistence": {"accuracy": 0.40, "balanced_accuracy": persistence},
        "class_prior": {"accuracy": 0.34, "balanced_accuracy": 0.3333},
    }


def test_holdout_gate_promotes_a_model_that_clears_every_rule_and_records_each_comparison():
    metrics = {"accuracy": 0.55, "balanced_accuracy": 0.5}
    verdict = holdout_gate(metrics, holdout_baselines(), GateConfig(margin=0.02), [])
    assert verdict.promoted and verdict.reasons == [] and verdict.rules == []
    assert verdict.comparisons == [
        {
            "against": "majority",
            "theirs": 0.3333,
            "needed": pytest.approx(0.3533),
            "ours": 0.5,
            "passed": True,
        },
        {
            "against": "persistence",
            "theirs": 0.40,
            "needed": pytest.approx(0.42),
            "ours": 0.5,
            "passed": True,
        },
        {
            "against": "class_prior",
            "theirs": 0.3333,
            "needed": pytest.approx(0.3533),
            "ours": 0.5,
            "passed": True,
        },
    ]


@pytest.mark.parametrize(
    ("ours", "promoted"),
    [(0.5, True), (0.4999, False), (0.26, False)],  # exactly the margin above; just below; no margin
)
def test_holdout_gate_needs_every_baseline_beaten_by_the_margin(ours, promoted):
    """persistence 0.25 + margin 0.25 = 0.5 exactly (binary fractions: no rounding)."""
    metrics = {"accuracy": 0.9, "balanced_accuracy": ours}
    base = holdout_baselines(persistence=0.25)
    base["majority"]["balanced_accuracy"] = base["class_prior"]["balanced_accuracy"] = 0.0
    verdict = holdout_gate(metrics, base, GateConfig(margin=0.25), [])
    assert verdict.promoted is promoted
    comparison = verdict.comparisons[1]
    assert comparison["against"] == "persistence" and comparison["needed"] == 0.5
    assert comparison["passed"] is promoted
    if not promoted:
        assert verdict.reasons == [
            f"balanced accuracy {ours:.4f} does not beat the persistence baseline 0.2500 by the margin "
            "0.25 (needs 0.5000)"
        ]


@pytest.mark.parametrize(("accuracy", "promoted"), [(0.5, True), (0.4999, False)])
def test_holdout_gate_needs_at_least_the_majority_class_accuracy(accuracy, promoted):
    metrics = {"accuracy": accuracy, "balanced_accuracy": 0.6}
    verdict = holdout_gate(metrics, holdout_baselines(majority_accuracy=0.5), GateConfig(), [])
    assert verdict.promoted is promoted
    if not promoted:
        assert verdict.reasons == ["accuracy 0.4999 is below always predicting the majority class (0.5000)"]
    # Without a majority baseline there is no accuracy rule.
    without = {k: v for k, v in holdout_baselines().items() if k != "majority"}
    assert holdout_gate(metrics, without, GateConfig(), []).promoted


@pytest.mark.parametrize(
    ("ours", "tolerance", "promoted"),
    [(0.5, 0.25, True), (0.4999, 0.25, False), (0.75, 0.0, True), (0.7499, 0.0, False)],
)
def test_holdout_gate_may_lose_to_the_champion_only_within_the_tolerance(ours, tolerance, promoted):
    metrics = {"accuracy": 0.9, "balanced_accuracy": ours}
    champion_metrics = {"version": 7, "accuracy": 0.8, "balanced_accuracy": 0.75}
    verdict = holdout_gate(
        metrics,
        holdout_baselines(),
        GateConfig(margin=0.0, champion_tolerance=tolerance),
        [],
        champion_metrics,
    )
    assert verdict.promoted is promoted
    assert verdict.comparisons[-1] == {
        "against": "champion v7",
        "theirs": 0.75,
        "needed": 0.75 - tolerance,
        "ours": ours,
        "passed": promoted,
    }
    if not promoted:
        assert verdict.reasons == [
            f"balanced accuracy {ours:.4f} loses to champion v7 (0.7500) by more than {tolerance}"
        ]


def test_holdout_gate_rejects_on_any_fatal_diagnosis_whatever_the_scores():
    fatal = [{"code": "dead-units", "message": "every unit is dead", "fatal": True}]
    verdict = holdout_gate(
        {"accuracy": 1.0, "balanced_accuracy": 1.0}, holdout_baselines(), GateConfig(), fatal
    )
    assert not verdict.promoted
    assert verdict.reasons == ["guard 'dead-units': every unit is dead"]
    assert all(c["passed"] for c in verdict.comparisons)


def test_one_up_down_call_with_a_positive_bound_is_skill():
    """The boundary of 'made a call': one window is enough evidence to count (its bound decides)."""
    single = evidence()
    single["direction"]["difference"] |= {"windows": 1, "lower": 0.2}
    verdict = walk_forward_gate(single, GateConfig(require_direction_skill=True), [])
    assert rule(verdict, "direction-skill")["passed"] is True and verdict.promoted
