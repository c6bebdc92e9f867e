"""The leakage audit's checks at their boundaries, each reached by a dataset whose ends, ranges or
config were tampered with after an honest build; and the label contract's empty-split diagnosis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.dataset import audit as ds_audit
from models.dataset import build as ds_build
from models.dataset.arrays import load_arrays
from models.dataset.normalization import read_stats
from models.dataset.windows import SplitRanges
from models.diagnosis import GuardFailure
from tests.helpers import sample_prices, tiny_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = tiny_config(evaluation={"scheme": "holdout"})
    info = ds_build.build_dataset(
        sample_prices(config), config, tmp_path_factory.mktemp("audit"), {"kind": "sample"}
    )
    return (
        config,
        info,
        load_arrays(info.path),
        SplitRanges.from_dict(info.splits),
        read_stats(info.stats_path),
    )


def refused(arrays, ranges, stats, config) -> str:
    with pytest.raises(GuardFailure) as err:
        ds_audit.audit_leakage(arrays, ranges, stats, config)
    assert err.value.codes == ["leakage"]
    return str(err.value)


def test_an_honest_dataset_passes_and_the_audit_records_its_evidence(built):
    config, info, arrays, ranges, stats = built
    record = ds_audit.audit_leakage(arrays, ranges, stats, config)
    sessions = pd.DatetimeIndex(np.unique(arrays.dates))
    gap = int(((sessions > ranges.train[1]) & (sessions < ranges.validation[0])).sum())
    assert record["passed"] is True and record["gap_train_validation"] == gap
    assert gap >= config.purge_sessions == config.window.length + config.labels.horizon
    assert record["purge_sessions"] == config.purge_sessions and record["embargo_sessions"] == 0
    assert record["splits"] == ranges.as_dict() and record["stats_recomputed"] is True
    assert record["stats_fit"] == info.splits["train"]


def test_the_gap_between_splits_must_hold_purge_plus_embargo(built):
    config, _, arrays, ranges, stats = built
    gap = ds_audit.audit_leakage(arrays, ranges, stats, config)["gap_validation_test"]
    extra = gap - config.purge_sessions
    enough = config.model_copy(update={"split": config.split.model_copy(update={"embargo_sessions": extra})})
    ds_audit.audit_leakage(arrays, ranges, stats, enough)  # exactly enough: passes
    short = config.model_copy(
        update={"split": config.split.model_copy(update={"embargo_sessions": extra + 1})}
    )
    message = refused(arrays, ranges, stats, short)
    assert (
        f"only {gap} sessions between validation (ends {ranges.validation[1].date()}) and test "
        f"(starts {ranges.test[0].date()}); purge + embargo needs {gap + 1}"
    ) in message


def test_splits_moved_together_are_refused_by_the_gap_check(built):
    config, _, arrays, ranges, stats = built
    sessions = pd.DatetimeIndex(np.unique(arrays.dates))
    after_train = sessions[sessions > ranges.train[1]][0]
    closer = dataclasses.replace(ranges, validation=(after_train, ranges.validation[1]))
    message = refused(arrays, closer, stats, config)
    assert (
        f"only 0 sessions between train (ends {ranges.train[1].date()}) and validation "
        f"(starts {after_train.date()})"
    ) in message


def test_the_purge_must_cover_window_plus_horizon(built):
    config, _, arrays, ranges, stats = built
    w, h = config.window.length, config.labels.horizon
    exact = config.model_copy(update={"split": config.split.model_copy(update={"purge_sessions": w + h})})
    ds_audit.audit_leakage(arrays, ranges, stats, exact)
    short = config.model_copy(update={"split": config.split.model_copy(update={"purge_sessions": w + h - 1})})
    assert f"purge of {w + h - 1} sessions is shorter than window + horizon = {w} + {h} = {w + h}" in refused(
        arrays, ranges, stats, short
    )


def with_ends(arrays, split, ends):
    return dataclasses.replace(arrays, ends={**arrays.ends, split: np.asarray(ends, dtype=np.int64)})


def test_a_window_whose_inputs_start_before_its_split_is_refused(built):
    config, _, arrays, ranges, stats = built
    first_validation = int(arrays.ends["validation"][0])
    early = first_validation - 1  # its first input is the day before the validation range
    w = config.window.length
    tampered = with_ends(arrays, "validation", [early, *arrays.ends["validation"]])
    message = refused(tampered, ranges, stats, config)
    first_input = pd.Timestamp(arrays.dates[early - (w - 1)]).date()
    assert first_input < ranges.validation[0].date()
    assert (
        f"validation window ending {pd.Timestamp(arrays.dates[early]).date()} reads from {first_input}"
        in message
    )
    assert f"outside validation {ranges.as_dict()['validation']}" in message


def test_a_window_whose_label_day_is_after_its_split_is_refused(built):
    config, _, arrays, ranges, stats = built
    last_train = int(arrays.ends["train"][-1])
    late = last_train + 1  # labelled after the train range ends (a row of the purge gap)
    assert arrays.label_dates[late] > np.datetime64(ranges.train[1], "ns")
    message = refused(with_ends(arrays, "train", [*arrays.ends["train"], late]), ranges, stats, config)
    assert f"to label day {pd.Timestamp(arrays.label_dates[late]).date()}, outside train" in message
    assert ds_audit.audit_leakage(
        with_ends(arrays, "train", arrays.ends["train"][:-1]), ranges, stats, config
    )


def test_a_window_that_reads_another_tickers_rows_is_refused(built):
    config, _, arrays, ranges, stats = built
    w = config.window.length
    train = arrays.ends["train"]
    # A train window of the second ticker whose first rows belong to the first ticker.
    second = int(np.argmax(arrays.ticker_ids == 1))
    crossing = second + w - 2
    assert arrays.ticker_ids[crossing - (w - 1)] == 0 and arrays.ticker_ids[crossing] == 1
    inside = (arrays.dates[crossing - (w - 1)] >= np.datetime64(ranges.train[0], "ns")) and (
        arrays.label_dates[crossing] <= np.datetime64(ranges.train[1], "ns")
    )
    assert inside  # dates alone would let it through
    message = refused(with_ends(arrays, "train", [crossing, *train]), ranges, stats, config)
    assert f"train window ending {pd.Timestamp(arrays.dates[crossing]).date()}" in message


@pytest.mark.parametrize(
    ("fit_start", "fit_end"),
    [("before", None), (None, "after"), (None, "first-validation-input")],
)
def test_stats_fitted_outside_the_train_range_are_refused(built, fit_start, fit_end):
    config, _, arrays, ranges, stats = built
    w = config.window.length
    first_validation_input = pd.Timestamp(arrays.dates[arrays.ends["validation"] - (w - 1)].min())
    start = ranges.train[0] - pd.Timedelta(days=1) if fit_start else ranges.train[0]
    end = {
        None: ranges.train[1],
        "after": ranges.train[1] + pd.Timedelta(days=1),
        "first-validation-input": first_validation_input,
    }[fit_end]
    meta = {**stats.metadata, "fit_start": str(start.date()), "fit_end": str(end.date())}
    message = refused(arrays, ranges, dataclasses.replace(stats, metadata=meta), config)
    assert (
        f"normalization stats were fitted on {start.date()}..{end.date()}, beyond the train split "
        f"{ranges.as_dict()['train']} (first validation input {first_validation_input.date()})"
    ) in message


def test_a_split_without_windows_is_named_by_the_label_contract(built):
    config, _, arrays, _, _ = built
    assert set(ds_audit.check_label_contract(arrays, config)) == {"train", "validation", "test"}
    empty = with_ends(arrays, "test", [])
    with pytest.raises(GuardFailure) as err:
        ds_audit.check_label_contract(empty, config)
    assert err.value.codes == ["empty-split"]
    assert "The test split has no complete labelled window." in str(err.value)


def test_a_history_too_short_for_three_splits_is_refused_before_training(tmp_path):
    """The configured years, but files that hold only the last months (tickers listed recently): the
    build names the split that got no window instead of training on nothing."""
    config = tiny_config(evaluation={"scheme": "holdout"})
    recent = {
        t: p[p["date"] >= "2024-09-02"].reset_index(drop=True) for t, p in sample_prices(config).items()
    }
    with pytest.raises(GuardFailure) as err:
        ds_build.build_dataset(recent, config, tmp_path, {"kind": "sample"})
    assert "empty-split" in err.value.codes, err.value
