"""Training guards: a preflight before any epoch, and a live callback during fit.

They exist for one failure above all: a 3-class LSTM whose loss sits at 1.1921e-07 while accuracy is
frozen below chance. 1.1921e-07 is -log(float32(1 - 1e-7)): Keras clips probabilities to
[1e-7, 1 - 1e-7], and a model whose every row sits on that clip has zero gradient. Sigmoid heads with
categorical cross-entropy, an output of width 1, labels that are not class ids, NaN inputs (a zero
std in the normalization), exploding updates: each leads there or nearby. Each check below turns
one of those into a Diagnosis that says what happened and what to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

from models.config import CLASS_NAMES
from models.diagnosis import Diagnosis
from models.training.network import forward

N_CLASSES = len(CLASS_NAMES)
EPSILON = 1e-7  # keras.config.epsilon(): the probability clip of the cross-entropy
CLIP_FLOOR = float(-np.log(np.float32(1.0) - np.float32(EPSILON)))  # 1.1920929e-07
# A fresh 3-class model starts near ln(3) = 1.0986; ten times that means the updates are exploding.
EXPLODING_LOSS = 10 * float(np.log(N_CLASSES))


def one_hot_rows(labels: np.ndarray) -> np.ndarray:
    """For a [n, 3] label array, which rows are exactly one-hot (one 1, the rest 0)."""
    labels = np.asarray(labels)
    return np.isin(labels, (0, 1)).all(axis=1) & (labels.sum(axis=1) == 1)


def class_ids(labels: np.ndarray) -> np.ndarray:
    """Labels as int8 class ids 0..2: one-hot rows become their column, any other row -1
    (unlabelled); 1-D labels are returned as they are. Training uses ids (sparse cross-entropy)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        return labels
    if labels.shape[1] != N_CLASSES:
        raise ValueError(f"one-hot labels need {N_CLASSES} columns, got shape {labels.shape}")
    return np.where(one_hot_rows(labels), labels.argmax(axis=1), -1).astype(np.int8)


def check_labels(labels: np.ndarray, split: str = "train") -> list[Diagnosis]:
    """Labels must be integer class ids 0..2 (or exactly one-hot rows over 3 classes), every class
    present."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        values_ok = np.isin(labels, (0, 1)).all()
        rows_ok = values_ok and (labels.shape[1] == N_CLASSES) and (labels.sum(axis=1) == 1).all()
        if not rows_ok:
            bad_rows = int((~np.isin(labels, (0, 1)).all(axis=1) | (labels.sum(axis=1) != 1)).sum())
            return [
                Diagnosis(
                    "labels-not-one-hot",
                    f"{bad_rows} of {len(labels)} {split} label rows are not one-hot over "
                    f"{N_CLASSES} classes (shape {labels.shape}); all-zero or multi-hot rows put "
                    "the loss on the probability clip, where nothing is learned.",
                    "Encode each window's class as exactly one 1 among 3 columns, or pass integer "
                    "class ids 0..2 (down, range_bound, up).",
                    {"shape": list(labels.shape), "bad_rows": bad_rows},
                )
            ]
        return check_labels(labels.argmax(axis=1), split)  # the same class checks as ids get
    if labels.ndim != 1:
        return [
            Diagnosis(
                "labels-not-class-ids",
                f"{split} labels have shape {labels.shape}; expected one class id per window.",
                "Pass a 1-D array of class ids 0..2.",
            )
        ]
    finite = np.isfinite(labels.astype(np.float64))
    integral = finite & (np.mod(labels.astype(np.float64), 1) == 0)
    in_range = integral & (labels >= 0) & (labels < N_CLASSES)
    if not in_range.all():
        sample = np.unique(labels[~in_range])[:5].tolist()
        hint = (
            " They look like normalized values (were labels scaled together with the features?)."
            if not integral.all()
            else " Values like -1/0/1 are a direction sign, not a class id."
            if (labels.min() < 0)
            else ""
        )
        return [
            Diagnosis(
                "labels-not-class-ids",
                f"{int((~in_range).sum())} {split} labels are not class ids 0..2, e.g. {sample}.{hint}",
                "Keep labels out of the feature normalization and map classes to 0=down, "
                "1=range_bound, 2=up.",
                {"examples": sample},
            )
        ]
    present = np.bincount(labels.astype(np.int64), minlength=N_CLASSES)
    missing = [CLASS_NAMES[k] for k in range(N_CLASSES) if present[k] == 0]
    if missing:
        return [
            Diagnosis(
                "class-missing",
                f"The {split} labels contain no '{', '.join(missing)}' windows "
                f"(counts {dict(zip(CLASS_NAMES, present.tolist(), strict=True))}); a model cannot "
                "learn a class it never sees and will collapse onto the others.",
                "Check the labelling threshold and horizon; every class must occur in train.",
                {"counts": present.tolist()},
            )
        ]
    return []


def check_model(model: keras.Model, from_logits: bool) -> list[Diagnosis]:
    """Output width must equal the number of classes; the head must give probabilities or logits."""
    out: list[Diagnosis] = []
    head = model.layers[-1]
    width = int(model.output_shape[-1])
    if width != N_CLASSES:
        out.append(
            Diagnosis(
                "output-width-mismatch",
                f"The model outputs {width} value(s) per window but there are {N_CLASSES} classes "
                f"({', '.join(CLASS_NAMES)}).",
                f"End the model with Dense({N_CLASSES}, activation='softmax').",
                {"output_width": width},
            )
        )
    activation = getattr(getattr(head, "activation", None), "__name__", "unknown")
    if activation == "sigmoid" or (activation == "linear" and not from_logits):
        out.append(
            Diagnosis(
                "output-activation-mismatch",
                f"The output layer uses '{activation}' with categorical cross-entropy. Its outputs "
                "are not probabilities over exclusive classes: they do not sum to 1, and a clipped "
                "loss can freeze at 1.1921e-07 while nothing is learned.",
                "Use activation='softmax', or a linear head with from_logits=True in the loss.",
                {"activation": activation, "from_logits": from_logits},
            )
        )
    return out


def check_inputs(matrix: np.ndarray, features: tuple[str, ...], dates: np.ndarray) -> list[Diagnosis]:
    """Every normalized input must be finite; names the first feature and date that is not."""
    finite = np.isfinite(matrix)
    if finite.all():
        return []
    row, col = np.argwhere(~finite)[0]
    counts = {
        features[j]: int((~finite[:, j]).sum()) for j in range(matrix.shape[1]) if not finite[:, j].all()
    }
    return [
        Diagnosis(
            "non-finite-input",
            f"{int((~finite).sum())} input values are NaN or infinite, first '{features[col]}' on "
            f"{str(dates[row])[:10]}. One NaN makes the loss NaN (or, on a GPU, pins it to the "
            "clip floor 1.1921e-07) and the accuracy equal to class 0's share.",
            "Fix the price data or the feature; a zero std in the normalization is a common cause.",
            {"non_finite_per_feature": counts},
        )
    ]


def check_constant_features(
    raw: np.ndarray, is_train: np.ndarray, features: tuple[str, ...], replaced: tuple[str, ...]
) -> list[Diagnosis]:
    """A feature constant over train (std set to 1) is harmless if it stays constant, and fatal if
    it takes other values later: the model never saw them (e.g. a one-hot category absent in train)."""
    out = []
    for name in replaced:
        j = features.index(name)
        train_values = np.unique(raw[is_train, j])
        later = raw[~is_train, j]
        unseen = later[~np.isin(later, train_values)]
        constant_everywhere = len(unseen) == 0
        out.append(
            Diagnosis(
                "constant-feature",
                f"Feature '{name}' is constant over the train split (std 0, replaced by 1 so no NaN "
                "enters the inputs)"
                + (
                    "; it is constant everywhere, so the model simply learns nothing from it."
                    if constant_everywhere
                    else f", but takes {len(np.unique(unseen))} other value(s) in {len(unseen)} later "
                    "rows: the model never saw them in training, so its test behaviour is undefined."
                ),
                "Drop the feature, or move the split so the train period covers its values.",
                {"feature": name, "train_values": train_values[:5].tolist(), "unseen_rows": int(len(unseen))},
                fatal=not constant_everywhere,
            )
        )
    return out


def check_stateful(stateful: bool) -> list[Diagnosis]:
    """Stateful LSTM layers are refused: nothing here gives their carried state a meaning.

    Each window is a complete input sequence, and consecutive batches hold overlapping windows
    in ticker-then-date order, so sample i of one batch is not the continuation of sample i of
    the batch before (it starts `batch_size` sessions later, or in another ticker). The state a
    stateful layer carries over is then noise in training, and a served stateful model answers
    the same window differently depending on what it predicted before (Keras never resets that
    state by itself) and on how much history it was given. Resetting it on every batch would make
    it a stateless model with a fixed batch size.
    """
    if not stateful:
        return []
    return [
        Diagnosis(
            "stateful-unsupported",
            "model.stateful is set, but stateful LSTM layers carry each batch's final state into "
            "the next batch, and here every window is a whole sequence of its own while "
            "consecutive batches hold overlapping windows of other days or tickers: the carried "
            "state is noise, and a served stateful model answers the same window differently "
            "from one call to the next.",
            "Set model.stateful to false (the default): each window already holds every session "
            "the model sees; lengthen window.length for a longer memory.",
            {"stateful": True},
        )
    ]


class GuardCallback(keras.callbacks.Callback):
    """Stops training on non-finite or exploding loss, non-finite weights, a loss at the clip floor,
    or class collapse.

    Also flags updates that stay ~0 for several epochs (nothing is being learned).
    """

    def __init__(
        self,
        validation_x: np.ndarray,
        collapse_epochs: int = 3,
        collapse_share: float = 0.98,
        stall_epochs: int = 3,
        log: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.validation_x = validation_x
        self.collapse_epochs = collapse_epochs
        self.collapse_share = collapse_share
        self.stall_epochs = stall_epochs
        self.log = log or (lambda _msg: None)
        self.diagnoses: list[Diagnosis] = []
        self._collapsed: list[tuple[int, str, float]] = []
        self._stalled = 0
        self._previous: list[np.ndarray] | None = None

    def _stop(self, diagnosis: Diagnosis) -> None:
        self.diagnoses.append(diagnosis)
        self.log(f"guard stopped training: {diagnosis}")
        self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or self.model.stop_training:
            return
        if math.isfinite(float(loss)) and float(loss) > 10 * EXPLODING_LOSS:
            self._stop(self._exploding(f"batch {batch + 1}", float(loss)))
        elif not math.isfinite(float(loss)):
            self._stop(
                Diagnosis(
                    "non-finite",
                    f"The training loss became {float(loss)} at batch {batch}: the weights or inputs "
                    "are no longer numbers.",
                    "Lower the learning rate, check inputs for NaN/inf, or add gradient clipping.",
                    {"batch": batch, "loss": str(loss)},
                )
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if any(d.fatal for d in self.diagnoses):  # already stopped mid-epoch
            return
        weights = self.model.get_weights()
        if not all(np.isfinite(w).all() for w in weights):
            self._stop(
                Diagnosis(
                    "non-finite",
                    f"Model weights became NaN or infinite in epoch {epoch + 1}.",
                    "Lower the learning rate or add gradient clipping; check inputs for NaN/inf.",
                    {"epoch": epoch + 1},
                )
            )
            return
        loss, accuracy = float(logs.get("loss", np.nan)), float(logs.get("accuracy", np.nan))
        if loss > EXPLODING_LOSS:
            self._stop(self._exploding(f"epoch {epoch + 1}", loss))
            return
        if loss <= CLIP_FLOOR * 1.01 and accuracy < 0.99:
            self._stop(
                Diagnosis(
                    "loss-at-clip-floor",
                    f"In epoch {epoch + 1} the loss is {loss:.5g}, the probability-clip floor "
                    f"-log(1 - 1e-7) = {CLIP_FLOOR:.5g}, yet accuracy is only {accuracy:.4f}: every "
                    "output sits on the clip, where the gradient is zero, so nothing is learned.",
                    "Use a softmax head with integer or one-hot labels; check labels are not "
                    "all-zero rows and inputs are finite.",
                    {"epoch": epoch + 1, "loss": loss, "accuracy": accuracy},
                )
            )
            return
        self._check_collapse(epoch)
        self._check_stall(epoch, weights)
        self._previous = weights

    def _exploding(self, where: str, loss: float) -> Diagnosis:
        return Diagnosis(
            "exploding-loss",
            f"The training loss reached {loss:.4g} at {where}, more than ten times the "
            f"{EXPLODING_LOSS / 10:.4f} of an untrained 3-class model: the updates are exploding.",
            "Lower the learning rate (typical: 1e-4 to 1e-2) or add gradient clipping.",
            {"where": where, "loss": loss},
        )

    def _check_collapse(self, epoch: int) -> None:
        probs = forward(self.model, self.validation_x)
        predicted = np.argmax(probs, axis=-1)
        counts = np.bincount(predicted, minlength=N_CLASSES)
        top = int(counts.argmax())
        share = counts[top] / max(len(predicted), 1)
        if share >= self.collapse_share:
            self._collapsed.append((epoch + 1, CLASS_NAMES[top], float(share)))
        else:
            self._collapsed.clear()
        if len(self._collapsed) >= self.collapse_epochs:
            first, cls, _ = self._collapsed[0]
            self._stop(
                Diagnosis(
                    "class-collapse",
                    f"For {len(self._collapsed)} epochs (from epoch {first}) the model predicted "
                    f"'{cls}' for {share:.1%} of validation windows: it has collapsed onto one class "
                    "instead of learning the direction.",
                    "Check the learning rate, class weights and label balance; a model that only "
                    "predicts the majority class is no better than the baseline.",
                    {"epochs": [e for e, _, _ in self._collapsed], "class": cls, "share": share},
                )
            )

    def _check_stall(self, epoch: int, weights: list[np.ndarray]) -> None:
        if self._previous is None:
            return
        change = math.sqrt(
            sum(float(((w - p) ** 2).sum()) for w, p in zip(weights, self._previous, strict=True))
        )
        scale = math.sqrt(sum(float((w**2).sum()) for w in weights)) or 1.0
        self._stalled = self._stalled + 1 if change / scale < 1e-7 else 0
        if self._stalled == self.stall_epochs:
            self.diagnoses.append(
                Diagnosis(
                    "vanishing-updates",
                    f"The weights have not changed for {self.stall_epochs} epochs (to epoch "
                    f"{epoch + 1}): the gradient is ~0.",
                    "Check the output activation and labels (a clipped loss has zero gradient) "
                    "and the learning rate.",
                    {"epoch": epoch + 1, "relative_change": change / scale},
                    fatal=False,  # a flag: the gate then judges what the model did learn
                )
            )
            self.log(f"guard flagged: {self.diagnoses[-1]}")
