"""The leakage audit's checks at their boundaries, each reached by a dataset whose ends, ranges or
config were tampered with after an honest build; and the label contract's empty-split diagnosis."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from models.config import CLASS_NAMES
from models.dataset import audit as ds_audit
from models.dataset import build as ds_build
from models.dataset import labels as labelling
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


# -- what the refusals say, word for word: a diagnosis is a claim the user acts on ------------------


def test_the_leakage_diagnosis_says_what_leaked_and_the_fix_and_carries_the_evidence(built):
    config, info, arrays, ranges, stats = built
    w, h = config.window.length, config.labels.horizon
    honest = ds_audit.audit_leakage(arrays, ranges, stats, config)
    short = config.model_copy(update={"split": config.split.model_copy(update={"purge_sessions": w + h - 1})})
    meta = {**stats.metadata, "fit_end": str((ranges.train[1] + pd.Timedelta(days=1)).date())}
    with pytest.raises(GuardFailure) as err:
        ds_audit.audit_leakage(arrays, ranges, dataclasses.replace(stats, metadata=meta), short)
    (d,) = err.value.diagnoses
    first_val_input = pd.Timestamp(arrays.dates[arrays.ends["validation"] - (w - 1)].min()).date()
    assert d.message == (
        "The dataset leaks information across split boundaries: "
        f"purge of {w + h - 1} sessions is shorter than window + horizon = {w} + {h} = {w + h}, "
        "so the last train labels can see the first validation inputs; "
        f"normalization stats were fitted on {ranges.train[0].date()}..{meta['fit_end']}, beyond the train "
        f"split {ranges.as_dict()['train']} (first validation input {first_val_input})."
    )
    assert d.suggestion == (
        "Leave purge_sessions unset (it defaults to window + horizon) and fit normalization on the "
        "train split only."
    )
    assert d.fatal is True
    assert d.evidence == {
        "splits": ranges.as_dict(),
        "gap_train_validation": honest["gap_train_validation"],
        "gap_validation_test": honest["gap_validation_test"],
        "stats_fit": [ranges.train[0].date().isoformat(), meta["fit_end"]],
    }


def test_every_split_is_checked_even_after_one_without_windows(built):
    """An empty validation split is skipped, not the end of the checks: a single bad test window
    after it is still found."""
    config, _, arrays, ranges, stats = built
    w = config.window.length
    early = int(arrays.ends["test"][0]) - 1  # its first input is the day before the test range
    tampered = dataclasses.replace(
        arrays, ends={**arrays.ends, "validation": np.array([], dtype=np.int64), "test": np.array([early])}
    )
    message = refused(tampered, ranges, stats, config)
    assert f"test window ending {pd.Timestamp(arrays.dates[early]).date()} reads from " in message
    assert pd.Timestamp(arrays.dates[early - (w - 1)]) < ranges.test[0]


def test_stats_may_not_end_on_the_first_validation_input_the_windows_read(built):
    """The first validation input is taken from the validation windows themselves, not from the
    range: a validation window reaching back to the last train session makes train-fitted stats
    (ending that day) leak, at the boundary (fit end == first validation input)."""
    config, _, arrays, ranges, stats = built
    w = config.window.length
    last_train_row = int(np.flatnonzero(arrays.dates == np.datetime64(ranges.train[1], "ns"))[0])
    reaching = last_train_row + w - 1  # a window of the same ticker whose first input is that day
    assert arrays.ticker_ids[reaching] == arrays.ticker_ids[last_train_row]
    tampered = with_ends(arrays, "validation", [reaching, *arrays.ends["validation"]])
    message = refused(tampered, ranges, stats, config)
    assert str(stats.metadata["fit_end"]) == str(ranges.train[1].date())
    assert (
        f"normalization stats were fitted on {ranges.train[0].date()}..{ranges.train[1].date()}, beyond "
        f"the train split {ranges.as_dict()['train']} (first validation input {ranges.train[1].date()})"
    ) in message


def test_the_empty_split_diagnosis_says_the_fix(built):
    config, _, arrays, _, _ = built
    with pytest.raises(GuardFailure) as err:
        ds_audit.check_label_contract(with_ends(arrays, "validation", []), config)
    (d,) = err.value.diagnoses
    assert (d.code, d.message, d.suggestion, d.evidence, d.fatal) == (
        "empty-split",
        "The validation split has no complete labelled window.",
        "Load a longer history or shorten window, horizon or purge.",
        {},
        True,
    )


def test_a_class_missing_from_train_is_named_with_the_shares(built):
    config, _, arrays, _, _ = built
    labels = arrays.labels.copy()
    train = arrays.ends["train"]
    labels[train] = np.where(labels[train] == 1, 2, labels[train])  # no train window keeps class 1
    tampered = dataclasses.replace(arrays, labels=labels)
    loose = config.model_copy(update={"labels": config.labels.model_copy(update={"max_class_share": 0.99})})
    with pytest.raises(GuardFailure) as err:
        ds_audit.check_label_contract(tampered, loose)
    (d,) = err.value.diagnoses
    shares = {s: labelling.class_shares(labels[arrays.ends[s]]) for s in ("train", "validation", "test")}
    assert d.code == "class-missing"
    assert d.message == (
        f"The train split has no '{CLASS_NAMES[1]}' windows, so the model cannot learn them."
    )
    assert d.suggestion == f"Change theta ({config.labels.theta}) or the horizon so every class occurs."
    assert d.evidence == {"class_shares": shares}
    # Two classes missing: both named.
    labels[train] = np.where(labels[train] >= 0, 2, labels[train])
    with pytest.raises(GuardFailure) as err:
        ds_audit.check_label_contract(dataclasses.replace(arrays, labels=labels), loose)
    assert err.value.diagnoses[0].message.startswith(
        f"The train split has no '{CLASS_NAMES[0]}, {CLASS_NAMES[1]}' windows"
    )


def test_class_imbalance_is_refused_above_the_limit_not_at_it(built):
    config, _, arrays, _, _ = built
    shares = ds_audit.check_label_contract(arrays, config)
    split, top = max(((s, c) for s in shares for c in shares[s]), key=lambda sc: shares[sc[0]][sc[1]])
    share = shares[split][top]

    def limited(limit):
        return config.model_copy(
            update={"labels": config.labels.model_copy(update={"max_class_share": limit})}
        )

    assert ds_audit.check_label_contract(arrays, limited(share)) == shares  # at the limit: accepted
    with pytest.raises(GuardFailure) as err:
        ds_audit.check_label_contract(arrays, limited(share - 1e-9))
    d = next(d for d in err.value.diagnoses if split in d.message)
    assert d.code == "class-imbalance"
    assert d.message == (
        f"{share:.1%} of the {split} labels are '{top}' (limit {share - 1e-9:.0%}): the labelling is degenerate."
    )
    assert d.suggestion == (
        f"Check theta ({config.labels.theta}) against typical {config.labels.horizon}-day returns; a theta "
        "far too large or small puts every window in one class."
    )
    assert d.evidence == {"class_shares": shares}


# -- the stats-vs-data check: what it compares, its tolerance, and what it says -------------------


def fit_range(info):
    start, end = info.splits["train"]
    return pd.Timestamp(start), pd.Timestamp(end)


def shifted(stats, field, feature, by, scope=None):
    """The stats with one number moved by `by` (a copy)."""
    values = getattr(stats, field).copy()
    index = (feature,) if scope is None else (scope, feature)
    values[index] += by
    return dataclasses.replace(stats, **{field: values})


@pytest.fixture(scope="module")
def per_ticker(tmp_path_factory):
    config = tiny_config(
        evaluation={"scheme": "holdout"},
        features={"normalization": "per_ticker", "robust": ["log_volume_change"]},
    )
    info = ds_build.build_dataset(
        sample_prices(config), config, tmp_path_factory.mktemp("audit-per-ticker"), {"kind": "sample"}
    )
    return config, info, load_arrays(info.path), read_stats(info.stats_path)


def test_a_mean_off_by_ten_tolerances_is_found_and_named_word_for_word(built):
    config, info, arrays, _, stats = built
    start, end = fit_range(info)
    j = 1
    assert stats.std[j] < 0.5  # tolerance relative to the std, not divided by it
    off = shifted(stats, "mean", j, 10 * ds_audit.STATS_TOLERANCE * stats.std[j])
    message = ds_audit.stats_mismatch(arrays, off, start, end)
    assert message == (
        f"normalization stats do not match the rows they claim ({start.date()}..{end.date()}): feature "
        f"'{stats.features[j]}' has mean {off.mean[j]:.6g} and std {stats.std[j]:.6g} in stats.parquet, "
        f"but {stats.mean[j]:.6g} and {stats.std[j]:.6g} recomputed on those rows: they were fitted on "
        "other rows (fitting on all rows leaks validation and test)"
    )
    assert ds_audit.stats_mismatch(arrays, stats, start, end) is None
    within = shifted(stats, "mean", j, 0.1 * ds_audit.STATS_TOLERANCE * stats.std[j])
    assert ds_audit.stats_mismatch(arrays, within, start, end) is None


def test_a_std_off_by_ten_tolerances_is_found(built):
    _, info, arrays, _, stats = built
    start, end = fit_range(info)
    j = 0
    off = shifted(stats, "std", j, 10 * ds_audit.STATS_TOLERANCE * stats.std[j])
    assert f"'{stats.features[j]}' has mean" in ds_audit.stats_mismatch(arrays, off, start, end)


def test_a_feature_constant_over_train_is_compared_with_the_std_of_one_it_was_given(built):
    config, info, arrays, _, stats = built
    start, end = fit_range(info)
    matrix = arrays.matrix.copy()
    matrix[:, 2] = 3.0  # constant everywhere: std 0, replaced by 1 in the stats
    constant = dataclasses.replace(arrays, matrix=matrix)
    train_rows = (arrays.dates >= np.datetime64(start, "ns")) & (arrays.dates <= np.datetime64(end, "ns"))
    from models.dataset.normalization import fit_normalization

    honest = fit_normalization(matrix[train_rows], stats.features, stats.metadata)
    assert honest.std[2] == 1.0
    assert ds_audit.stats_mismatch(constant, honest, start, end) is None


def test_a_non_finite_feature_is_left_to_the_preflight_and_the_others_are_still_checked(built):
    _, info, arrays, _, stats = built
    start, end = fit_range(info)
    matrix = arrays.matrix.copy()
    first = int(np.flatnonzero(arrays.dates >= np.datetime64(start, "ns"))[0])
    matrix[first, 0] = np.inf
    matrix[first + 1, 0] = -np.inf
    broken = dataclasses.replace(arrays, matrix=matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning from the feature it cannot recompute
        assert ds_audit.stats_mismatch(broken, stats, start, end) is None
        off = shifted(stats, "mean", 1, 10 * ds_audit.STATS_TOLERANCE * stats.std[1])
        assert f"'{stats.features[1]}'" in ds_audit.stats_mismatch(broken, off, start, end)


def test_per_ticker_stats_are_checked_per_ticker_and_the_ticker_is_named(per_ticker):
    _, info, arrays, stats = per_ticker
    start, end = fit_range(info)
    assert ds_audit.stats_mismatch(arrays, stats, start, end) is None
    k, j = 1, 0
    off = shifted(stats, "mean", j, 10 * ds_audit.STATS_TOLERANCE * stats.std[k, j], scope=k)
    message = ds_audit.stats_mismatch(arrays, off, start, end)
    assert message.startswith(
        f"normalization stats do not match the rows they claim ({start.date()}..{end.date()}) for "
        f"{stats.scopes[k]}: feature '{stats.features[j]}' has mean"
    )


def test_a_robust_features_center_or_scale_must_be_the_median_and_iqr_of_the_rows(per_ticker):
    _, info, arrays, stats = per_ticker
    start, end = fit_range(info)
    j = stats.features.index("log_volume_change")
    assert stats.methods[j] == "robust"
    k = 0
    for field in ("center", "scale"):
        off = shifted(stats, field, j, 10 * ds_audit.STATS_TOLERANCE * stats.scale[k, j], scope=k)
        message = ds_audit.stats_mismatch(arrays, off, start, end)
        assert message == (
            f"normalization stats do not match the rows they claim ({start.date()}..{end.date()}) for "
            f"{stats.scopes[k]}: feature 'log_volume_change' (robust) is centered at {off.center[k, j]:.6g} "
            f"and scaled by {off.scale[k, j]:.6g} in stats.parquet, but {stats.center[k, j]:.6g} and "
            f"{stats.scale[k, j]:.6g} recomputed on those rows: they were fitted on other rows (fitting on "
            "all rows leaks validation and test)"
        ), field


def test_a_pooled_robust_features_center_and_scale_are_checked_relative_to_its_scale(built):
    """log_return (an IQR-std near 0.01): ten tolerances of its scale are caught, and the pooled
    message names no ticker."""
    from models.dataset.normalization import fit_normalization

    _, info, arrays, _, stats = built
    start, end = fit_range(info)
    rows = (arrays.dates >= np.datetime64(start, "ns")) & (arrays.dates <= np.datetime64(end, "ns"))
    robust = fit_normalization(arrays.matrix[rows], stats.features, stats.metadata, robust=("log_return",))
    assert ds_audit.stats_mismatch(arrays, robust, start, end) is None
    j = stats.features.index("log_return")
    assert robust.methods[j] == "robust" and robust.scale[j] < 0.1
    for field in ("center", "scale"):
        off = shifted(robust, field, j, 10 * ds_audit.STATS_TOLERANCE * robust.scale[j])
        message = ds_audit.stats_mismatch(arrays, off, start, end)
        assert message.startswith(
            f"normalization stats do not match the rows they claim ({start.date()}..{end.date()}): "
            "feature 'log_return' (robust) is centered at"
        ), (field, message)


def test_features_at_the_ends_of_the_float_range_raise_no_numpy_warning(built):
    """Half the fit rows at -inf and half at +inf (the median falls between them), or at -1e308 and
    +1e308 (sums and spreads overflow): the check gives its answer without a numpy warning."""
    _, info, arrays, _, stats = built
    start, end = fit_range(info)
    rows = np.flatnonzero(
        (arrays.dates >= np.datetime64(start, "ns")) & (arrays.dates <= np.datetime64(end, "ns"))
    )
    for extreme in (np.inf, 1e308):
        matrix = arrays.matrix.copy()
        matrix[rows, 0] = np.where(np.arange(len(rows)) < len(rows) // 2, -extreme, extreme)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds_audit.stats_mismatch(dataclasses.replace(arrays, matrix=matrix), stats, start, end)
        robust = dataclasses.replace(stats, methods=("robust", *stats.methods[1:]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds_audit.stats_mismatch(dataclasses.replace(arrays, matrix=matrix), robust, start, end)
