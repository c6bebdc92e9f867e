"""The moving-block bootstrap's pieces at their edges: block size, which sessions a resample can
draw, sums per session, metrics of resamples where a class or a denominator is absent, intervals
without finite resamples, and the effective sample size's bounds. Pure numpy: milliseconds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from models.training import bootstrap as bs


def test_the_default_block_covers_twice_the_horizon_or_the_cube_root_of_the_sessions():
    assert bs.default_block(5, 100) == 10  # 2 x horizon beats ceil(100 ** (1/3)) = 5
    assert bs.default_block(1, 1000) == 10  # the cube root beats 2 x horizon
    assert bs.default_block(3, 64) == 6


def test_block_weights_need_two_blocks_and_reach_every_session():
    weights = bs.block_weights(10, 5, samples=400, seed=1)  # exactly two blocks: allowed
    assert weights.shape == (400, 10) and (weights.sum(axis=1) == 10).all()
    # Every start from the first session to the last full block is possible: the first and the last
    # session are both drawn in some resample.
    assert (weights[:, 0] > 0).any() and (weights[:, -1] > 0).any()
    assert (bs.block_weights(10, 5, samples=400, seed=1) == weights).all()  # a seed, the same draws
    with pytest.raises(ValueError, match="9 sessions are fewer than two bootstrap blocks of 5"):
        bs.block_weights(9, 5, samples=10, seed=1)


def test_per_session_sums_keep_sessions_without_windows():
    session = np.array([0, 0, 1])
    assert bs.per_session(np.array([1.0, 2.0, 4.0]), session, 4).tolist() == [3.0, 4.0, 0.0, 0.0]
    two = bs.per_session(np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 1.0]]), session, 3)
    assert two.tolist() == [[3.0, 1.0], [4.0, 1.0], [0.0, 0.0]]


def test_balanced_accuracy_of_a_resample_counts_a_class_seen_once_and_skips_an_absent_one():
    labels = np.array([0, 1, 2, 2])
    correct = np.array([1.0, 0.0, 1.0, 0.0])
    session = np.array([0, 1, 2, 3])
    # Resample 1 draws each session once; resample 2 never draws class 0's session (class absent).
    weights = np.array([[1, 1, 1, 1], [0, 1, 2, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an absent class is expected, not a numpy warning
        got = bs.balanced_accuracy_replicates(labels, correct, session, weights)
    assert got.tolist() == pytest.approx([(1.0 + 0.0 + 0.5) / 3, (0.0 + 2 / 3) / 2])


def test_ratio_of_a_resample_without_denominator_is_nan_and_one_window_is_enough():
    session = np.array([0, 1])
    weights = np.array([[1, 0], [0, 1], [1, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = bs.ratio_replicates(np.array([1.0, 3.0]), np.array([1.0, 0.0]), session, weights)
    assert math.isnan(got[1])  # 3 / 0: no window counted, not infinity
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = bs.ratio_replicates(np.array([0.0, 3.0]), np.array([0.0, 1.0]), session, weights)
    assert math.isnan(empty[0])  # 0 / 0
    assert got[0] == 1.0 and got[2] == 4.0


def test_an_interval_without_finite_resamples_keeps_the_estimate_and_has_no_bounds():
    empty = bs.interval(0.3, np.array([np.nan, np.inf]), 0.95)
    assert empty.estimate == 0.3 and empty.confidence == 0.95
    assert math.isnan(empty.lower) and math.isnan(empty.upper)
    one = bs.interval(0.3, np.array([np.nan, 0.2]), 0.9)
    assert (one.lower, one.upper) == (0.2, 0.2)
    assert bs.Interval(0.123456789, 0.1, 0.2, 0.95).as_dict() == {
        "estimate": 0.123457,
        "lower": 0.1,
        "upper": 0.2,
        "confidence": 0.95,
    }


def test_effective_windows_between_one_and_n():
    # Two sessions of 50 windows, one all right and one all wrong, resampled as [2, 0] and [0, 2]:
    # the hundred windows are worth one.
    correct = np.repeat([1.0, 0.0], 50)
    session = np.repeat([0, 1], 50)
    assert bs.effective_windows(correct, session, np.array([[2, 0], [0, 2]])) == 1.0
    # Every window right: no variance at all, so no evidence of dependence: n.
    assert bs.effective_windows(np.ones(100), session, np.array([[2, 0], [0, 2]])) == 100.0
    # Every session half right: the resamples never vary, the iid variance does: n.
    alternate = np.tile([1.0, 0.0], 50)
    assert bs.effective_windows(alternate, session, np.array([[2, 0], [0, 2], [1, 1]])) == 100.0
