"""One walk-forward fold: guarded training on its train split, then out-of-sample predictions of the
model and of every baseline on its test period, written to `predictions.npz`.

A fold is self-contained (its dataset folder, its own stats, its own output folder) and returns a
small JSON-able record of paths and metrics, so folds can run in any order, in any process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from models.config import CLASS_NAMES, PipelineConfig
from models.dataset.arrays import DatasetInfo, load_arrays, normalized_matrix
from models.dataset.labels import DOWN, UP
from models.training import trainer
from models.training.baselines import expected_metrics, fit_baselines
from models.training.evaluation import predict_windows
from models.training.metrics import K, classification_metrics

PREDICTIONS_FILE = "predictions.npz"
BASELINES_FILE = "baselines.json"  # the fitted baselines, exact: published with the fold's model


def run_fold(
    dataset: DatasetInfo,
    config: PipelineConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    labels_override: np.ndarray | None = None,
) -> dict:
    """Train the fold's model (leakage audit, preflight, live guards) and predict its test period.

    Args:
        labels_override: Replaces the fold's labels in training (how tests inject broken labels).

    Raises:
        GuardFailure: the fold leaks or fails the preflight (nothing is trained).

    Returns:
        The fold record: number, splits, sizes, the training record, the predictions file, and the
        test metrics of the model and of each baseline.
    """
    out_dir = Path(out_dir)
    result = trainer.train(
        dataset,
        config,
        out_dir,
        log=lambda m: log(f"fold {dataset.fold}: {m}"),
        labels_override=labels_override,
    )
    arrays = load_arrays(Path(dataset.path))
    matrix = normalized_matrix(dataset, arrays)
    test = arrays.ends["test"]
    labels = arrays.labels[test].astype(np.int64)
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    probs = predict_windows(model, matrix, test, dataset.window)
    if probs.shape[-1] != K:  # a head the preflight let through as a flag only: call it class 0
        probs = np.eye(K, dtype=np.float32)[np.zeros(len(test), dtype=np.int64)]
    fits = fit_baselines(arrays, matrix, dataset.window, config.training.class_weights)
    train_labels = arrays.labels[arrays.ends["train"]]
    direction = UP if (train_labels == UP).sum() >= (train_labels == DOWN).sum() else DOWN
    baselines_path = write_baselines(
        out_dir / BASELINES_FILE,
        {name: fit.params for name, fit in fits.items()},
        dataset,
        config,
        CLASS_NAMES[direction],
    )
    path = out_dir / PREDICTIONS_FILE
    np.savez(
        path,
        rows=test,
        dates=arrays.dates[test],
        ticker_ids=arrays.ticker_ids[test],
        labels=labels,
        model=probs.astype(np.float32),
        train_direction=np.array(direction),
        **{f"baseline_{name}": fit.probs for name, fit in fits.items()},
    )
    return {
        "fold": dataset.fold,
        "dataset": dataset.path,
        "splits": dataset.splits,
        "sizes": dataset.sizes,
        "audit": dataset.audit,
        "training": result.as_dict(),
        "predictions": str(path),
        "baselines_file": str(baselines_path),
        "train_direction": CLASS_NAMES[direction],
        "metrics": classification_metrics(labels, probs.argmax(axis=1), probs),
        "baselines": {
            name: {**expected_metrics(labels, fit.probs), "fitted": fit.fitted} for name, fit in fits.items()
        },
    }


def write_baselines(
    path: Path, params: dict[str, dict], dataset: DatasetInfo, config: PipelineConfig, direction: str
) -> Path:
    """baselines.json: every baseline exactly as fitted on this fold's train windows, so the live
    scorecard scores the same baselines the gate used on new sessions without refitting them.

    The linear model's input is the window normalized with this fold's stats.parquet, flattened
    session by session (oldest first), features in the manifest's order.
    """
    payload = {
        "schema_version": 1,
        "fold": dataset.fold,
        "splits": dataset.splits,
        "classes": list(CLASS_NAMES),
        "window": dataset.window,
        "horizon": dataset.horizon,
        "features": list(dataset.features),
        "volatility_window": config.labels.volatility_window,
        "direction_baseline": direction,
        "baselines": params,
        "inputs": {
            "persistence": "the label of the window that ended `horizon` sessions before (its horizon "
            "ends on the window's last session), within one gap-free run; else `fallback`",
            "volatility_regime": "trailing std (ddof=1) of the last `volatility_window` daily log "
            "returns of adj_close; regime = number of cuts below or equal to it",
            "linear": "argmax of x @ coef.T + intercept, x = the normalized window flattened session "
            "by session (oldest first), features in manifest order",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path
