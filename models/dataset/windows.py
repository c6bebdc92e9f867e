"""Chronological splits with purge gaps, and windows kept as an index into one feature matrix.

A window is identified by the row of its last day, `end`; its inputs are rows end-window+1 .. end of
the same ticker and its label looks `horizon` sessions past `end`. Windows are never materialized as
one [N, window, features] array: batches are gathered from the matrix on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitRanges:
    """Inclusive date ranges of each split; sessions between them belong to no split (purge)."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    validation: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]

    def as_dict(self) -> dict[str, list[str]]:
        return {s: [d.date().isoformat() for d in getattr(self, s)] for s in SPLITS}

    @classmethod
    def from_dict(cls, raw: dict[str, list[str]]) -> SplitRanges:
        return cls(**{s: (pd.Timestamp(raw[s][0]), pd.Timestamp(raw[s][1])) for s in SPLITS})


def chronological_split(
    sessions: pd.DatetimeIndex,
    train_fraction: float,
    validation_fraction: float,
    gap_sessions: int,
) -> SplitRanges:
    """Split sorted sessions into train / gap / validation / gap / test by fractions of the rest.

    Raises:
        ValueError: when the sessions are too few for three non-empty splits and two gaps.
    """
    usable = len(sessions) - 2 * gap_sessions
    n_train = int(usable * train_fraction)
    n_val = int(usable * validation_fraction)
    n_test = usable - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"{len(sessions)} sessions are too few for train/validation/test with gaps of "
            f"{gap_sessions} sessions: load a longer history or shrink window/horizon/purge"
        )
    val_start = n_train + gap_sessions
    test_start = val_start + n_val + gap_sessions
    return SplitRanges(
        train=(sessions[0], sessions[n_train - 1]),
        validation=(sessions[val_start], sessions[val_start + n_val - 1]),
        test=(sessions[test_start], sessions[-1]),
    )


def walk_forward_splits(
    sessions: pd.DatetimeIndex,
    folds: int,
    test_fraction: float,
    validation_fraction: float,
    gap_sessions: int,
    train_window: str = "expanding",
) -> list[SplitRanges]:
    """Split sorted sessions into `folds` walk-forward folds, oldest first.

    The last `test_fraction` of the sessions is cut into `folds` consecutive test periods of
    near-equal length. Fold k tests on period k; its validation period (`validation_fraction` of all
    sessions) ends `gap_sessions` before that, and its train period ends `gap_sessions` before the
    validation starts. Train periods start at the first session (expanding) or keep the first fold's
    length (sliding). Earlier folds' test periods are later folds' training data: every fold is
    judged only on sessions after everything it trained or stopped early on.

    Raises:
        ValueError: when the sessions are too few for the first fold's train period.
    """
    n = len(sessions)
    n_test = int(n * test_fraction)
    n_val = int(n * validation_fraction)
    if n_test < folds or n_val < 1:
        raise ValueError(
            f"{n} sessions are too few for {folds} walk-forward test periods over {test_fraction:.0%} "
            "of them: load a longer history or use fewer folds"
        )
    bounds = np.linspace(n - n_test, n, folds + 1).round().astype(int)
    first_train_end = bounds[0] - 2 * gap_sessions - n_val  # exclusive
    if first_train_end < 1:
        raise ValueError(
            f"{n} sessions leave no train period for the first walk-forward fold (test {n_test}, "
            f"validation {n_val}, gaps 2 x {gap_sessions} sessions): load a longer history, or lower "
            "evaluation.test_fraction or split.validation_fraction"
        )
    out = []
    for k in range(folds):
        test_start, test_end = bounds[k], bounds[k + 1]  # [start, end)
        val_start = test_start - gap_sessions - n_val
        train_end = val_start - gap_sessions  # exclusive
        train_start = 0 if train_window == "expanding" else max(0, train_end - first_train_end)
        out.append(
            SplitRanges(
                train=(sessions[train_start], sessions[train_end - 1]),
                validation=(sessions[val_start], sessions[val_start + n_val - 1]),
                test=(sessions[test_start], sessions[test_end - 1]),
            )
        )
    return out


def window_ends(
    ticker_ids: np.ndarray,
    dates: np.ndarray,
    label_dates: np.ndarray,
    labels: np.ndarray,
    window: int,
    ranges: SplitRanges,
) -> dict[str, np.ndarray]:
    """Row indices of the last day of every complete, labelled window, per split.

    A window belongs to a split only if its first input day and its label's day both lie inside
    that split's range, so no window's inputs or horizon cross a boundary. Rows are grouped by
    ticker and sorted by date within each ticker.
    """
    n = len(ticker_ids)
    idx = np.arange(n)
    start = idx - (window - 1)
    valid = start >= 0
    valid[valid] &= ticker_ids[start[valid]] == ticker_ids[idx[valid]]
    valid &= labels >= 0
    first_input = np.where(valid, dates[np.clip(start, 0, None)], np.datetime64("NaT"))
    out = {}
    for split in SPLITS:
        lo, hi = (np.datetime64(d, "ns") for d in getattr(ranges, split))
        inside = valid & (first_input >= lo) & (label_dates <= hi) & (dates <= hi)
        out[split] = idx[inside].astype(np.int64)
    return out


def gather(matrix: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Windows [len(ends), window, features] for the given end rows (a batch, not the dataset)."""
    offsets = np.arange(-window + 1, 1)
    return matrix[ends[:, None] + offsets]
