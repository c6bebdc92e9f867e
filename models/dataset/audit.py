"""The leakage audit and the label contract: what a dataset must satisfy before anything trains on it.

A violation raises GuardFailure with a diagnosis naming the dates or the class shares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.config import CLASS_NAMES, PipelineConfig
from models.dataset import labels as labelling
from models.dataset.arrays import Arrays
from models.dataset.normalization import Stats
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
