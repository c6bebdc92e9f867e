"""The dataset: features, labels, chronological splits, train-only stats and a window index.

`build_dataset` writes everything training and evaluation need into one folder:

- `rows.npz`      raw feature matrix (rows grouped by ticker, sorted by date), dates, labels,
                  forward returns, the label known at each day (for the persistence baseline),
                  and the window end rows of each split;
- `stats.parquet` normalization stats fitted on the train split only (see models.normalization);
- `dataset.json`  the DatasetInfo below.

Before anything is written the leakage audit and the label contract run; a violation raises
GuardFailure with a diagnosis naming the dates or the class shares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models import labels as labelling
from models.config import CLASS_NAMES, PipelineConfig
from models.diagnosis import Diagnosis, GuardFailure
from models.features import PriceColumns, feature_matrix
from models.normalization import Stats, apply_to_rows, fit_normalization, read_stats, write_stats
from models.store import PRICE_COLUMNS
from models.windows import SPLITS, SplitRanges, chronological_split, window_ends

ROWS_FILE = "rows.npz"
STATS_FILE = "stats.parquet"
INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class DatasetInfo:
    """A small, JSON-able description of a built dataset (what Prefect tasks pass around)."""

    path: str
    fingerprint: str
    tickers: tuple[str, ...]
    features: tuple[str, ...]
    window: int
    horizon: int
    theta: float  # the threshold scale in force: theta (rule fixed) or k (rule volatility)
    label_rule: dict[str, object]
    splits: dict[str, list[str]]
    sizes: dict[str, int]
    class_shares: dict[str, dict[str, float]]
    audit: dict[str, object]
    std_replaced: tuple[str, ...]

    @property
    def stats_path(self) -> Path:
        return Path(self.path) / STATS_FILE

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Arrays:
    """The in-memory dataset: one raw feature matrix and indexes into it."""

    matrix: np.ndarray  # [rows, features] float64, raw (not normalized)
    ticker_ids: np.ndarray
    dates: np.ndarray  # datetime64[ns]
    label_dates: np.ndarray  # datetime64[ns], NaT where unlabelled
    labels: np.ndarray  # int8, -1 where unlabelled
    forward_returns: np.ndarray
    known_label: np.ndarray  # int8: label of the window whose horizon ended at this day, or -1
    ends: dict[str, np.ndarray]


def fingerprint(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig, source: dict
) -> str:
    """Content hash of the price values used plus every setting that shapes the dataset."""
    digest = hashlib.sha256()
    settings = {
        "source": source,
        "features": config.features.model_dump(mode="json"),
        "split": config.split.model_dump(mode="json"),
        "labels": config.labels.model_dump(mode="json"),
        "window": config.window.model_dump(mode="json"),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for ticker in sorted(prices):
        frame = prices[ticker]
        digest.update(ticker.encode())
        digest.update(np.asarray(frame["date"], dtype="datetime64[ns]").tobytes())
        for column in PRICE_COLUMNS:
            digest.update(np.asarray(frame[column], dtype=np.float64).tobytes())
    return digest.hexdigest()


def assemble(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig
) -> tuple[Arrays, SplitRanges, float]:
    """Features and labels per ticker, concatenated; splits over the union of sessions.

    Returns the arrays, the split ranges and the label threshold scale in force (theta or k; with
    `balance_on_train`, the one chosen on the train windows).
    """
    names = config.features.names
    rule = config.labels
    h = rule.horizon
    parts = []
    for tid, ticker in enumerate(sorted(prices)):
        frame = prices[ticker]
        if isinstance(frame, PriceColumns):
            columns = frame  # from the store: sorted and validated
        else:
            columns = PriceColumns.from_frame(frame.sort_values("date", kind="stable"))
        try:
            first, feats = feature_matrix(columns, names)  # rows first.. of the frame (warm-up dropped)
        except ValueError as err:
            raise ValueError(f"{ticker}: {err}") from err
        forward = labelling.forward_returns(columns.adj_close[first:], h)
        if rule.rule == "volatility":
            sigma = labelling.trailing_volatility(columns.adj_close, rule.volatility_window)
            unit = sigma[first:] * np.sqrt(h)
        else:
            unit = np.ones(len(feats))
        dates = columns.date[first:]
        label_dates = np.full(len(dates), np.datetime64("NaT"), dtype="datetime64[ns]")
        label_dates[: max(len(dates) - h, 0)] = dates[h:]
        parts.append((tid, feats, dates, label_dates, forward, unit))
    if not parts or sum(len(p[2]) for p in parts) == 0:
        raise ValueError("no rows left after the features' warm-up: load a longer history")
    ticker_ids = np.concatenate([np.full(len(p[2]), p[0], dtype=np.int32) for p in parts])
    matrix, dates, label_dates, forward, unit = (np.concatenate([p[i] for p in parts]) for i in range(1, 6))
    labelled = np.where(np.isfinite(forward) & np.isfinite(unit), 0, labelling.UNLABELLED).astype(np.int8)
    sessions = pd.DatetimeIndex(np.unique(dates))
    ranges = chronological_split(
        sessions,
        config.split.train_fraction,
        config.split.validation_fraction,
        config.purge_sessions + config.split.embargo_sessions,
    )
    ends = window_ends(ticker_ids, dates, label_dates, labelled, config.window.length, ranges)
    scale = rule.theta if rule.rule == "fixed" else rule.k
    if rule.balance_on_train:
        # Chosen on train windows only; validation and test are labelled with the same scale.
        scale = labelling.balancing_scale(forward[ends["train"]], unit[ends["train"]])
    labels = labelling.classify(forward, scale * unit)
    known = np.full(len(labels), labelling.UNLABELLED, dtype=np.int8)
    same_ticker = ticker_ids[h:] == ticker_ids[:-h]
    known[h:] = np.where(same_ticker, labels[:-h], labelling.UNLABELLED)
    arrays = Arrays(matrix, ticker_ids, dates, label_dates, labels, forward, known, ends)
    return arrays, ranges, float(scale)


def train_rows(arrays: Arrays, ranges: SplitRanges) -> np.ndarray:
    lo, hi = (np.datetime64(d, "ns") for d in ranges.train)
    return (arrays.dates >= lo) & (arrays.dates <= hi)


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


def build_dataset(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig, out_dir: Path, source: dict
) -> DatasetInfo:
    """Build, audit and write the dataset for one run into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint(prices, config, source)
    arrays, ranges, scale = assemble(prices, config)
    rows = train_rows(arrays, ranges)
    fit_dates = arrays.dates[rows]
    per_ticker = config.features.normalization == "per_ticker"
    tickers = np.asarray(sorted(prices))
    stats = fit_normalization(
        arrays.matrix[rows],
        config.features.names,
        {
            "fit_start": str(pd.Timestamp(fit_dates.min()).date()),
            "fit_end": str(pd.Timestamp(fit_dates.max()).date()),
            "splits": ranges.as_dict(),
            "fingerprint": print_,
            "scope": config.features.normalization,
        },
        tickers[arrays.ticker_ids[rows]] if per_ticker else None,
    )
    stats_path = write_stats(stats, out_dir / STATS_FILE)
    audit = audit_leakage(arrays, ranges, read_stats(stats_path), config)
    shares = check_label_contract(arrays, config)
    np.savez(
        out_dir / ROWS_FILE,
        matrix=arrays.matrix,
        ticker_ids=arrays.ticker_ids,
        dates=arrays.dates,
        label_dates=arrays.label_dates,
        labels=arrays.labels,
        forward_returns=arrays.forward_returns,
        known_label=arrays.known_label,
        **{f"ends_{s}": arrays.ends[s] for s in SPLITS},
    )
    info = DatasetInfo(
        path=str(out_dir),
        fingerprint=print_,
        tickers=tuple(sorted(prices)),
        features=config.features.names,
        window=config.window.length,
        horizon=config.labels.horizon,
        theta=scale,
        label_rule={
            "rule": config.labels.rule,
            "scale": scale,
            "balanced_on_train": config.labels.balance_on_train,
            "volatility_window": config.labels.volatility_window
            if config.labels.rule == "volatility"
            else None,
            "horizon": config.labels.horizon,
        },
        splits=ranges.as_dict(),
        sizes={s: int(len(arrays.ends[s])) for s in SPLITS},
        class_shares=shares,
        audit=audit,
        std_replaced=stats.std_replaced,
    )
    (out_dir / INFO_FILE).write_text(json.dumps(info.as_dict(), indent=2, default=str))
    return info


def normalized_matrix(dataset: DatasetInfo, arrays: Arrays, stats: Stats | None = None) -> np.ndarray:
    """The dataset's matrix normalized with the stats read back from its stats.parquet (never
    recomputed here), so training and evaluation use the very numbers consumers get."""
    stats = stats or read_stats(dataset.stats_path)
    if stats.features != dataset.features:
        raise ValueError(f"stats features {stats.features} differ from dataset features {dataset.features}")
    return apply_to_rows(stats, arrays.matrix, arrays.ticker_ids, dataset.tickers)


def load_arrays(path: Path) -> Arrays:
    with np.load(Path(path) / ROWS_FILE) as z:
        return Arrays(
            matrix=z["matrix"],
            ticker_ids=z["ticker_ids"],
            dates=z["dates"],
            label_dates=z["label_dates"],
            labels=z["labels"],
            forward_returns=z["forward_returns"],
            known_label=z["known_label"],
            ends={s: z[f"ends_{s}"] for s in SPLITS},
        )


def load_info(path: Path) -> DatasetInfo:
    raw = json.loads((Path(path) / INFO_FILE).read_text())
    raw["tickers"] = tuple(raw["tickers"])
    raw["features"] = tuple(raw["features"])
    raw["std_replaced"] = tuple(raw["std_replaced"])
    return DatasetInfo(**raw)
