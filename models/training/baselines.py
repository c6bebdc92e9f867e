"""The simple alternatives a trained model must beat, scored on the same test windows.

`baselines` is the holdout scheme's set (majority, persistence, class prior). `fit_baselines` is the
walk-forward set, fitted on each fold's train windows: those three plus a volatility-regime rule and
a multinomial logistic regression on the flattened normalized window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.config import CLASS_NAMES
from models.dataset.arrays import Arrays
from models.dataset.windows import gather
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


# -- walk-forward: baselines fitted on one fold's train windows, predicting its test windows -------

BASELINES: tuple[str, ...] = ("majority", "persistence", "class_prior", "volatility_regime", "linear")
LINEAR_C = (0.01, 0.1, 1.0)  # inverse L2 strengths tried; the best on validation is kept
REGIME_QUANTILES = np.round(np.arange(0.1, 0.95, 0.1), 2)


@dataclass(frozen=True)
class BaselineFit:
    """A baseline's probabilities for the test windows ([windows, 3]; one-hot for a rule), what was
    fitted in words (thresholds, classes, regularization) for the report, and `params`: everything
    needed to apply it again to new windows without refitting (see `apply_baselines`)."""

    probs: np.ndarray
    fitted: dict
    params: dict


def class_weights(train_labels: np.ndarray, balanced: bool) -> np.ndarray:
    """n / (3 x count_c) per class when `balanced` (what the LSTM trains with), else ones."""
    counts = np.bincount(train_labels.astype(np.int64), minlength=K).astype(float)
    if not balanced:
        return np.ones(K)
    return len(train_labels) / (K * np.maximum(counts, 1))


def _onehot(classes: np.ndarray) -> np.ndarray:
    return np.eye(K, dtype=np.float32)[classes.astype(np.int64)]


def _weighted_score(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    return float((weights[y] * (pred == y)).sum() / weights[y].sum())


def volatility_regime_rule(
    train_vol: np.ndarray, train_labels: np.ndarray, weights: np.ndarray
) -> tuple[list[float], list[int]]:
    """Thresholds on trailing volatility and the class each regime predicts, fitted on train only.

    Tries one cut (2 regimes) and two cuts (3 regimes) at the train deciles; each regime predicts its
    train-majority class under the class weights (the LSTM's); keeps the rule that scores best on the
    train windows (fewer regimes on a tie).

    Returns:
        (cuts ascending, class of each of the len(cuts) + 1 regimes).
    """
    y = train_labels.astype(np.int64)
    levels = np.unique(np.quantile(train_vol, REGIME_QUANTILES))
    candidates = [[c] for c in levels] + [[a, b] for i, a in enumerate(levels) for b in levels[i + 1 :]]
    best: tuple[float, list[float], list[int]] | None = None
    for cuts in candidates:
        regime = np.searchsorted(cuts, train_vol, side="right")
        classes = [
            int(np.argmax(np.bincount(y[regime == r], minlength=K) * weights)) if (regime == r).any() else 0
            for r in range(len(cuts) + 1)
        ]
        score = _weighted_score(y, np.asarray(classes)[regime], weights)
        if best is None or score > best[0] + 1e-12:
            best = (score, [float(c) for c in cuts], classes)
    assert best is not None
    return best[1], best[2]


def linear_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    weights: np.ndarray,
):
    """Multinomial logistic regression on flattened windows, L2 strength chosen on validation
    balanced accuracy (as the LSTM's early stopping uses validation), same class weights."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    best = None
    for c in LINEAR_C:
        # One BLAS thread: these matrices are small, and on a busy machine OpenBLAS threads spin
        # against each other (measured 40x slower with 2 threads under load than with 1).
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(
                C=c, max_iter=1000, class_weight=dict(enumerate(weights.tolist()))
            ).fit(x_train, y_train)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        score = classification_metrics(y_validation, model.predict(x_validation))["balanced_accuracy"]
        if best is None or score > best[0] + 1e-12:
            best = (score, c, model, converged)
    assert best is not None
    return best[2], {"C": best[1], "validation_balanced_accuracy": round(best[0], 6), "converged": best[3]}


def fit_baseline_params(
    arrays: Arrays, matrix: np.ndarray, window: int, balanced_weights: bool
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Fit every baseline on this split's train windows (the linear model's C on validation).

    Returns:
        (params, fitted): `params` per baseline, JSON-able and exact (what `apply_baselines` needs:
        classes, the prior, volatility cuts, the linear model's coefficients); `fitted` per baseline,
        the same in words and rounded, for reports.
    """
    train, validation = arrays.ends["train"], arrays.ends["validation"]
    y_train = arrays.labels[train].astype(np.int64)
    prior = np.bincount(y_train, minlength=K) / max(len(y_train), 1)
    majority = int(prior.argmax())
    weights = class_weights(y_train, balanced_weights)
    test_known = arrays.known_label[arrays.ends["test"]]
    if arrays.volatility is None:
        raise ValueError("the dataset has no trailing volatility: rebuild it to fit the volatility rule")
    cuts, classes = volatility_regime_rule(arrays.volatility[train], y_train, weights)

    def flat(ends: np.ndarray) -> np.ndarray:
        return gather(matrix, ends, window).reshape(len(ends), -1)

    model, linear_fitted = linear_model(
        flat(train), y_train, flat(validation), arrays.labels[validation].astype(np.int64), weights
    )
    params = {
        "majority": {"class": CLASS_NAMES[majority]},
        "persistence": {"fallback": CLASS_NAMES[majority]},
        "class_prior": {"prior": [float(p) for p in prior]},
        "volatility_regime": {
            "cuts": [float(c) for c in cuts],
            "classes": [CLASS_NAMES[c] for c in classes],
        },
        "linear": {
            "C": float(linear_fitted["C"]),
            "classes": [CLASS_NAMES[int(c)] for c in model.classes_],
            "coef": model.coef_.astype(np.float64).tolist(),
            "intercept": model.intercept_.astype(np.float64).tolist(),
        },
    }
    fitted = {
        "majority": {"class": CLASS_NAMES[majority]},
        "persistence": {
            "fallback": CLASS_NAMES[majority],
            "unknown_share": round(float((test_known < 0).mean()), 6) if len(test_known) else 0.0,
        },
        "class_prior": {"prior": dict(zip(CLASS_NAMES, prior.round(6).tolist(), strict=True))},
        "volatility_regime": {
            "cuts": [round(c, 8) for c in cuts],
            "classes": [CLASS_NAMES[c] for c in classes],
        },
        "linear": linear_fitted,
    }
    return params, fitted


def apply_baselines(
    params: dict[str, dict],
    matrix: np.ndarray,
    ends: np.ndarray,
    window: int,
    known_label: np.ndarray,
    volatility: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each baseline's probabilities [len(ends), 3] for the windows ending at `ends`, from `params`
    (`fit_baseline_params`, or a bundle's baselines.json); nothing is refitted.

    Args:
        params: Per baseline, what was fitted on train.
        matrix: The feature matrix normalized with the stats the baselines were fitted with.
        ends: Row of each window's last session.
        window: Window length.
        known_label: Per row, the label of the window whose horizon ended there (-1 when none):
            what persistence repeats.
        volatility: Per row, the trailing volatility known there (the volatility rule's input).
    """
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    n = len(ends)
    out = {}
    if "majority" in params:
        out["majority"] = _onehot(np.full(n, index[params["majority"]["class"]]))
    if "persistence" in params:
        known = known_label[ends].astype(np.int64)
        out["persistence"] = _onehot(np.where(known >= 0, known, index[params["persistence"]["fallback"]]))
    if "class_prior" in params:
        prior = np.asarray(params["class_prior"]["prior"], dtype=np.float32)
        out["class_prior"] = np.tile(prior, (n, 1))
    if "volatility_regime" in params:
        rule = params["volatility_regime"]
        regime = np.searchsorted(np.asarray(rule["cuts"], dtype=np.float64), volatility[ends], side="right")
        out["volatility_regime"] = _onehot(np.asarray([index[c] for c in rule["classes"]])[regime])
    if "linear" in params:
        linear = params["linear"]
        # The same decision as scikit-learn's LogisticRegression.predict: argmax of x @ coef.T + b.
        x = gather(matrix, ends, window).reshape(n, -1).astype(np.float64)
        scores = x @ np.asarray(linear["coef"], dtype=np.float64).T + np.asarray(linear["intercept"])
        classes = np.asarray([index[c] for c in linear["classes"]])
        if scores.shape[1] == 1:  # two classes: one score, positive for the second
            chosen = (scores[:, 0] > 0).astype(np.int64)
        else:
            chosen = scores.argmax(axis=1)
        out["linear"] = _onehot(classes[chosen])
    return out


def fit_baselines(
    arrays: Arrays, matrix: np.ndarray, window: int, balanced_weights: bool
) -> dict[str, BaselineFit]:
    """Every baseline fitted on this split's train windows and applied to its test windows.

    The test predictions come from `apply_baselines` on the fitted `params`, so what a bundle stores
    (baselines.json) reproduces them exactly.

    Args:
        arrays: The split's arrays (labels, window ends, known labels, trailing volatility).
        matrix: The feature matrix normalized with the split's train-only stats.
        window: Window length.
        balanced_weights: Whether the LSTM trains with balanced class weights (then so do the
            volatility rule and the linear model).
    """
    params, fitted = fit_baseline_params(arrays, matrix, window, balanced_weights)
    probs = apply_baselines(
        params, matrix, arrays.ends["test"], window, arrays.known_label, arrays.volatility
    )
    return {name: BaselineFit(probs[name], fitted[name], params[name]) for name in BASELINES}


def expected_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy and balanced accuracy of a prediction drawn from `probs` (their expected values);
    for one-hot `probs` the plain metrics of the argmax."""
    y = labels.astype(np.int64)
    if np.isin(probs, (0.0, 1.0)).all():
        return classification_metrics(y, probs.argmax(axis=1))
    correct = probs[np.arange(len(y)), y]
    present = [c for c in range(K) if (y == c).any()]
    return {
        "windows": int(len(y)),
        "accuracy": float(correct.mean()) if len(y) else 0.0,
        "balanced_accuracy": float(np.mean([correct[y == c].mean() for c in present])) if present else 0.0,
    }
