"""Normalization stats from the train split only, the leakage audit, and the label contract."""

import dataclasses

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.dataset import arrays as ds_arrays
from models.dataset import audit as ds_audit
from models.dataset import build as ds_build
from models.dataset.normalization import fit_normalization, read_stats, write_stats
from models.dataset.windows import SplitRanges
from models.diagnosis import GuardFailure
from tests.helpers import sample_prices, tiny_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = tiny_config()
    prices = sample_prices(config)
    out = tmp_path_factory.mktemp("dataset")
    return config, prices, ds_build.build_dataset(prices, config, out, {"kind": "sample"})


def test_stats_equal_pandas_over_exactly_the_train_rows(built):
    config, prices, info = built
    lo, hi = (pd.Timestamp(d) for d in info.splits["train"])
    from models.dataset.features import compute_features

    frames = [compute_features(p, config.features.names) for p in prices.values()]
    rows = pd.concat(frames)
    train = rows[(rows["date"] >= lo) & (rows["date"] <= hi)]
    stats = pq.read_table(info.stats_path).to_pandas().set_index("feature")
    for name in config.features.names:
        assert stats.loc[name, "mean"] == pytest.approx(train[name].mean(), rel=1e-9)
        assert stats.loc[name, "std"] == pytest.approx(train[name].std(ddof=0), rel=1e-9)
        assert stats.loc[name, "count"] == len(train)
    meta = read_stats(info.stats_path).metadata
    assert meta["fit_start"] == info.splits["train"][0] and meta["fit_end"] == info.splits["train"][1]


def test_prices_after_the_train_split_do_not_change_stats_or_train_windows(built, tmp_path):
    config, prices, info = built
    train_end = pd.Timestamp(info.splits["train"][1])
    mutated = {}
    for ticker, frame in prices.items():
        frame = frame.copy()
        later = frame["date"] > train_end
        for column in ("open", "high", "low", "close", "adj_close"):
            frame.loc[later, column] *= 1.5
        frame.loc[later, "volume"] *= 3
        mutated[ticker] = frame
    other = ds_build.build_dataset(mutated, config, tmp_path, {"kind": "sample"})
    assert other.fingerprint != info.fingerprint  # the data did change...
    a, b = pq.read_table(info.stats_path), pq.read_table(other.stats_path)
    assert a.equals(b)  # ...but not one stats value (only the fingerprint in the metadata differs)
    assert read_stats(info.stats_path).metadata["fit_end"] == read_stats(other.stats_path).metadata["fit_end"]
    arrays_a, arrays_b = ds_arrays.load_arrays(info.path), ds_arrays.load_arrays(other.path)
    np.testing.assert_array_equal(arrays_a.ends["train"], arrays_b.ends["train"])
    np.testing.assert_array_equal(
        arrays_a.labels[arrays_a.ends["train"]], arrays_b.labels[arrays_b.ends["train"]]
    )
    rows = arrays_a.ends["train"][:, None] - np.arange(config.window.length)
    np.testing.assert_array_equal(arrays_a.matrix[rows], arrays_b.matrix[rows])


def test_same_inputs_same_fingerprint_and_windows(built, tmp_path):
    config, prices, info = built
    again = ds_build.build_dataset(prices, config, tmp_path, {"kind": "sample"})
    assert again.fingerprint == info.fingerprint
    assert again.sizes == info.sizes


def test_purge_zero_is_rejected_by_the_audit(tmp_path):
    config = tiny_config(split={"purge_sessions": 0})
    with pytest.raises(GuardFailure, match="purge of 0 sessions") as err:
        ds_build.build_dataset(sample_prices(config), config, tmp_path, {"kind": "sample"})
    assert err.value.codes == ["leakage"]


def test_stats_fitted_over_all_rows_are_rejected_by_the_audit(built):
    config, prices, info = built
    arrays = ds_arrays.load_arrays(info.path)
    leaky = fit_normalization(
        arrays.matrix,
        config.features.names,
        {
            "fit_start": info.splits["train"][0],
            "fit_end": str(pd.Timestamp(arrays.dates.max()).date()),
        },
    )
    with pytest.raises(GuardFailure, match="beyond the train split") as err:
        ds_audit.audit_leakage(arrays, SplitRanges.from_dict(info.splits), leaky, config)
    assert err.value.codes == ["leakage"]


def leaky_but_labelled_train_only(arrays, info, features, forge_count: bool, tickers=None):
    """Stats fitted on every row whose metadata claims the train range (and, forged, its row count)."""
    leaky = fit_normalization(
        arrays.matrix,
        features,
        {"fit_start": info.splits["train"][0], "fit_end": info.splits["train"][1]},
        tickers,
    )
    if forge_count:
        lo, hi = (np.datetime64(d, "ns") for d in info.splits["train"])
        leaky = dataclasses.replace(leaky, count=int(((arrays.dates >= lo) & (arrays.dates <= hi)).sum()))
    return leaky


def test_stats_claiming_the_train_range_are_checked_against_its_rows(built):
    """Stats fitted on all rows but labelled train-only used to pass: the audit trusted the label."""
    config, prices, info = built
    arrays = ds_arrays.load_arrays(info.path)
    ranges = SplitRanges.from_dict(info.splits)
    honest = read_stats(info.stats_path)
    assert ds_audit.audit_leakage(arrays, ranges, honest, config)["stats_recomputed"] is True

    leaky = leaky_but_labelled_train_only(arrays, info, config.features.names, forge_count=False)
    with pytest.raises(GuardFailure, match=rf"say they were fitted on {len(arrays.dates)} rows dated") as err:
        ds_audit.audit_leakage(arrays, ranges, leaky, config)
    assert err.value.codes == ["leakage"] and "fitted on other rows than they claim" in str(err.value)

    forged = leaky_but_labelled_train_only(arrays, info, config.features.names, forge_count=True)
    with pytest.raises(GuardFailure, match="do not match the rows they claim") as err:
        ds_audit.audit_leakage(arrays, ranges, forged, config)
    assert "recomputed on those rows" in str(err.value) and "leaks validation and test" in str(err.value)

    # Beyond the tolerance, by a hair: one mean off by 1e-4 standard deviations.
    nudged = dataclasses.replace(
        honest, mean=honest.mean + 1e-4 * honest.std * (np.arange(len(honest.mean)) == 2)
    )
    with pytest.raises(GuardFailure, match=f"feature '{config.features.names[2]}'"):
        ds_audit.audit_leakage(arrays, ranges, nudged, config)


def test_per_ticker_stats_are_checked_against_each_tickers_rows(tmp_path):
    config = tiny_config(features={"normalization": "per_ticker"})
    info = ds_build.build_dataset(sample_prices(config), config, tmp_path, {"kind": "sample"})
    arrays = ds_arrays.load_arrays(info.path)
    ranges = SplitRanges.from_dict(info.splits)
    assert ds_audit.audit_leakage(arrays, ranges, read_stats(info.stats_path), config)["stats_recomputed"]
    tickers = np.asarray(info.tickers)[arrays.ticker_ids]
    forged = leaky_but_labelled_train_only(arrays, info, config.features.names, True, tickers)
    with pytest.raises(GuardFailure, match=r"do not match the rows they claim \(.*\) for AAA"):
        ds_audit.audit_leakage(arrays, ranges, forged, config)


def test_degenerate_labels_fail_the_contract(tmp_path):
    config = tiny_config(labels={"theta": 0.5})  # nothing moves 50 % in 5 days: all range_bound
    with pytest.raises(GuardFailure) as err:
        ds_build.build_dataset(sample_prices(config), config, tmp_path, {"kind": "sample"})
    assert "class-missing" in err.value.codes and "class-imbalance" in err.value.codes
    assert "range_bound" in str(err.value)


def test_zero_std_becomes_one_and_is_recorded(tmp_path):
    matrix = np.column_stack([np.arange(10.0), np.zeros(10)])
    stats = fit_normalization(
        matrix, ("moving", "constant"), {"fit_start": "2020-01-01", "fit_end": "2020-01-10"}
    )
    assert stats.std_replaced == ("constant",)
    assert np.isfinite(stats.apply(matrix)).all()
    back = read_stats(write_stats(stats, tmp_path / "stats.parquet"))
    assert back.std_replaced == ("constant",) and back.std[1] == 1.0
    plain = pq.read_table(tmp_path / "stats.parquet").to_pandas()  # readable without project code
    assert list(plain.columns) == [
        "feature",
        "mean",
        "std",
        "count",
        "scope",
        "std_replaced",
        "method",
        "center",
        "scale",
        "clip",
        "bin_edges",
        "bin_shares",
    ]
    # The train distribution on train-fitted bins (drift monitoring): shares of the train rows.
    assert plain["bin_edges"][0].tolist() == pytest.approx(
        np.quantile(np.arange(10.0), np.arange(1, 10) / 10)
    )
    assert plain["bin_shares"][0].tolist() == pytest.approx([0.1] * 10)
    assert plain["bin_edges"][1].tolist() == [0.0] and plain["bin_shares"][1].tolist() == [0.0, 1.0]
    # What is applied: center/scale equal mean/std for the default method, and nothing is clipped.
    assert plain["center"].tolist() == plain["mean"].tolist() and plain["scale"].tolist() == [
        pytest.approx(np.arange(10.0).std()),
        1.0,
    ]
    assert plain["method"].tolist() == ["zscore", "zscore"] and np.isinf(plain["clip"]).all()


def test_volatility_rule_balanced_on_train_is_chosen_on_train_only(tmp_path):
    config = tiny_config(labels={"rule": "volatility", "balance_on_train": True})
    prices = sample_prices(config)
    info = ds_build.build_dataset(prices, config, tmp_path / "a", {"kind": "sample"})
    assert info.label_rule["rule"] == "volatility" and info.label_rule["balanced_on_train"]
    assert info.class_shares["train"]["range_bound"] == pytest.approx(1 / 3, abs=0.02)
    test_start = pd.Timestamp(info.splits["test"][0])
    shocked = {}
    for ticker, frame in prices.items():
        frame = frame.copy()
        later = frame["date"] >= test_start
        for column in ("open", "high", "low", "close", "adj_close"):
            frame.loc[later, column] *= np.linspace(1, 3, later.sum())
        shocked[ticker] = frame
    other = ds_build.build_dataset(shocked, config, tmp_path / "b", {"kind": "sample"})
    assert other.theta == info.theta  # the scale is never refitted on test data
    assert other.class_shares["test"] != info.class_shares["test"]


def test_per_ticker_stats_equal_pandas_per_ticker_over_train_rows(tmp_path):
    config = tiny_config(features={"normalization": "per_ticker"})
    prices = sample_prices(config)
    info = ds_build.build_dataset(prices, config, tmp_path, {"kind": "sample"})
    stats = read_stats(info.stats_path)
    assert stats.scopes == tuple(sorted(prices)) and stats.mean.shape == (4, len(config.features.names))
    lo, hi = (pd.Timestamp(d) for d in info.splits["train"])
    from models.dataset.features import compute_features

    for i, ticker in enumerate(stats.scopes):
        rows = compute_features(prices[ticker], config.features.names)
        train = rows[(rows["date"] >= lo) & (rows["date"] <= hi)]
        np.testing.assert_allclose(
            stats.mean[i], train[list(config.features.names)].mean().to_numpy(), rtol=1e-9
        )
        np.testing.assert_allclose(
            stats.std[i], train[list(config.features.names)].std(ddof=0).to_numpy(), rtol=1e-9
        )
    plain = pq.read_table(info.stats_path).to_pandas()
    assert set(plain["scope"]) == set(prices) and len(plain) == 4 * len(config.features.names)
    with pytest.raises(ValueError, match="have none for \\['ZZZ'\\]"):
        stats.apply(np.zeros((2, len(config.features.names))), "ZZZ")


def test_windows_and_labels_never_span_a_missing_session(tmp_path):
    """Counted in exchange sessions, not rows: with sessions missing, every window is `window`
    consecutive sessions and every label looks exactly `horizon` sessions ahead."""
    from models.prices import calendar

    config = tiny_config()
    w, h = config.window.length, config.labels.horizon
    prices = sample_prices(config)
    gapped = dict(prices)
    gapped["AAA"] = prices["AAA"].drop(index=[300, 301, 302]).reset_index(drop=True)  # in train
    bbb = prices["BBB"]
    gapped["BBB"] = bbb.drop(index=[len(bbb) - 60]).reset_index(drop=True)  # in test
    info = ds_build.build_dataset(gapped, config, tmp_path, {"kind": "sample"})
    arrays = ds_arrays.load_arrays(info.path)
    sessions = calendar.sessions("XNYS", config.source.start, config.source.end).to_numpy()
    at = np.searchsorted(sessions, arrays.dates)
    for split, ends in arrays.ends.items():
        assert len(ends), split
        np.testing.assert_array_equal(at[ends] - at[ends - (w - 1)], w - 1)
        np.testing.assert_array_equal(np.searchsorted(sessions, arrays.label_dates[ends]) - at[ends], h)
    # Each gap costs: the `horizon` labels before it, the warm-up (20 rows for momentum_20 and
    # volatility_20) and the first window - 1 ends after it.
    assert info.data_quality == {
        "policy": info.data_quality["policy"],
        "missing_sessions": 4,
        "rows_dropped_after_gaps": 2 * 20,
        "windows_dropped_at_gaps": 2 * (w - 1),
        "labels_dropped_at_gaps": 2 * h,
        "zero_volume_sessions": 0,
    }
    complete = ds_build.build_dataset(prices, config, tmp_path / "complete", {"kind": "sample"})
    assert (
        complete.data_quality["missing_sessions"] == 0
        and complete.data_quality["windows_dropped_at_gaps"] == 0
    )
    assert sum(info.sizes.values()) < sum(complete.sizes.values())


def test_robust_normalization_is_fitted_on_train_only_and_clips_what_the_model_sees(tmp_path):
    config = tiny_config(features={"robust": ["log_volume_change"], "robust_clip": 2.0})
    prices = sample_prices(config)
    info = ds_build.build_dataset(prices, config, tmp_path / "a", {"kind": "sample"})
    stats = read_stats(info.stats_path)
    j = config.features.names.index("log_volume_change")
    arrays = ds_arrays.load_arrays(info.path)
    train = ds_build.train_rows(arrays, SplitRanges.from_dict(info.splits))
    column = arrays.matrix[train, j]
    q25, median, q75 = np.quantile(column, [0.25, 0.5, 0.75])
    assert stats.methods[j] == "robust" and stats.center[j] == pytest.approx(median)
    assert stats.scale[j] == pytest.approx((q75 - q25) / 1.349) and stats.clip[j] == 2.0
    assert stats.mean[j] == pytest.approx(column.mean())  # the true mean is kept beside the center
    others = [k for k in range(len(config.features.names)) if k != j]
    assert all(stats.methods[k] == "zscore" and np.isinf(stats.clip[k]) for k in others)
    # What training feeds the model is clipped to ±2 for that feature only.
    inputs = ds_arrays.normalized_matrix(info, arrays)
    assert np.abs(inputs[:, j]).max() == pytest.approx(2.0) and np.abs(inputs[:, others]).max() > 2.0
    # Prices after the train split change nothing in the fitted center and scale.
    train_end = pd.Timestamp(info.splits["train"][1])
    mutated = {
        t: f.assign(volume=np.where(f["date"] > train_end, f["volume"] * 7, f["volume"]))
        for t, f in prices.items()
    }
    other = read_stats(ds_build.build_dataset(mutated, config, tmp_path / "b", {"kind": "sample"}).stats_path)
    np.testing.assert_array_equal(other.center, stats.center)
    np.testing.assert_array_equal(other.scale, stats.scale)


def test_a_robust_center_fitted_beyond_the_train_rows_is_refused_by_the_audit(tmp_path):
    """The audit recomputes what is applied, not only mean and std: a median taken over all rows
    under honest train means and stds is leakage too."""
    config = tiny_config(features={"robust": ["log_volume_change"]})
    info = ds_build.build_dataset(sample_prices(config), config, tmp_path, {"kind": "sample"})
    arrays = ds_arrays.load_arrays(info.path)
    ranges = SplitRanges.from_dict(info.splits)
    honest = read_stats(info.stats_path)
    assert ds_audit.audit_leakage(arrays, ranges, honest, config)["stats_recomputed"] is True
    everything = fit_normalization(arrays.matrix, config.features.names, {}, robust=config.features.robust)
    j = config.features.names.index("log_volume_change")
    center, scale = honest.center.copy(), honest.scale.copy()
    center[j], scale[j] = everything.center[j], everything.scale[j]
    leaky = dataclasses.replace(honest, center=center, scale=scale)
    with pytest.raises(
        GuardFailure,
        match=r"feature 'log_volume_change' \(robust\) is centered at .* recomputed on those rows",
    ) as err:
        ds_audit.audit_leakage(arrays, ranges, leaky, config)
    assert err.value.codes == ["leakage"]
