"""Classification metrics of predicted against true classes (down, range_bound, up)."""

from __future__ import annotations

import numpy as np

from models.config import CLASS_NAMES

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
