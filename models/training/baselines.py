"""The simple alternatives a trained model must beat, scored on the same test windows."""

from __future__ import annotations

import numpy as np

from models.config import CLASS_NAMES
from models.dataset.arrays import Arrays
from models.training.metrics import K, classification_metrics


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
