"""Judging a model: the evidence the walk-forward gate reads, the champion on common windows, the
holdout evaluation, and logits turned into probabilities. Small hand-made predictions with answers
computed here, and a tiny dataset with untrained tiny models (no training: seconds)."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from models.config import GateConfig, ModelConfig
from models.dataset.arrays import load_arrays, normalized_matrix
from models.dataset.build import build_dataset
from models.dataset.windows import gather
from models.training import bootstrap as bs
from models.training import evaluation as ev
from models.training.baselines import baselines
from models.training.bootstrap import default_block
from models.training.network import build_model, forward
from tests.helpers import sample_prices, tiny_config

# -- walk_forward_evidence on hand-made pooled predictions ----------------------------------------


def balanced(y: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean([correct[y == c].mean() for c in range(3) if (y == c).any()]))


def pooled_predictions(seed: int = 0, sessions: int = 60, tickers: int = 2) -> dict[str, np.ndarray]:
    """Two folds of `sessions // 2` sessions, `tickers` windows a session. Ticker 0's calls are all
    right; ticker 1's are right a third of the time (like the baselines)."""
    rng = np.random.default_rng(seed)
    n = sessions * tickers
    y = rng.integers(0, 3, n)
    ticker = np.tile(np.arange(tickers), sessions)
    wrong = (y + rng.integers(1, 3, n)) % 3
    pred = np.where((ticker == 0) | (rng.random(n) < 1 / 3), y, wrong)
    fold = np.repeat(np.arange(2), n // 2)
    days = np.repeat(np.arange(sessions), tickers)
    return {
        "rows": np.arange(n) + 100,
        "dates": (np.datetime64("2024-01-01") + days).astype("datetime64[ns]"),
        "ticker_ids": ticker.astype(np.int32),
        "labels": y,
        "model": np.eye(3, dtype=np.float32)[pred] * 0.8 + 0.2 / 3,
        "train_direction": np.where(fold == 0, 2, 0),
        "fold": fold.astype(np.int32),
        "baseline_majority": np.eye(3, dtype=np.float32)[np.full(n, 2)],
        "baseline_persistence": np.eye(3, dtype=np.float32)[np.where(rng.random(n) < 0.5, y, wrong)],
        "baseline_class_prior": np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (n, 1)),
    }


def fold_records(pooled: dict[str, np.ndarray]) -> list[dict]:
    records = []
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    for f in (1, 0):  # out of order: the evidence sorts them
        m = pooled["fold"] == f
        records.append(
            {
                "fold": f,
                "splits": {"test": [f"t{f}a", f"t{f}b"], "train": [f"r{f}a", f"r{f}b"]},
                "metrics": {"balanced_accuracy": balanced(y[m], (pred == y)[m])},
                "baselines": {
                    "majority": {"balanced_accuracy": balanced(y[m], (y == 2)[m])},
                    "persistence": {"balanced_accuracy": 0.3 - 0.01 * f},
                    "class_prior": {"balanced_accuracy": 0.3 + 0.01 * f},
                },
            }
        )
    return records


def test_evidence_numbers_by_hand():
    pooled = pooled_predictions()
    y = pooled["labels"]
    gate = GateConfig(bootstrap_samples=500)
    evidence = ev.walk_forward_evidence(pooled, fold_records(pooled), ("AAA", "BBB"), 1, gate)
    pred = pooled["model"].argmax(axis=1)
    ours = balanced(y, (pred == y).astype(float))
    assert evidence["model"]["balanced_accuracy"] == pytest.approx(ours)
    assert evidence["model"]["accuracy"] == pytest.approx((pred == y).mean())
    prior = np.array([0.2, 0.3, 0.5])
    persistence = pooled["baseline_persistence"].argmax(axis=1) == y
    theirs = {
        "majority": balanced(y, (y == 2).astype(float)),
        "persistence": balanced(y, persistence.astype(float)),
        "class_prior": float(prior[np.unique(y)].mean()),
    }
    assert set(evidence["baselines"]) == set(theirs)
    for name, value in theirs.items():
        base = evidence["baselines"][name]
        assert base["balanced_accuracy"] == pytest.approx(value), name
        assert base["interval"]["estimate"] == pytest.approx(value, abs=1e-6)
        diff = base["difference"]
        assert diff["estimate"] == pytest.approx(ours - value, abs=1e-6)
        assert diff["lower"] < diff["estimate"] < diff["upper"] and diff["confidence"] == 0.95
        assert diff["lower"] > 0  # ticker 0 is always right: a real edge over both
    assert evidence["baselines"]["majority"]["accuracy"] == pytest.approx((y == 2).mean())
    assert evidence["baselines"]["class_prior"]["accuracy"] == pytest.approx(prior[y].mean())
    assert evidence["strongest_baseline"] == "persistence" == max(theirs, key=theirs.get)
    interval = evidence["model"]["interval"]
    assert interval["estimate"] == pytest.approx(ours, abs=1e-6)
    assert interval["lower"] < interval["estimate"] < interval["upper"]

    sample = evidence["sample"]
    assert sample["windows"] == 120 and sample["sessions"] == 60 and sample["tickers"] == 2
    assert sample["label_periods"] == 60.0 and sample["block_sessions"] == 4  # max(2 x 1, cbrt(60))
    assert sample["bootstrap_samples"] == 500 and sample["confidence"] == 0.95
    assert 1 <= sample["effective_windows"] <= 120

    for row, f in zip(evidence["folds"], (0, 1), strict=True):
        m = pooled["fold"] == f
        record = next(r for r in fold_records(pooled) if r["fold"] == f)
        scores = {n: b["balanced_accuracy"] for n, b in record["baselines"].items()}
        best = max(scores, key=scores.get)
        assert row["fold"] == f and row["windows"] == int(m.sum())
        assert row["test"] == [f"t{f}a", f"t{f}b"] and row["train"] == [f"r{f}a", f"r{f}b"]
        assert row["model"] == record["metrics"]["balanced_accuracy"] and row["baselines"] == scores
        assert row["strongest"] == best
        assert row["difference"] == pytest.approx(row["model"] - scores[best])
        assert row["interval"]["estimate"] == pytest.approx(row["difference"], abs=1e-6)
        assert row["interval"]["lower"] <= row["interval"]["upper"]


def test_direction_skill_counts_only_up_down_calls_on_windows_that_moved():
    pooled = pooled_predictions(seed=3)
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    evidence = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB"), 1, GateConfig(bootstrap_samples=300)
    )
    direction = evidence["direction"]["difference"]
    moved = (y != 1) & (pred != 1)
    hits = ((pred == y) & moved).sum() / moved.sum()
    base = ((pooled["train_direction"] == y) & moved).sum() / moved.sum()
    assert direction["windows"] == int(moved.sum())
    assert direction["model"] == pytest.approx(hits) and direction["baseline"] == pytest.approx(base)
    assert direction["baseline_class"] == "down/up"  # fold 0 trained on mostly up, fold 1 on down
    assert direction["estimate"] == pytest.approx(hits - base, abs=1e-6)
    assert direction["lower"] <= direction["estimate"] <= direction["upper"]

    # Every call range_bound: no up/down call at all, nothing to bound.
    flat = pooled | {"model": np.tile(np.array([0.1, 0.8, 0.1], dtype=np.float32), (120, 1))}
    none = ev.walk_forward_evidence(
        flat, fold_records(flat), ("AAA", "BBB"), 1, GateConfig(bootstrap_samples=300)
    )["direction"]["difference"]
    assert none["windows"] == 0 and none["confidence"] == 0.95 and none["baseline_class"] == "down/up"
    nan = {"model", "baseline", "estimate", "lower", "upper"}
    assert set(none) == nan | {"windows", "confidence", "baseline_class"}
    assert all(np.isnan(none[k]) for k in nan)


def test_per_ticker_rows_and_the_ticker_that_carries_the_result():
    pooled = pooled_predictions(seed=1, tickers=3)
    y = pooled["labels"]
    evidence = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB", "CCC"), 1, GateConfig(bootstrap_samples=300)
    )
    strongest = evidence["strongest_baseline"]
    key = f"baseline_{strongest}"
    pred = pooled["model"].argmax(axis=1)
    correct = (pred == y).astype(float)
    base_correct = pooled[key][np.arange(len(y)), y].astype(float)
    rows = {r["ticker"]: r for r in evidence["per_ticker"]}
    assert list(rows) == ["AAA", "BBB", "CCC"]
    for tid, name in enumerate(("AAA", "BBB", "CCC")):
        m = pooled["ticker_ids"] == tid
        row = rows[name]
        assert row["windows"] == int(m.sum())
        assert row["model"] == pytest.approx(balanced(y[m], correct[m]))
        assert row["baseline"] == pytest.approx(balanced(y[m], base_correct[m]))
        assert row["difference"] == pytest.approx(row["model"] - row["baseline"])
        rest = ~m
        without = balanced(y[rest], correct[rest]) - balanced(y[rest], base_correct[rest])
        assert row["difference_without"] == pytest.approx(without)
    # Without AAA the model is no better than the baseline: AAA alone carries the result.
    assert evidence["carried_by"] == ["AAA"]
    # A minimum effect above the overall difference: nothing is "carried".
    high = ev.walk_forward_evidence(
        pooled,
        fold_records(pooled),
        ("AAA", "BBB", "CCC"),
        1,
        GateConfig(bootstrap_samples=300, min_effect=0.9),
    )
    assert high["carried_by"] == []


def test_a_ticker_without_windows_has_no_row():
    pooled = pooled_predictions(seed=2)
    evidence = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB", "ZZZ"), 1, GateConfig(bootstrap_samples=200)
    )
    assert [r["ticker"] for r in evidence["per_ticker"]] == ["AAA", "BBB"]
    # ... wherever it sits in the universe: the tickers after it still get theirs.
    gap = pooled | {"ticker_ids": pooled["ticker_ids"] * 2}
    evidence = ev.walk_forward_evidence(
        gap, fold_records(gap), ("AAA", "ZZZ", "BBB"), 1, GateConfig(bootstrap_samples=200)
    )
    assert [r["ticker"] for r in evidence["per_ticker"]] == ["AAA", "BBB"]


def test_the_bootstrap_is_reproducible_and_its_block_follows_the_config():
    pooled = pooled_predictions(seed=4)
    gate = GateConfig(bootstrap_samples=300, block_sessions=5, bootstrap_seed=9)
    a = ev.walk_forward_evidence(pooled, fold_records(pooled), ("AAA", "BBB"), 1, gate)
    b = ev.walk_forward_evidence(pooled, fold_records(pooled), ("AAA", "BBB"), 1, gate)
    assert a == b
    assert a["sample"]["block_sessions"] == 5
    # Folds too short for two blocks get no interval (a bootstrap there would be meaningless).
    short = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB"), 1, gate.model_copy(update={"block_sessions": 16})
    )
    assert all("interval" not in row for row in short["folds"])
    assert "interval" in a["folds"][0]


# -- predictions: logits become probabilities -----------------------------------------------------


def test_a_logits_head_is_turned_into_probabilities_and_a_softmax_head_is_left_alone():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(60, 2)).astype("float32") * 3
    ends = np.arange(4, 60)
    keras.utils.set_random_seed(1)
    logits_model = build_model(ModelConfig(lstm_units=(3,), output_activation="linear"), 5, 2, seed=1)
    raw = forward(logits_model, gather(matrix, ends, 5))
    assert not np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)  # the head really gives logits
    probs = ev.predict_windows(logits_model, matrix, ends, 5)
    expected = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    softmax_model = build_model(ModelConfig(lstm_units=(3,)), 5, 2, seed=1)
    np.testing.assert_array_equal(
        ev.predict_windows(softmax_model, matrix, ends, 5), forward(softmax_model, gather(matrix, ends, 5))
    )
    assert ev.predict_windows(softmax_model, matrix, ends[:0], 5).shape == (0, 3)
    # Rows summing to 1 within 1e-3 (float16-like rounding) are probabilities, left alone; rows
    # summing to 1.5 are not, whatever their sign: they go through the softmax.
    x = gather(matrix, ends, 5)
    for scale, is_probabilities in ((1.0004, True), (1.5, False)):
        scaled = keras.Model(softmax_model.inputs[0], keras.layers.Rescaling(scale)(softmax_model.outputs[0]))
        out = forward(scaled, x)
        expected = out if is_probabilities else np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(ev.predict_windows(scaled, matrix, ends, 5), expected, rtol=1e-6)


# -- a tiny real dataset, tiny untrained models: evaluate_run and the champion ---------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    config = tiny_config(evaluation={"scheme": "holdout"})
    info = build_dataset(sample_prices(config), config, tmp_path_factory.mktemp("ds"), {"kind": "sample"})
    return config, info


def save_model(path, info, seed, activation="softmax"):
    model = build_model(
        ModelConfig(lstm_units=(2,), output_activation=activation), info.window, len(info.features), seed=seed
    )
    model.save(path)
    return path


def champion_bundle(folder, info, seed=3, **manifest_changes):
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "model.keras", info, seed)
    shutil.copy(info.stats_path, folder / "stats.parquet")
    manifest = {
        "features": list(info.features),
        "window": info.window,
        "horizon": info.horizon,
        "labels": {"rule": info.label_rule["rule"], "scale": info.theta},
        "splits": info.splits,
    }
    for key, value in manifest_changes.items():
        manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def hand_metrics(model_path, info):
    arrays = load_arrays(info.path)
    ends = arrays.ends["test"]
    model = keras.saving.load_model(model_path)
    probs = forward(model, gather(normalized_matrix(info, arrays), ends, info.window))
    y = arrays.labels[ends].astype(np.int64)
    return y, probs.argmax(axis=1), probs


def test_evaluate_run_scores_the_test_split_and_the_champion_on_the_same_windows(dataset, tmp_path):
    config, info = dataset
    model_path = save_model(tmp_path / "ours.keras", info, seed=5)
    y, pred, probs = hand_metrics(model_path, info)
    fatal = [{"code": "dead-units", "message": "dead", "fatal": True}]
    bundle = champion_bundle(tmp_path / "champion", info)
    result = ev.evaluate_run(info.path, model_path, config.gate, fatal, bundle, 4)
    assert result["scheme"] == "holdout" and result["metrics"]["windows"] == len(y)
    assert result["metrics"]["balanced_accuracy"] == pytest.approx(balanced(y, (pred == y).astype(float)))
    assert result["metrics"]["accuracy"] == pytest.approx((pred == y).mean())
    assert result["metrics"] == ev.classification_metrics(y, pred, probs)  # log loss included
    assert result["baselines"] == baselines(load_arrays(info.path))
    cy, cpred, _ = hand_metrics(bundle / "model.keras", info)
    assert result["champion"]["version"] == 4 and result["champion_version"] == 4
    assert result["champion"]["balanced_accuracy"] == pytest.approx(balanced(cy, (cpred == cy).astype(float)))
    assert result["gate"]["verdict"] == "rejected"
    assert result["gate"]["reasons"][0] == "guard 'dead-units': dead"  # the fatal list reached the gate
    assert any(c["against"] == "champion v4" for c in result["gate"]["comparisons"])
    assert result["inputs"] == {
        "scheme": "holdout",
        "dataset": str(info.path),
        "model": str(model_path),
        "fatal": fatal,
    }
    # rejudge against no champion: the same scores, no champion comparison
    again = ev.rejudge(result, config, None, None)
    assert again["metrics"] == result["metrics"] and again["champion"] is None
    assert again["champion_version"] is None
    # A version without a bundle (nothing to compare with) is not reported as the champion's.
    assert ev.rejudge(result, config, None, 4)["champion_version"] is None
    assert all(not c["against"].startswith("champion") for c in again["gate"]["comparisons"])
    # rejudge against the champion now in place: compared again, under its own version.
    moved = ev.rejudge(again, config, bundle, 7)
    assert moved["champion"] == result["champion"] | {"version": 7} and moved["champion_version"] == 7
    assert moved["metrics"] == result["metrics"] and moved["baselines"] == result["baselines"]
    assert any(c["against"] == "champion v7" for c in moved["gate"]["comparisons"])


@pytest.mark.parametrize(
    "change",
    [
        {"features": ["log_return"]},
        {"window": 99},
        {"horizon": 99},
        {"labels": {"rule": "volatility", "scale": 0.005}},
        {"labels": {"rule": "fixed", "scale": 0.123}},
    ],
    ids=["features", "window", "horizon", "rule", "scale"],
)
def test_a_champion_trained_on_other_terms_is_not_compared(dataset, tmp_path, change):
    config, info = dataset
    bundle = champion_bundle(tmp_path / "champion", info, **change)
    assert ev.champion_metrics(bundle, 2, info, load_arrays(info.path)) is None
    pooled = pooled_from(info, tmp_path / "ours.keras")
    record = ev.champion_comparison(pooled, info, config.gate, 4, bundle, 2)
    assert record == {
        "version": 2,
        "compared": False,
        "blocks": False,
        "reason": "not comparable: trained with other features, window, horizon or labels",
    }


def pooled_from(info, model_path):
    save_model(model_path, info, seed=5)
    arrays = load_arrays(info.path)
    ends = arrays.ends["test"]
    y, _, probs = hand_metrics(model_path, info)
    return {"rows": ends, "dates": arrays.dates[ends], "labels": y, "model": probs}


def test_the_champion_is_compared_only_on_windows_it_never_saw(dataset, tmp_path):
    config, info = dataset
    arrays = load_arrays(info.path)
    pooled = pooled_from(info, tmp_path / "ours.keras")
    test_dates = np.unique(pooled["dates"])
    # The champion's training and early stopping saw data up to a day inside our test period.
    seen_until = pd.Timestamp(test_dates[30]).date().isoformat()
    splits = {**info.splits, "validation": [info.splits["validation"][0], seen_until]}
    bundle = champion_bundle(tmp_path / "champion", info, splits=splits)
    gate = config.gate.model_copy(update={"bootstrap_samples": 300})
    record = ev.champion_comparison(pooled, info, gate, 4, bundle, 6)
    first_input = arrays.dates[pooled["rows"] - (info.window - 1)]
    fresh = first_input > np.datetime64(seen_until)
    assert record["compared"] is True and record["blocks"] is True and record["version"] == 6
    assert record["windows"] == int(fresh.sum()) and 0 < fresh.sum() < len(fresh)
    assert record["sessions"] == len(np.unique(pooled["dates"][fresh]))
    assert record["from"] == str(pd.Timestamp(pooled["dates"][fresh].min()).date())
    y = pooled["labels"][fresh]
    ours = balanced(y, (pooled["model"][fresh].argmax(axis=1) == y).astype(float))
    _, champion_pred, _ = hand_metrics(bundle / "model.keras", info)
    theirs = balanced(y, (champion_pred[fresh] == y).astype(float))
    assert record["ours"] == pytest.approx(ours) and record["balanced_accuracy"] == pytest.approx(theirs)
    diff = record["difference"]
    assert diff["estimate"] == pytest.approx(ours - theirs, abs=1e-6)
    assert diff["lower"] <= diff["estimate"] <= diff["upper"] and diff["confidence"] == 0.95
    # The bounds: the block bootstrap of the config's seed over the common sessions, block 4.
    session, n = bs.session_index(pooled["dates"][fresh])
    weights = bs.block_weights(n, 4, 300, gate.bootstrap_seed)
    replicates = bs.balanced_accuracy_replicates(
        y, (pooled["model"][fresh].argmax(axis=1) == y).astype(float), session, weights
    ) - bs.balanced_accuracy_replicates(y, (champion_pred[fresh] == y).astype(float), session, weights)
    assert diff == bs.interval(record["ours"] - record["balanced_accuracy"], replicates, 0.95).as_dict()

    # Too few common sessions: said with the numbers; it blocks because the champion is not older.
    strict = gate.model_copy(update={"min_champion_sessions": 10_000})
    few = ev.champion_comparison(pooled, info, strict, 4, bundle, 6)
    assert few == {
        "version": 6,
        "compared": False,
        "blocks": True,
        "reason": f"only {record['sessions']} common out-of-sample sessions after its validation end "
        f"{seen_until} (needs 10000)",
        "sessions": record["sessions"],
    }
    # An older champion (its test period ended before ours) does not block.
    older = {**splits, "test": [splits["test"][0], pd.Timestamp(test_dates[40]).date().isoformat()]}
    bundle_older = champion_bundle(tmp_path / "older", info, splits=older)
    assert ev.champion_comparison(pooled, info, strict, 4, bundle_older, 6)["blocks"] is False
    # Compared, an older champion's comparison counts like any other: its record says it blocks.
    assert ev.champion_comparison(pooled, info, gate, 4, bundle_older, 6)["blocks"] is True


def saved_fold_records(pooled, diagnoses, folder):
    """The flow's fold records for `pooled`, each fold's predictions saved as the trainer saves them."""
    records = []
    for record in fold_records(pooled):
        f = record["fold"]
        m = pooled["fold"] == f
        path = folder / f"fold-{f}.npz"
        part = {k: v[m] for k, v in pooled.items() if k not in ("fold", "train_direction")}
        np.savez(path, **part, train_direction=np.array(2 if f == 0 else 0))
        records.append(
            record
            | {
                "predictions": str(path),
                "sizes": {"train": 10 + f},
                "audit": {"passed": True, "fold": f},
                "splits": record["splits"] | {"validation": [f"v{f}a", f"v{f}b"]},
                "training": {
                    "diagnoses": diagnoses[f],
                    "epochs_run": 3 + f,
                    "best_epoch": 1,
                    "seconds": 1.234567,
                },
            }
        )
    return records


def test_walk_forward_evaluation_pools_the_folds_and_hands_every_fatal_diagnosis_to_the_gate(
    dataset, tmp_path
):
    import dataclasses

    config, info = dataset
    config = config.model_copy(update={"gate": GateConfig(bootstrap_samples=300)})
    pooled = pooled_predictions(seed=5)
    diagnoses = {
        0: [{"code": "exploding-loss", "message": "loss 1e4", "fatal": True}],
        1: [
            {"code": "constant-feature", "message": "flag only", "fatal": False},
            {"code": "dead-units", "message": "no key says fatal: fatal"},
        ],
    }
    records = saved_fold_records(pooled, diagnoses, tmp_path)
    folds = [dataclasses.replace(info, fold=f) for f in (0, 1)]
    records.sort(key=lambda r: r["fold"])  # as the flow hands them over
    result = ev.evaluate_walk_forward(records, folds, config, tmp_path / "evaluation")
    pooled_back = dict(np.load(tmp_path / "evaluation" / ev.POOLED_FILE))
    for key in ("labels", "model", "fold", "train_direction", "baseline_persistence"):
        np.testing.assert_array_equal(pooled_back[key], pooled[key])
    assert result["inputs"]["fatal"] == [
        {"code": "exploding-loss", "message": "loss 1e4", "fatal": True, "fold": 0},
        {"code": "dead-units", "message": "no key says fatal: fatal", "fold": 1},
    ]
    assert [d["fold"] for d in result["diagnoses"]] == [0, 1, 1]
    assert result["gate"]["verdict"] == "rejected"
    assert result["gate"]["reasons"][0] == (
        "fold 0: guard 'exploding-loss': loss 1e4; fold 1: guard 'dead-units': no key says fatal: fatal"
    )
    assert result["fold_runs"] == [
        {
            "fold": f,
            "sizes": {"train": 10 + f},
            "validation": [f"v{f}a", f"v{f}b"],
            "epochs_run": 3 + f,
            "best_epoch": 1,
            "seconds": 1.23,
            "leakage_audit": {"passed": True, "fold": f},
        }
        for f in (0, 1)
    ]
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    assert result["metrics"]["balanced_accuracy"] == pytest.approx(balanced(y, (pred == y).astype(float)))
    assert result["metrics"]["interval"] == result["walk_forward"]["model"]["interval"]
    assert result["baselines"] == result["walk_forward"]["baselines"]
    assert result["scheme"] == "walk_forward" and result["champion"] is None
    assert result["inputs"]["dataset"] == folds[1].path
    # Judged again (another champion in place; here none): the same verdict from the stored inputs.
    again = ev.rejudge(result, config, None, None)
    assert again["gate"] == result["gate"] and again["metrics"] == result["metrics"]


def champion_rules(evaluation):
    return [r for r in evaluation["gate"]["rules"] if "champion" in r["message"]]


def test_walk_forward_compares_the_champion_on_the_evidence_block_and_rejudge_compares_again(
    dataset, tmp_path
):
    import dataclasses

    config, info = dataset
    config = config.model_copy(update={"gate": GateConfig(bootstrap_samples=300)})
    pooled = pooled_predictions(seed=6)
    records = [
        r | {"baselines_file": f"fold-{r['fold']}/baselines.json"}
        for r in saved_fold_records(pooled, {0: [], 1: []}, tmp_path)
    ]
    folds = [dataclasses.replace(info, fold=f) for f in (0, 1)]
    # A champion whose training ended before every pooled window's first input: every window counts.
    splits = {**info.splits, "validation": ["2000-01-01", "2000-06-30"]}
    bundle = champion_bundle(tmp_path / "champion", info, splits=splits)
    result = ev.evaluate_walk_forward(records, folds, config, tmp_path / "evaluation", bundle, 3)
    block = result["walk_forward"]["sample"]["block_sessions"]
    assert block == default_block(info.horizon, 60)  # the evidence's block (the gate config says None)
    expected = ev.champion_comparison(pooled, folds[1], config.gate, block, bundle, 3)
    assert expected["compared"] is True and expected["windows"] == len(pooled["labels"])
    assert result["champion"] == expected and result["champion_version"] == 3
    other_block = ev.champion_comparison(pooled, folds[1], config.gate, block + 3, bundle, 3)
    assert other_block["difference"] != expected["difference"]  # the block the evidence used matters
    assert [" vs champion v3 " in r["message"] for r in champion_rules(result)] == [True]
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    model = ev.classification_metrics(y, pred, pooled["model"])  # with the log loss of the probabilities
    assert result["metrics"] == model | {"interval": result["walk_forward"]["model"]["interval"]}
    assert result["baselines_file"] == "fold-1/baselines.json"  # the published (last) fold's

    # Judged again with the champion in place at promotion: compared anew, under its version.
    again = ev.rejudge(result, config, bundle, 8)
    assert again["champion"] == expected | {"version": 8} and again["champion_version"] == 8
    assert again["metrics"] == result["metrics"] and again["walk_forward"] == result["walk_forward"]
    assert again["baselines_file"] == "fold-1/baselines.json"
    assert [" vs champion v8 " in r["message"] for r in champion_rules(again)] == [True]
    alone = ev.rejudge(result, config, None, None)
    assert alone["champion"] is None and alone["champion_version"] is None
    assert champion_rules(alone) == []


def test_a_champion_with_per_ticker_stats_lacking_one_of_our_tickers_is_not_compared(dataset, tmp_path):
    from models.dataset.normalization import Stats, write_stats

    config, info = dataset
    bundle = champion_bundle(tmp_path / "champion", info)
    shape = (len(info.tickers) - 1, len(info.features))
    stats = Stats(info.features, np.zeros(shape), np.ones(shape), 1, (), {}, scopes=info.tickers[:-1])
    write_stats(stats, bundle / "stats.parquet")
    assert ev.champion_metrics(bundle, 2, info, load_arrays(info.path)) is None
    pooled = pooled_from(info, tmp_path / "ours.keras")
    gate = config.gate.model_copy(update={"bootstrap_samples": 50})
    record = ev.champion_comparison(pooled, info, gate, 4, bundle, 2)
    missing = info.tickers[-1]
    assert (
        record
        == {
            "version": 2,
            "compared": False,
            "blocks": False,  # the champion's test period ends with ours, yet it cannot judge our tickers
            "reason": f"not comparable: normalization stats are per ticker and have none for ['{missing}'] "
            f"(fitted for {list(info.tickers[:-1])})",
        }
    )


def test_a_model_is_loaded_in_safe_mode_and_a_head_without_three_classes_predicts_down(dataset, tmp_path):
    config, info = dataset
    arrays = load_arrays(info.path)
    matrix = normalized_matrix(info, arrays)
    inputs = keras.Input((info.window, len(info.features)))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, -1, :3])(inputs))
    lambda_model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        ev.evaluate_model(tmp_path / "lambda.keras", matrix, arrays, info.window)
    bundle = champion_bundle(tmp_path / "champion", info)
    shutil.copy(tmp_path / "lambda.keras", bundle / "model.keras")
    pooled = pooled_from(info, tmp_path / "ours.keras")
    gate = config.gate.model_copy(update={"bootstrap_samples": 100})
    with pytest.raises(ValueError, match="safe_mode"):  # the champion's model too
        ev.champion_comparison(pooled, info, gate, 4, bundle, 1)
    two = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(2)(inputs)))
    two.save(tmp_path / "two.keras")
    y = arrays.labels[arrays.ends["test"]]
    expected = ev.classification_metrics(y, np.zeros(len(y), dtype=np.int64))
    assert ev.evaluate_model(tmp_path / "two.keras", matrix, arrays, info.window) == expected


def test_every_interval_of_the_evidence_is_the_block_bootstrap_the_config_asks_for():
    """Each bound recomputed here from the bootstrap's primitives: the seed, the block (from the
    horizon), the number of resamples and the confidence of the config, the fold's own seed."""
    from models.training import bootstrap as bs

    pooled = pooled_predictions(seed=7)
    gate = GateConfig(bootstrap_samples=400, bootstrap_seed=5, confidence=0.9)
    evidence = ev.walk_forward_evidence(pooled, fold_records(pooled), ("AAA", "BBB"), 7, gate)
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    session, n = bs.session_index(pooled["dates"])
    block = bs.default_block(7, n)
    weights = bs.block_weights(n, block, 400, 5)
    assert evidence["sample"]["block_sessions"] == block == 14

    def reps(mask, correct, s=session, w=weights):
        return bs.balanced_accuracy_replicates(y[mask], correct[mask], s, w)

    every = np.ones(len(y), dtype=bool)
    ours = (pred == y).astype(np.float64)
    estimate = evidence["model"]["balanced_accuracy"]
    assert evidence["model"]["interval"] == bs.interval(estimate, reps(every, ours), 0.9).as_dict()
    for name, base in evidence["baselines"].items():
        theirs = pooled[f"baseline_{name}"][np.arange(len(y)), y].astype(np.float64)
        diff = reps(every, ours) - reps(every, theirs)
        assert base["interval"] == bs.interval(base["balanced_accuracy"], reps(every, theirs), 0.9).as_dict()
        assert base["difference"] == bs.interval(estimate - base["balanced_accuracy"], diff, 0.9).as_dict()

    for row in evidence["folds"]:
        f, mask = row["fold"], pooled["fold"] == row["fold"]
        best = pooled[f"baseline_{row['strongest']}"][np.arange(len(y)), y].astype(np.float64)
        s, d = bs.session_index(pooled["dates"][mask])
        w = bs.block_weights(d, block, 400, 5 + 1 + f)  # each fold its own resamples
        diff = reps(mask, ours, s, w) - reps(mask, best, s, w)
        assert row["interval"] == bs.interval(row["difference"], diff, 0.9).as_dict()

    moved = (y != 1) & (pred != 1)
    hit = ((pred == y) & moved).astype(np.float64)
    base_hit = ((pooled["train_direction"] == y) & moved).astype(np.float64)
    diff = bs.ratio_replicates(hit, moved, session, weights) - bs.ratio_replicates(
        base_hit, moved, session, weights
    )
    direction = evidence["direction"]["difference"]
    expected = bs.interval(direction["model"] - direction["baseline"], diff, 0.9).as_dict()
    assert {k: direction[k] for k in expected} == expected

    sample = evidence["sample"]
    assert sample["label_periods"] == round(60 / 7, 1) == 8.6
    assert sample["effective_windows"] == round(bs.effective_windows(ours, session, weights), 1)
    assert sample["confidence"] == 0.9 and sample["bootstrap_samples"] == 400
    # Right in streaks of five sessions, wrong in the next five: the windows are worth fewer.
    days = np.repeat(np.arange(60), 2)
    streaky_pred = np.where((days // 5) % 2 == 0, y, (y + 1) % 3)
    streaky = pooled | {"model": np.eye(3, dtype=np.float32)[streaky_pred] * 0.8 + 0.2 / 3}
    fewer = ev.walk_forward_evidence(streaky, fold_records(streaky), ("AAA", "BBB"), 7, gate)["sample"]
    effective = bs.effective_windows((streaky_pred == y).astype(np.float64), session, weights)
    assert 80 < effective < 90 and fewer["effective_windows"] == round(effective, 1)  # 85.4, not 85.39

    # A fold of exactly two blocks' sessions (30 = 2 x 15) is resampled; one more session is needed
    # for a block of 16 (see test_the_bootstrap_is_reproducible_and_its_block_follows_the_config).
    two_blocks = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB"), 7, gate.model_copy(update={"block_sessions": 15})
    )
    assert all("interval" in row for row in two_blocks["folds"])


def test_pool_folds_concatenates_in_fold_order_and_pools_a_single_fold(tmp_path):
    pooled = pooled_predictions(seed=8)
    records = saved_fold_records(pooled, {0: [], 1: []}, tmp_path)
    assert [r["fold"] for r in records] == [1, 0]  # handed over out of order
    back = ev.pool_folds(records)
    assert set(back) == set(pooled)
    for key, values in pooled.items():
        np.testing.assert_array_equal(back[key], values, err_msg=key)
    alone = ev.pool_folds(records[:1])  # one fold (a walk-forward of one fold, or a holdout run)
    m = pooled["fold"] == 1
    assert set(alone) == set(pooled)
    for key, values in pooled.items():
        np.testing.assert_array_equal(alone[key], values[m], err_msg=key)


def test_the_strongest_baseline_is_the_best_scoring_one_whatever_its_name():
    pooled = pooled_predictions(seed=9)
    y = pooled["labels"]
    wrong = pooled | {"baseline_zz_wrong": np.eye(3, dtype=np.float32)[(y + 1) % 3]}
    gate = GateConfig(bootstrap_samples=200)
    evidence = ev.walk_forward_evidence(wrong, fold_records(wrong), ("AAA", "BBB"), 1, gate)
    scores = {n: b["balanced_accuracy"] for n, b in evidence["baselines"].items()}
    assert scores["zz_wrong"] == 0.0
    assert evidence["strongest_baseline"] == max(scores, key=scores.get) != "zz_wrong"


def partly_right(seed: int, share: float) -> dict[str, np.ndarray]:
    """Three tickers: AAA always right, BBB right `share` of the time, CCC a third of the time."""
    pooled = pooled_predictions(seed=seed, tickers=3)
    y, pred = pooled["labels"], pooled["model"].argmax(axis=1)
    rng = np.random.default_rng(100 + seed)
    bbb = pooled["ticker_ids"] == 1
    pred = np.where(bbb, np.where(rng.random(len(y)) < share, y, (y + 1) % 3), pred)
    return pooled | {"model": np.eye(3, dtype=np.float32)[pred] * 0.8 + 0.2 / 3}


def test_a_ticker_carries_the_result_when_the_rest_keeps_at_most_half_of_it_or_the_minimum_effect():
    pooled = partly_right(seed=0, share=0.8)
    tickers = ("AAA", "BBB", "CCC")

    def evidence(min_effect):
        gate = GateConfig(bootstrap_samples=100, min_effect=min_effect)
        return ev.walk_forward_evidence(pooled, fold_records(pooled), tickers, 1, gate)

    base = evidence(0.0)
    overall = base["baselines"][base["strongest_baseline"]]["difference"]["estimate"]
    without = {r["ticker"]: r["difference_without"] for r in base["per_ticker"]}
    # Without AAA a third to a half of the edge is left; without BBB more than half, less than all.
    assert overall / 3 < without["AAA"] <= overall / 2 <= without["BBB"] < overall < without["CCC"]
    assert base["carried_by"] == ["AAA"]
    # A minimum effect above half the edge is the bar instead, inclusive: BBB's share exactly.
    assert evidence(without["BBB"])["carried_by"] == ["AAA", "BBB"]
    # An edge no larger than the minimum effect: there is nothing for a ticker to carry.
    assert evidence(overall)["carried_by"] == []


def test_per_ticker_balanced_accuracy_counts_only_the_classes_the_ticker_has():
    pooled = pooled_predictions(seed=10)
    y = np.where((pooled["ticker_ids"] == 1) & (pooled["labels"] == 0), 2, pooled["labels"])
    pooled = pooled | {"labels": y}
    evidence = ev.walk_forward_evidence(
        pooled, fold_records(pooled), ("AAA", "BBB"), 1, GateConfig(bootstrap_samples=100)
    )
    m = pooled["ticker_ids"] == 1
    correct = (pooled["model"].argmax(axis=1) == y).astype(float)
    bbb = evidence["per_ticker"][1]
    assert bbb["ticker"] == "BBB" and set(y[m]) == {1, 2}
    assert bbb["model"] == pytest.approx(balanced(y[m], correct[m]))  # the mean of two recalls

    # One ticker: nothing is left without it, so no "difference without" and nothing carried.
    one = {k: v[~m] for k, v in pooled.items()}
    alone = ev.walk_forward_evidence(one, fold_records(one), ("AAA",), 1, GateConfig(bootstrap_samples=100))
    assert np.isnan(alone["per_ticker"][0]["difference_without"]) and alone["carried_by"] == []


def test_a_champion_whose_manifest_has_no_label_scale_is_not_compared(dataset, tmp_path):
    """Even against a k of 1 (rule volatility), a plausible scale: a missing scale matches nothing."""
    import dataclasses

    config, info = dataset
    info = dataclasses.replace(info, theta=1.0, label_rule={**info.label_rule, "rule": "volatility"})
    bundle = champion_bundle(tmp_path / "champion", info, labels={"rule": "volatility"})
    assert ev.champion_metrics(bundle, 2, info, load_arrays(info.path)) is None
    pooled = pooled_from(info, tmp_path / "ours.keras")
    record = ev.champion_comparison(pooled, info, config.gate, 4, bundle, 2)
    assert record["compared"] is False and record["reason"].startswith("not comparable: trained with")


def test_the_champion_needs_the_configured_sessions_and_two_blocks_both_inclusive(dataset, tmp_path):
    config, info = dataset
    pooled = pooled_from(info, tmp_path / "ours.keras")
    bundle = champion_bundle(tmp_path / "champion", info)  # trained before our test period
    gate = config.gate.model_copy(update={"bootstrap_samples": 100, "min_champion_sessions": 1})
    sessions = len(np.unique(pooled["dates"]))
    assert sessions >= 40

    def compare(block, **changes):
        return ev.champion_comparison(pooled, info, gate.model_copy(update=changes), block, bundle, 1)

    assert compare(4, min_champion_sessions=sessions)["compared"] is True
    too_few = compare(4, min_champion_sessions=sessions + 1)
    assert too_few["compared"] is False and too_few["reason"].endswith(f"(needs {sessions + 1})")
    half = sessions // 2
    assert compare(half)["compared"] is True  # exactly enough for two blocks
    over = compare(half + 1 + sessions % 2)
    assert over["compared"] is False and over["reason"].endswith(f"(needs {2 * (half + 1 + sessions % 2)})")


def test_a_champion_with_per_ticker_stats_is_scored_on_inputs_normalized_per_ticker(dataset, tmp_path):
    from models.dataset.normalization import Stats, write_stats

    config, info = dataset
    arrays = load_arrays(info.path)
    bundle = champion_bundle(tmp_path / "champion", info)
    n_tickers, n_features = len(info.tickers), len(info.features)
    center = np.arange(n_tickers * n_features, dtype=np.float64).reshape(n_tickers, n_features) / 4
    scale = 1.0 + np.arange(n_tickers)[:, None] * np.ones((1, n_features))
    write_stats(Stats(info.features, center, scale, 1, (), {}, scopes=info.tickers), bundle / "stats.parquet")
    matrix = ((arrays.matrix - center[arrays.ticker_ids]) / scale[arrays.ticker_ids]).astype(np.float32)
    ends = arrays.ends["test"]
    model = keras.saving.load_model(bundle / "model.keras")
    probs = forward(model, gather(matrix, ends, info.window))
    y = arrays.labels[ends].astype(np.int64)
    expected = ev.classification_metrics(y, probs.argmax(axis=1), probs)
    got = ev.champion_metrics(bundle, 5, info, arrays)
    assert got.pop("log_loss") == pytest.approx(expected.pop("log_loss"))
    assert got == {"version": 5, **expected}

    pooled = pooled_from(info, tmp_path / "ours.keras")
    gate = config.gate.model_copy(update={"bootstrap_samples": 100})
    record = ev.champion_comparison(pooled, info, gate, 4, bundle, 5)
    assert record["compared"] is True
    assert record["balanced_accuracy"] == pytest.approx(
        balanced(y, (probs.argmax(axis=1) == y).astype(float))
    )
