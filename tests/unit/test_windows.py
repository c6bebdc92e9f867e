import numpy as np
import pandas as pd
import pytest

from models.dataset.windows import SplitRanges, chronological_split, gather, window_ends


def naive_ends(ticker_ids, dates, label_dates, labels, window, ranges):
    out = {s: [] for s in ("train", "validation", "test")}
    for end in range(len(ticker_ids)):
        start = end - window + 1
        if start < 0 or labels[end] < 0 or len(set(ticker_ids[start : end + 1])) != 1:
            continue
        for split in out:
            lo, hi = getattr(ranges, split)
            if dates[start] >= lo and label_dates[end] <= hi:
                out[split].append(end)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_window_ends_match_a_naive_loop(seed):
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=120)
    ids, dates, label_dates, labels = [], [], [], []
    for tid in range(3):  # tickers of different lengths, with gaps
        keep = np.sort(rng.choice(len(days), size=rng.integers(30, 110), replace=False))
        d = days[keep]
        h = int(rng.integers(1, 4))
        ld = np.full(len(d), np.datetime64("NaT"), dtype="datetime64[ns]")
        ld[: len(d) - h] = d[h:]
        lab = rng.integers(0, 3, len(d)).astype(np.int8)
        lab[len(d) - h :] = -1
        ids += [tid] * len(d)
        dates.append(d.values)
        label_dates.append(ld)
        labels.append(lab)
    ids = np.array(ids)
    dates, label_dates, labels = (np.concatenate(x) for x in (dates, label_dates, labels))
    ranges = chronological_split(days, 0.6, 0.2, gap_sessions=5)
    window = int(rng.integers(1, 8))
    got = window_ends(ids, dates, label_dates, labels, window, ranges)
    want = naive_ends(ids, dates, label_dates, labels, window, ranges)
    for split in want:
        assert got[split].tolist() == want[split]


def test_gather_equals_slices():
    matrix = np.arange(40, dtype=float).reshape(20, 2)
    ends = np.array([4, 9, 19])
    batch = gather(matrix, ends, 3)
    for i, end in enumerate(ends):
        np.testing.assert_array_equal(batch[i], matrix[end - 2 : end + 1])


def test_split_leaves_gaps_and_orders_ranges():
    sessions = pd.bdate_range("2020-01-01", periods=200)
    ranges = chronological_split(sessions, 0.7, 0.15, gap_sessions=10)
    assert ranges.train[1] < ranges.validation[0] < ranges.validation[1] < ranges.test[0]
    between = ((sessions > ranges.train[1]) & (sessions < ranges.validation[0])).sum()
    assert between == 10
    assert SplitRanges.from_dict(ranges.as_dict()) == ranges


def test_split_refuses_too_few_sessions():
    with pytest.raises(ValueError, match="too few"):
        chronological_split(pd.bdate_range("2020-01-01", periods=20), 0.7, 0.15, gap_sessions=10)
