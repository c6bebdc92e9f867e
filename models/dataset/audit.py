"""The leakage audit and the label contract: what a dataset must satisfy before anything trains on it.

A violation raises GuardFailure with a diagnosis naming the dates or the class shares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.config import CLASS_NAMES, PipelineConfig
from models.dataset import labels as labelling
from models.dataset.arrays import Arrays
from models.dataset.normalization import IQR_TO_STD, ROBUST, Stats
from models.dataset.windows import SPLITS, SplitRanges
from models.diagnosis import Diagnosis, GuardFailure


def audit_leakage(
    arrays: Arrays, ranges: SplitRanges, stats: Stats, config: PipelineConfig
) -> dict[str, object]:
    """Check that nothing from validation or test reaches training; raise GuardFailure otherwise.

    Checks: the purge covers window + horizon; the sessions between splits are at least purge +
    embargo; every window's first input and label day lie in its own split; the stats were fitted
    inside the train range, ending before the first validation window's inputs.
    """
    w, h = config.window.length, config.labels.horizon
    problems: list[str] = []
    evidence: dict[str, object] = {"splits": ranges.as_dict()}
    purge = config.purge_sessions
    if purge < w + h:
        problems.append(
            f"purge of {purge} sessions is shorter than window + horizon = {w} + {h} = {w + h}, "
            "so the last train labels can see the first validation inputs"
        )
    sessions = pd.DatetimeIndex(np.unique(arrays.dates))
    for before, after in (("train", "validation"), ("validation", "test")):
        end_before = getattr(ranges, before)[1]
        start_after = getattr(ranges, after)[0]
        gap = int(((sessions > end_before) & (sessions < start_after)).sum())
        evidence[f"gap_{before}_{after}"] = gap
        if gap < purge + config.split.embargo_sessions:
            problems.append(
                f"only {gap} sessions between {before} (ends {end_before.date()}) and {after} "
                f"(starts {start_after.date()}); purge + embargo needs {purge + config.split.embargo_sessions}"
            )
    for split in SPLITS:
        ends = arrays.ends[split]
        if len(ends) == 0:
            continue
        lo, hi = (np.datetime64(d, "ns") for d in getattr(ranges, split))
        first_inputs = arrays.dates[ends - (w - 1)]
        label_days = arrays.label_dates[ends]
        bad = (
            (first_inputs < lo)
            | (label_days > hi)
            | (arrays.ticker_ids[ends - (w - 1)] != arrays.ticker_ids[ends])
        )
        if bad.any():
            i = int(np.argmax(bad))
            problems.append(
                f"{split} window ending {pd.Timestamp(arrays.dates[ends[i]]).date()} reads from "
                f"{pd.Timestamp(first_inputs[i]).date()} to label day {pd.Timestamp(label_days[i]).date()}, "
                f"outside {split} {ranges.as_dict()[split]}"
            )
    fit_start = pd.Timestamp(str(stats.metadata.get("fit_start")))
    fit_end = pd.Timestamp(str(stats.metadata.get("fit_end")))
    evidence |= {"stats_fit": [fit_start.date().isoformat(), fit_end.date().isoformat()]}
    val_ends = arrays.ends["validation"]
    first_val_input = (
        pd.Timestamp(arrays.dates[val_ends - (w - 1)].min()) if len(val_ends) else ranges.validation[0]
    )
    if fit_start < ranges.train[0] or fit_end > ranges.train[1] or fit_end >= first_val_input:
        problems.append(
            f"normalization stats were fitted on {fit_start.date()}..{fit_end.date()}, beyond the train "
            f"split {ranges.as_dict()['train']} (first validation input {first_val_input.date()})"
        )
    else:
        mismatch = stats_mismatch(arrays, stats, fit_start, fit_end)
        evidence["stats_recomputed"] = mismatch is None
        if mismatch:
            problems.append(mismatch)
    if problems:
        raise GuardFailure(
            [
                Diagnosis(
                    code="leakage",
                    message="The dataset leaks information across split boundaries: "
                    + "; ".join(problems)
                    + ".",
                    suggestion="Leave purge_sessions unset (it defaults to window + horizon) and fit "
                    "normalization on the train split only.",
                    evidence=evidence,
                )
            ]
        )
    return {
        "passed": True,
        **evidence,
        "purge_sessions": purge,
        "embargo_sessions": config.split.embargo_sessions,
    }


# Recomputing the stats on the same float64 rows differs only by summation order (~1e-15
# relative); stats fitted on other rows differ by far more than this.
STATS_TOLERANCE = 1e-6


def stats_mismatch(
    arrays: Arrays, stats: Stats, fit_start: pd.Timestamp, fit_end: pd.Timestamp
) -> str | None:
    """Check the stats against the rows they claim to be fitted on, not only the claim.

    The rows dated fit_start..fit_end must be as many as the stats' `count`, and their mean and
    std (ddof=0, per ticker for per-ticker stats) must equal the stored ones within
    STATS_TOLERANCE (relative to the std). Stats fitted on all rows but labelled with the train
    range fail here. Returns the problem in words, or None.
    """
    claimed = (arrays.dates >= np.datetime64(fit_start, "ns")) & (
        arrays.dates <= np.datetime64(fit_end, "ns")
    )
    rows = int(claimed.sum())
    fit = f"{fit_start.date()}..{fit_end.date()}"
    if rows != stats.count:
        return (
            f"normalization stats say they were fitted on {stats.count} rows dated {fit}, but the "
            f"dataset has {rows} rows there: they were fitted on other rows than they claim"
        )
    matrix = arrays.matrix[claimed]
    if stats.pooled:
        groups = [("pooled", matrix, stats.mean, stats.std, stats.center, stats.scale)]
    else:
        # build_dataset numbers tickers in sorted name order, and stats scopes are sorted names,
        # so the k-th ticker id present in the fit rows is the k-th scope.
        ids = np.unique(arrays.ticker_ids[claimed])
        if len(ids) != len(stats.scopes):
            return (
                f"per-ticker normalization stats cover {len(stats.scopes)} tickers, but the rows "
                f"dated {fit} hold {len(ids)}"
            )
        groups = [
            (
                scope,
                matrix[arrays.ticker_ids[claimed] == tid],
                stats.mean[k],
                stats.std[k],
                stats.center[k],
                stats.scale[k],
            )
            for k, (scope, tid) in enumerate(zip(stats.scopes, ids, strict=True))
        ]
    robust = np.array([method == ROBUST for method in stats.methods])
    for scope, rows_of, mean, std, center, scale in groups:
        # A feature with NaN or inf among these rows cannot be recomputed; the training preflight
        # names it (non-finite-input), so it is not called leakage here.
        finite = np.isfinite(rows_of).all(axis=0)
        with np.errstate(invalid="ignore", over="ignore"):
            actual_mean, actual_std = rows_of.mean(axis=0), rows_of.std(axis=0)
        replaced = ~np.isfinite(actual_std) | (actual_std <= 1e-12)
        expected_std = np.where(replaced, 1.0, actual_std)
        off_mean = np.abs(mean - actual_mean) > STATS_TOLERANCE * expected_std
        off_std = np.abs(std - expected_std) > STATS_TOLERANCE * expected_std
        bad = finite & (off_mean | off_std)
        if bad.any():
            j = int(np.argmax(bad))
            where = "" if scope == "pooled" else f" for {scope}"
            return (
                f"normalization stats do not match the rows they claim ({fit}){where}: feature "
                f"'{stats.features[j]}' has mean {mean[j]:.6g} and std {std[j]:.6g} in stats.parquet, "
                f"but {actual_mean[j]:.6g} and {expected_std[j]:.6g} recomputed on those rows: they "
                "were fitted on other rows (fitting on all rows leaks validation and test)"
            )
        # What is applied must be fitted on these rows too: mean/std, or median and IQR/1.349
        # (falling back to the std where the IQR is 0) for the robust features.
        with np.errstate(invalid="ignore", over="ignore"):
            q25, median, q75 = np.quantile(rows_of, [0.25, 0.5, 0.75], axis=0)
        spread = (q75 - q25) / IQR_TO_STD
        expected_center = np.where(robust, median, actual_mean)
        expected_scale = np.where(robust & np.isfinite(spread) & (spread > 1e-12), spread, expected_std)
        off = (np.abs(center - expected_center) > STATS_TOLERANCE * expected_scale) | (
            np.abs(scale - expected_scale) > STATS_TOLERANCE * expected_scale
        )
        bad = finite & off
        if bad.any():
            j = int(np.argmax(bad))
            where = "" if scope == "pooled" else f" for {scope}"
            return (
                f"normalization stats do not match the rows they claim ({fit}){where}: feature "
                f"'{stats.features[j]}' ({stats.methods[j]}) is centered at {center[j]:.6g} and scaled "
                f"by {scale[j]:.6g} in stats.parquet, but {expected_center[j]:.6g} and "
                f"{expected_scale[j]:.6g} recomputed on those rows: they were fitted on other rows "
                "(fitting on all rows leaks validation and test)"
            )
    return None


def check_label_contract(arrays: Arrays, config: PipelineConfig) -> dict[str, dict[str, float]]:
    """Class shares per split; refuse a train split missing a class or any split dominated by one."""
    shares = {s: labelling.class_shares(arrays.labels[arrays.ends[s]]) for s in SPLITS}
    problems: list[Diagnosis] = []
    for split in SPLITS:
        if len(arrays.ends[split]) == 0:
            problems.append(
                Diagnosis(
                    "empty-split",
                    f"The {split} split has no complete labelled window.",
                    "Load a longer history or shorten window, horizon or purge.",
                )
            )
    train_labels = arrays.labels[arrays.ends["train"]]
    missing = [CLASS_NAMES[k] for k in range(3) if not (train_labels == k).any()]
    if missing and len(train_labels):
        problems.append(
            Diagnosis(
                "class-missing",
                f"The train split has no '{', '.join(missing)}' windows, so the model cannot learn them.",
                f"Change theta ({config.labels.theta}) or the horizon so every class occurs.",
                {"class_shares": shares},
            )
        )
    for split in SPLITS:
        top = max(shares[split], key=shares[split].get)
        if shares[split][top] > config.labels.max_class_share and len(arrays.ends[split]):
            problems.append(
                Diagnosis(
                    "class-imbalance",
                    f"{shares[split][top]:.1%} of the {split} labels are '{top}' (limit "
                    f"{config.labels.max_class_share:.0%}): the labelling is degenerate.",
                    f"Check theta ({config.labels.theta}) against typical {config.labels.horizon}-day "
                    "returns; a theta far too large or small puts every window in one class.",
                    {"class_shares": shares},
                )
            )
    if problems:
        raise GuardFailure(problems)
    return shares
