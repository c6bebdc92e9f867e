"""Judging a trained model: its out-of-sample metrics, the baselines, the champion on the same
windows, and the gate.

holdout: `evaluate_run` scores one test split. walk_forward: `evaluate_walk_forward` pools the
folds' out-of-sample predictions (see models.training.folds) and bootstraps the intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from models.config import CLASS_NAMES, GateConfig, PipelineConfig
from models.dataset.arrays import Arrays, DatasetInfo, load_arrays, load_info, normalized_matrix
from models.dataset.labels import RANGE_BOUND
from models.dataset.normalization import apply_to_rows, read_stats
from models.dataset.windows import gather
from models.training.baselines import baselines
from models.training.gate import holdout_gate, walk_forward_gate
from models.training.metrics import K, classification_metrics
from models.training.network import forward


def predict_windows(
    model: keras.Model, matrix: np.ndarray, ends: np.ndarray, window: int, batch: int = 2048
) -> np.ndarray:
    """Class probabilities for the windows ending at `ends`, batch by batch."""
    batch = model.inputs[0].shape[0] or batch  # a stateful model only takes batches of its training size
    chunks = [forward(model, gather(matrix, ends[i : i + batch], window)) for i in range(0, len(ends), batch)]
    out = np.concatenate(chunks) if chunks else np.zeros((0, K), dtype=np.float32)
    if out.shape[-1] == K and not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):
        out = keras.ops.convert_to_numpy(keras.activations.softmax(out))  # a logits head
    return out


def evaluate_model(model_path: Path, matrix: np.ndarray, arrays: Arrays, window: int) -> dict:
    """Metrics of a saved model on the test windows (matrix already normalized with its stats)."""
    model = keras.saving.load_model(model_path, safe_mode=True)
    ends = arrays.ends["test"]
    probs = predict_windows(model, matrix, ends, window)
    if probs.shape[-1] != K:
        y_pred = np.zeros(len(ends), dtype=np.int64)
        return classification_metrics(arrays.labels[ends], y_pred)
    return classification_metrics(arrays.labels[ends], probs.argmax(axis=-1), probs)


def evaluate_run(
    dataset_path: Path,
    model_path: Path,
    gate_config: GateConfig,
    fatal_diagnoses: list[dict],
    champion_bundle: Path | None = None,
    champion_version: int | None = None,
) -> dict:
    """Metrics on the test split, the baselines, the champion's metrics (when compatible), the gate."""
    info = load_info(dataset_path)
    arrays = load_arrays(dataset_path)
    matrix = normalized_matrix(info, arrays)
    metrics = evaluate_model(model_path, matrix, arrays, info.window)
    base = baselines(arrays)
    champion = None
    if champion_bundle is not None:
        champion = champion_metrics(champion_bundle, champion_version, info, arrays)
    verdict = holdout_gate(metrics, base, gate_config, fatal_diagnoses, champion)
    return {
        "scheme": "holdout",
        "metrics": metrics,
        "baselines": base,
        "champion": champion,
        "champion_version": champion_version if champion_bundle is not None else None,
        "gate": verdict.as_dict(),
        "inputs": {
            "scheme": "holdout",
            "dataset": str(dataset_path),
            "model": str(model_path),
            "fatal": fatal_diagnoses,
        },
    }


def champion_metrics(bundle: Path, version: int | None, info: DatasetInfo, arrays: Arrays) -> dict | None:
    """The champion's metrics on this run's test windows, with the champion's own stats.

    Returns None when the champion is not comparable (other features, window, horizon or label rule).
    """
    manifest = json.loads((bundle / "manifest.json").read_text())
    comparable = (
        list(manifest["features"]) == list(info.features)
        and int(manifest["window"]) == info.window
        and int(manifest["horizon"]) == info.horizon
        and manifest["labels"].get("rule") == info.label_rule["rule"]
        and float(manifest["labels"].get("scale", -1)) == info.theta
    )
    if not comparable:
        return None
    try:
        matrix = apply_to_rows(
            read_stats(bundle / "stats.parquet"), arrays.matrix, arrays.ticker_ids, info.tickers
        )
    except ValueError:  # per-ticker stats that lack one of this run's tickers
        return None
    return {
        "version": version,
        **evaluate_model(bundle / "model.keras", matrix, arrays, info.window),
    }


# -- walk-forward ---------------------------------------------------------------------------------

POOLED_FILE = "pooled.npz"


def pool_folds(fold_records: list[dict]) -> dict[str, np.ndarray]:
    """The out-of-sample predictions of every fold, concatenated in fold order (with `fold`)."""
    parts = []
    for record in sorted(fold_records, key=lambda r: r["fold"]):
        with np.load(record["predictions"]) as z:
            part = {k: z[k] for k in z.files if k != "train_direction"}
            part["train_direction"] = np.full(len(part["labels"]), int(z["train_direction"]))
        part["fold"] = np.full(len(part["labels"]), record["fold"], dtype=np.int32)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _baseline_names(pooled: dict[str, np.ndarray]) -> list[str]:
    return [k.removeprefix("baseline_") for k in pooled if k.startswith("baseline_")]


def _correct(pooled: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Each window's (expected) correctness: 1/0 for the argmax of the model, the probability of the
    true class for a baseline (0/1 for a rule, the prior for class_prior)."""
    y = pooled["labels"].astype(np.int64)
    probs = pooled[key]
    if key == "model":
        return (probs.argmax(axis=1) == y).astype(np.float64)
    return probs[np.arange(len(y)), y].astype(np.float64)


def walk_forward_evidence(
    pooled: dict[str, np.ndarray],
    fold_records: list[dict],
    tickers: tuple[str, ...],
    horizon: int,
    gate_config: GateConfig,
) -> dict:
    """Everything the walk-forward gate and the report need, from the pooled predictions.

    Pooled and per-fold balanced accuracy of the model and every baseline, one-sided bootstrap
    bounds of (model - baseline), direction skill, per-ticker rows, and the effective sample size.
    """
    from models.training import bootstrap as bs
    from models.training.baselines import expected_metrics

    y = pooled["labels"].astype(np.int64)
    conf = gate_config.confidence
    session, n_sessions = bs.session_index(pooled["dates"])
    block = gate_config.block_sessions or bs.default_block(horizon, n_sessions)
    weights = bs.block_weights(n_sessions, block, gate_config.bootstrap_samples, gate_config.bootstrap_seed)
    names = _baseline_names(pooled)
    correct = {"model": _correct(pooled, "model"), **{n: _correct(pooled, f"baseline_{n}") for n in names}}
    reps = {k: bs.balanced_accuracy_replicates(y, c, session, weights) for k, c in correct.items()}
    point = {"model": classification_metrics(y, pooled["model"].argmax(axis=1), pooled["model"])}
    point |= {n: expected_metrics(y, pooled[f"baseline_{n}"]) for n in names}
    ours = point["model"]["balanced_accuracy"]
    baselines = {}
    for n in names:
        theirs = point[n]["balanced_accuracy"]
        baselines[n] = {
            "accuracy": point[n]["accuracy"],
            "balanced_accuracy": theirs,
            "interval": bs.interval(theirs, reps[n], conf).as_dict(),
            "difference": bs.interval(ours - theirs, reps["model"] - reps[n], conf).as_dict(),
        }
    strongest = max(names, key=lambda n: point[n]["balanced_accuracy"])

    folds = []
    for record in sorted(fold_records, key=lambda r: r["fold"]):
        f = record["fold"]
        mask = pooled["fold"] == f
        scores = {n: b["balanced_accuracy"] for n, b in record["baselines"].items()}
        best = max(scores, key=scores.get)
        row = {
            "fold": f,
            "test": record["splits"]["test"],
            "train": record["splits"]["train"],
            "windows": int(mask.sum()),
            "model": record["metrics"]["balanced_accuracy"],
            "baselines": scores,
            "strongest": best,
            "difference": record["metrics"]["balanced_accuracy"] - scores[best],
        }
        s, d = bs.session_index(pooled["dates"][mask])
        if d >= 2 * block:
            w = bs.block_weights(d, block, gate_config.bootstrap_samples, gate_config.bootstrap_seed + 1 + f)
            diff = bs.balanced_accuracy_replicates(
                y[mask], correct["model"][mask], s, w
            ) - bs.balanced_accuracy_replicates(y[mask], correct[best][mask], s, w)
            row["interval"] = bs.interval(row["difference"], diff, conf).as_dict()
        folds.append(row)

    pred = pooled["model"].argmax(axis=1)
    moved = (y != RANGE_BOUND) & (pred != RANGE_BOUND)
    model_hit = ((pred == y) & moved).astype(np.float64)
    base_hit = ((pooled["train_direction"] == y) & moved).astype(np.float64)
    n_moved = int(moved.sum())
    direction = {
        "windows": n_moved,
        "model": float(model_hit.sum() / n_moved) if n_moved else float("nan"),
        "baseline": float(base_hit.sum() / n_moved) if n_moved else float("nan"),
        "baseline_class": "/".join(
            sorted({CLASS_NAMES[int(c)] for c in np.unique(pooled["train_direction"])})
        ),
    }
    if n_moved:
        diff_reps = bs.ratio_replicates(model_hit, moved, session, weights) - bs.ratio_replicates(
            base_hit, moved, session, weights
        )
        direction |= bs.interval(direction["model"] - direction["baseline"], diff_reps, conf).as_dict()
    else:
        direction |= {
            "estimate": float("nan"),
            "lower": float("nan"),
            "upper": float("nan"),
            "confidence": conf,
        }

    per_ticker = []
    for tid, ticker in enumerate(tickers):
        mask = pooled["ticker_ids"] == tid
        if not mask.any():
            continue
        m = _balanced(y[mask], correct["model"][mask])
        b = _balanced(y[mask], correct[strongest][mask])
        rest = ~mask
        without = _balanced(y[rest], correct["model"][rest]) - _balanced(y[rest], correct[strongest][rest])
        per_ticker.append(
            {
                "ticker": ticker,
                "windows": int(mask.sum()),
                "model": m,
                "baseline": b,
                "difference": m - b,
                "difference_without": without,
            }
        )
    overall = baselines[strongest]["difference"]["estimate"]
    carried_by = [
        r["ticker"]
        for r in per_ticker
        if overall > gate_config.min_effect
        and r["difference_without"] <= max(gate_config.min_effect, overall / 2)
    ]
    return {
        "model": {
            "accuracy": point["model"]["accuracy"],
            "balanced_accuracy": ours,
            "interval": bs.interval(ours, reps["model"], conf).as_dict(),
        },
        "baselines": baselines,
        "strongest_baseline": strongest,
        "folds": folds,
        "direction": {"difference": direction},
        "per_ticker": per_ticker,
        "carried_by": carried_by,
        "sample": {
            "windows": int(len(y)),
            "sessions": int(n_sessions),
            "tickers": int(len(np.unique(pooled["ticker_ids"]))),
            "label_periods": round(n_sessions / horizon, 1),
            "effective_windows": round(bs.effective_windows(correct["model"], session, weights), 1),
            "block_sessions": int(block),
            "bootstrap_samples": gate_config.bootstrap_samples,
            "confidence": conf,
        },
    }


def _balanced(y: np.ndarray, correct: np.ndarray) -> float:
    present = [c for c in range(K) if (y == c).any()]
    return float(np.mean([correct[y == c].mean() for c in present])) if present else float("nan")


def champion_comparison(
    pooled: dict[str, np.ndarray],
    dataset: DatasetInfo,
    gate_config: GateConfig,
    block: int,
    champion_bundle: Path,
    champion_version: int | None,
) -> dict:
    """The champion against this run's model on the pooled out-of-sample windows that are out of
    sample for the champion too: windows whose first input comes after the last day the champion's
    training or early stopping saw (its validation end). Uses the champion's own stats.

    Returns a record with `compared` False and a `reason` when there is nothing fair to compare
    (other features/window/horizon/labels, or too few common sessions); `blocks` then says whether
    that must stop promotion (a champion trained on data at least as new as ours).
    """
    from models.training import bootstrap as bs

    manifest = json.loads((champion_bundle / "manifest.json").read_text())
    record: dict = {"version": champion_version, "compared": False, "blocks": False}
    comparable = (
        list(manifest["features"]) == list(dataset.features)
        and int(manifest["window"]) == dataset.window
        and int(manifest["horizon"]) == dataset.horizon
        and manifest["labels"].get("rule") == dataset.label_rule["rule"]
        and float(manifest["labels"].get("scale", -1)) == dataset.theta
    )
    if not comparable:
        return record | {"reason": "not comparable: trained with other features, window, horizon or labels"}
    arrays = load_arrays(Path(dataset.path))
    seen_until = np.datetime64(pd.Timestamp(manifest["splits"]["validation"][1]), "ns")
    champion_end = pd.Timestamp(manifest["splits"]["test"][1])
    our_end = pd.Timestamp(dataset.splits["test"][1])
    record["blocks"] = bool(champion_end >= our_end)
    first_input = arrays.dates[pooled["rows"] - (dataset.window - 1)]
    mask = first_input > seen_until
    session, n_sessions = bs.session_index(pooled["dates"][mask])
    needed = max(gate_config.min_champion_sessions, 2 * block)
    if n_sessions < needed:
        return record | {
            "reason": f"only {n_sessions} common out-of-sample sessions after its validation end "
            f"{pd.Timestamp(seen_until).date()} (needs {needed})",
            "sessions": int(n_sessions),
        }
    try:
        matrix = apply_to_rows(
            read_stats(champion_bundle / "stats.parquet"), arrays.matrix, arrays.ticker_ids, dataset.tickers
        )
    except ValueError as err:  # per-ticker stats that lack one of this run's tickers
        record["blocks"] = False
        return record | {"reason": f"not comparable: {err}"}
    model = keras.saving.load_model(champion_bundle / "model.keras", safe_mode=True)
    probs = predict_windows(model, matrix, pooled["rows"][mask], dataset.window)
    y = pooled["labels"][mask].astype(np.int64)
    ours_correct = (pooled["model"][mask].argmax(axis=1) == y).astype(np.float64)
    theirs_correct = (probs.argmax(axis=1) == y).astype(np.float64)
    weights = bs.block_weights(n_sessions, block, gate_config.bootstrap_samples, gate_config.bootstrap_seed)
    diff = bs.balanced_accuracy_replicates(
        y, ours_correct, session, weights
    ) - bs.balanced_accuracy_replicates(y, theirs_correct, session, weights)
    ours, theirs = _balanced(y, ours_correct), _balanced(y, theirs_correct)
    return record | {
        "compared": True,
        "blocks": True,
        "windows": int(mask.sum()),
        "sessions": int(n_sessions),
        "from": str(pd.Timestamp(pooled["dates"][mask].min()).date()),
        "ours": ours,
        "balanced_accuracy": theirs,
        "difference": bs.interval(ours - theirs, diff, gate_config.confidence).as_dict(),
    }


def evaluate_walk_forward(
    fold_records: list[dict],
    datasets: list[DatasetInfo],
    config: PipelineConfig,
    out_dir: Path,
    champion_bundle: Path | None = None,
    champion_version: int | None = None,
) -> dict:
    """Pool the folds' out-of-sample predictions, gather the evidence, compare with the champion,
    and apply the walk-forward gate.

    Returns:
        `metrics` and `baselines` (pooled, as the holdout scheme names them), `champion`, `gate`,
        `walk_forward` (folds, intervals, direction skill, per-ticker rows, sample size) and `inputs`
        (what `rejudge` needs to compare again with another champion).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pooled = pool_folds(fold_records)
    np.savez(out_dir / POOLED_FILE, **pooled)
    last = max(datasets, key=lambda d: d.fold)
    evidence = walk_forward_evidence(pooled, fold_records, last.tickers, last.horizon, config.gate)
    fatal = [
        {**d, "fold": r["fold"]}
        for r in fold_records
        for d in r["training"]["diagnoses"]
        if d.get("fatal", True)
    ]
    published = max(fold_records, key=lambda r: r["fold"])
    inputs = {
        "scheme": "walk_forward",
        "pooled": str(out_dir / POOLED_FILE),
        "dataset": last.path,
        # The published (most recent) fold's fitted baselines: the bundle's baselines.json.
        "baselines_file": published.get("baselines_file"),
        "fatal": fatal,
        "evidence": evidence,
        "diagnoses": [{**d, "fold": r["fold"]} for r in fold_records for d in r["training"]["diagnoses"]],
        "fold_runs": [
            {
                "fold": r["fold"],
                "sizes": r["sizes"],
                "validation": r["splits"]["validation"],
                "epochs_run": r["training"]["epochs_run"],
                "best_epoch": r["training"]["best_epoch"],
                "seconds": round(r["training"]["seconds"], 2),
                "leakage_audit": r["audit"],
            }
            for r in sorted(fold_records, key=lambda r: r["fold"])
        ],
    }
    return _judge_walk_forward(inputs, config, champion_bundle, champion_version, pooled, last)


def _judge_walk_forward(
    inputs: dict,
    config: PipelineConfig,
    champion_bundle: Path | None,
    champion_version: int | None,
    pooled: dict[str, np.ndarray],
    dataset: DatasetInfo,
) -> dict:
    evidence = inputs["evidence"]
    champion = None
    if champion_bundle is not None:
        block = evidence["sample"]["block_sessions"]
        champion = champion_comparison(pooled, dataset, config.gate, block, champion_bundle, champion_version)
    verdict = walk_forward_gate(evidence, config.gate, inputs["fatal"], champion)
    model = classification_metrics(
        pooled["labels"].astype(np.int64), pooled["model"].argmax(axis=1), pooled["model"]
    )
    return {
        "scheme": "walk_forward",
        "metrics": {**model, "interval": evidence["model"]["interval"]},
        "baselines": evidence["baselines"],
        "champion": champion,
        "champion_version": champion_version,
        "gate": verdict.as_dict(),
        "walk_forward": evidence,
        "fold_runs": inputs["fold_runs"],
        "diagnoses": inputs["diagnoses"],
        "baselines_file": inputs.get("baselines_file"),
        "inputs": inputs,
    }


def rejudge(
    evaluation: dict, config: PipelineConfig, champion_bundle: Path | None, champion_version: int | None
) -> dict:
    """The same evaluation compared with another champion (the one in place when promoting)."""
    inputs = evaluation["inputs"]
    if inputs["scheme"] == "holdout":
        return evaluate_run(
            Path(inputs["dataset"]),
            Path(inputs["model"]),
            config.gate,
            inputs["fatal"],
            champion_bundle,
            champion_version,
        )
    with np.load(inputs["pooled"]) as z:
        pooled = {k: z[k] for k in z.files}
    return _judge_walk_forward(
        inputs, config, champion_bundle, champion_version, pooled, load_info(Path(inputs["dataset"]))
    )
