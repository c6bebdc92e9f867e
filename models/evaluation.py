"""Test-split metrics, baselines, and the promotion gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from models.config import CLASS_NAMES, GateConfig
from models.dataset import Arrays
from models.windows import gather

K = len(CLASS_NAMES)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(y_true.astype(np.int64) * K + y_pred.astype(np.int64), minlength=K * K).reshape(K, K)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None = None) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class precision/recall, confusion, log loss."""
    cm = confusion(y_true, y_pred)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    recall = np.divide(tp, support, out=np.zeros(K), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(K), where=predicted > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(K), where=(precision + recall) > 0
    )
    present = support > 0
    out = {
        "windows": int(len(y_true)),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": dict(zip(CLASS_NAMES, precision.round(6).tolist(), strict=True)),
        "recall": dict(zip(CLASS_NAMES, recall.round(6).tolist(), strict=True)),
        "confusion": cm.tolist(),
    }
    if probs is not None:
        p = np.clip(probs[np.arange(len(y_true)), y_true.astype(np.int64)], 1e-7, 1.0)
        out["log_loss"] = float(-np.log(p).mean())
    return out


def predict_windows(
    model: keras.Model, matrix: np.ndarray, ends: np.ndarray, window: int, batch: int = 2048
) -> np.ndarray:
    """Class probabilities for the windows ending at `ends`, batch by batch."""
    fixed = model.inputs[0].shape[0]  # a stateful model only takes batches of its training size
    batch = fixed or batch
    chunks = []
    for i in range(0, len(ends), batch):
        x = gather(matrix, ends[i : i + batch], window)
        if fixed and len(x) < fixed:
            x = np.concatenate([x, np.zeros((fixed - len(x), *x.shape[1:]), dtype=x.dtype)])
        chunks.append(model.predict(x, verbose=0, batch_size=batch)[: min(batch, len(ends) - i)])
    out = np.concatenate(chunks) if chunks else np.zeros((0, K), dtype=np.float32)
    if out.shape[-1] == K and not np.allclose(out.sum(axis=-1), 1.0, atol=1e-3):
        out = keras.ops.convert_to_numpy(keras.activations.softmax(out))  # a logits head
    return out


def baselines(arrays: Arrays) -> dict[str, dict]:
    """Majority class (of train), persistence (last known label), and class-prior random on test."""
    y_train = arrays.labels[arrays.ends["train"]]
    ends = arrays.ends["test"]
    y_test = arrays.labels[ends]
    prior = np.bincount(y_train.astype(np.int64), minlength=K) / max(len(y_train), 1)
    majority = int(prior.argmax())
    known = arrays.known_label[ends]
    persistence = np.where(known >= 0, known, majority)
    test_share = np.bincount(y_test.astype(np.int64), minlength=K) / max(len(y_test), 1)
    return {
        "majority": {
            "class": CLASS_NAMES[majority],
            **classification_metrics(y_test, np.full(len(y_test), majority)),
        },
        "persistence": classification_metrics(y_test, persistence),
        # Expected value of drawing each prediction from the train class prior.
        "class_prior": {
            "accuracy": float((prior * test_share).sum()),
            "balanced_accuracy": float(prior[test_share > 0].mean()) if (test_share > 0).any() else 0.0,
        },
    }


def evaluate_model(model_path: Path, matrix: np.ndarray, arrays: Arrays, window: int) -> dict:
    """Metrics of a saved model on the test windows (matrix already normalized with its stats)."""
    model = keras.saving.load_model(model_path, safe_mode=True)
    ends = arrays.ends["test"]
    probs = predict_windows(model, matrix, ends, window)
    if probs.shape[-1] != K:
        y_pred = np.zeros(len(ends), dtype=np.int64)
        return classification_metrics(arrays.labels[ends], y_pred)
    return classification_metrics(arrays.labels[ends], probs.argmax(axis=-1), probs)


@dataclass
class Verdict:
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promoted" if self.promoted else "rejected"

    def as_dict(self) -> dict:
        return {"verdict": self.label, **asdict(self)}


def gate(
    metrics: dict,
    baseline_metrics: dict[str, dict],
    gate_config: GateConfig,
    fatal_diagnoses: list[dict],
    champion: dict | None = None,
) -> Verdict:
    """Promote only a model with no fatal diagnosis that beats every baseline's balanced accuracy by
    the margin, is at least as accurate as always predicting the majority class, and does not lose to
    the current champion beyond the tolerance."""
    reasons: list[str] = []
    comparisons: list[dict] = []
    for d in fatal_diagnoses:
        reasons.append(f"guard '{d['code']}': {d['message']}")
    ours = metrics["balanced_accuracy"]
    for name, base in baseline_metrics.items():
        needed = base["balanced_accuracy"] + gate_config.margin
        ok = ours >= needed
        comparisons.append(
            {
                "against": name,
                "theirs": base["balanced_accuracy"],
                "needed": needed,
                "ours": ours,
                "passed": ok,
            }
        )
        if not ok:
            reasons.append(
                f"balanced accuracy {ours:.4f} does not beat the {name} baseline "
                f"{base['balanced_accuracy']:.4f} by the margin {gate_config.margin} (needs {needed:.4f})"
            )
    majority = baseline_metrics.get("majority")
    if majority is not None and metrics["accuracy"] < majority["accuracy"]:
        reasons.append(
            f"accuracy {metrics['accuracy']:.4f} is below always predicting the majority class "
            f"({majority['accuracy']:.4f})"
        )
    if champion is not None:
        needed = champion["balanced_accuracy"] - gate_config.champion_tolerance
        ok = ours >= needed
        comparisons.append(
            {
                "against": f"champion v{champion['version']}",
                "theirs": champion["balanced_accuracy"],
                "needed": needed,
                "ours": ours,
                "passed": ok,
            }
        )
        if not ok:
            reasons.append(
                f"balanced accuracy {ours:.4f} loses to champion v{champion['version']} "
                f"({champion['balanced_accuracy']:.4f}) by more than {gate_config.champion_tolerance}"
            )
    return Verdict(promoted=not reasons, reasons=reasons, comparisons=comparisons)


def evaluate_run(
    dataset_path: Path,
    model_path: Path,
    gate_config: GateConfig,
    fatal_diagnoses: list[dict],
    champion_bundle: Path | None = None,
    champion_version: int | None = None,
) -> dict:
    """Metrics on the test split, the baselines, the champion's metrics (when compatible), the gate."""
    from models.dataset import load_arrays, load_info, normalized_matrix

    info = load_info(dataset_path)
    arrays = load_arrays(dataset_path)
    matrix = normalized_matrix(info, arrays)
    metrics = evaluate_model(model_path, matrix, arrays, info.window)
    base = baselines(arrays)
    champion = None
    if champion_bundle is not None:
        champion = champion_metrics(champion_bundle, champion_version, info, arrays)
    verdict = gate(metrics, base, gate_config, fatal_diagnoses, champion)
    return {"metrics": metrics, "baselines": base, "champion": champion, "gate": verdict.as_dict()}


def champion_metrics(bundle: Path, version: int | None, info, arrays: Arrays) -> dict | None:
    """The champion's metrics on this run's test windows, with the champion's own stats.

    Returns None when the champion is not comparable (other features, window, horizon or label rule).
    """
    import json

    from models.normalization import apply_to_rows, read_stats

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
