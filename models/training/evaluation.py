"""Test-split metrics of a saved model, its baselines, the champion on the same windows, and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from models.config import GateConfig
from models.dataset.arrays import Arrays, DatasetInfo, load_arrays, load_info, normalized_matrix
from models.dataset.normalization import apply_to_rows, read_stats
from models.dataset.windows import gather
from models.training.baselines import baselines
from models.training.gate import gate
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
    verdict = gate(metrics, base, gate_config, fatal_diagnoses, champion)
    return {"metrics": metrics, "baselines": base, "champion": champion, "gate": verdict.as_dict()}


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
