"""The dataset: features, labels, chronological splits, train-only stats and a window index.

`build_dataset` writes everything training and evaluation need into one folder:

A walk-forward build (`build_walk_forward`) writes `rows.npz` once (the rows no split changes) and
one such folder per fold, `fold-<k>/`, holding `split.npz` (labels and window ends), its own
`stats.parquet` and `dataset.json`.

- `rows.npz`      raw feature matrix (rows grouped by ticker, sorted by date), dates, labels,
                  forward returns, the label known at each day (for the persistence baseline),
                  and the window end rows of each split;
- `stats.parquet` normalization stats fitted on the train split only (see models.dataset.normalization);
- `dataset.json`  the DatasetInfo below.

Before anything is written the leakage audit and the label contract run; a violation raises
GuardFailure with a diagnosis naming the dates or the class shares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import PipelineConfig
from models.dataset import labels as labelling
from models.dataset.arrays import INFO_FILE, ROWS_FILE, SPLIT_FILE, STATS_FILE, Arrays, DatasetInfo
from models.dataset.audit import audit_leakage, check_label_contract
from models.dataset.features import segmented_features
from models.dataset.normalization import fit_normalization, read_stats, write_stats
from models.dataset.windows import (
    SPLITS,
    SplitRanges,
    chronological_split,
    walk_forward_splits,
    window_ends,
)
from models.diagnosis import GuardFailure
from models.prices.lineage import used_rows
from models.prices.store import PRICE_COLUMNS, PriceColumns


def fingerprint(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig, source: dict
) -> str:
    """Content hash of the price rows used (tickers, dates, values) plus every setting that shapes
    the dataset. The requested start/end are not hashed: the rows they select are."""
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


@dataclass(frozen=True)
class Rows:
    """Features and forward returns of every ticker, concatenated: what no split changes.

    Counted in sessions of the exchange's calendar, not in rows: a ticker's rows are cut at every
    missing session into gap-free runs (see `features.segmented_features`). Features restart their
    warm-up after a gap; a window whose inputs would reach across a gap, or a label whose horizon
    would, is dropped (`labelled` is UNLABELLED there), and `quality` counts what was dropped.
    """

    matrix: np.ndarray
    ticker_ids: np.ndarray
    dates: np.ndarray
    label_dates: np.ndarray
    forward: np.ndarray
    unit: np.ndarray  # the label threshold's unit at each row (1, or sigma_t * sqrt(h))
    volatility: np.ndarray  # trailing volatility known at each row
    labelled: np.ndarray  # 0 where a label exists and a whole window ends, UNLABELLED where not
    whole: np.ndarray  # a window of `window` sessions ending here lies in one gap-free run
    runs: np.ndarray  # the gap-free run of each row (unique across tickers)
    quality: dict[str, object]

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(np.unique(self.dates))


def assemble_rows(prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig) -> Rows:
    """Features, forward returns and trailing volatility per ticker (sorted), concatenated, each
    computed within the ticker's gap-free runs of sessions."""
    names = config.features.names
    rule = config.labels
    h, w = rule.horizon, config.window.length
    parts = []
    quality = {
        "policy": "windows and labels never span a missing session: each gap-free run is used on its "
        "own; zero volume is missing volume (the last traded volume is carried)",
        "missing_sessions": 0,
        "rows_dropped_after_gaps": 0,
        "windows_dropped_at_gaps": 0,
        "labels_dropped_at_gaps": 0,
        "zero_volume_sessions": 0,
    }
    run_offset = 0
    for tid, ticker in enumerate(sorted(prices)):
        frame = prices[ticker]
        if isinstance(frame, PriceColumns):
            columns = frame  # from the store: sorted and validated
        else:
            columns = PriceColumns.from_frame(frame.sort_values("date", kind="stable"))
        try:
            found = segmented_features(columns, names, config.source.exchange)
        except ValueError as err:
            raise ValueError(f"{ticker}: {err}") from err
        n = len(found.rows)
        forward = np.full(n, np.nan)
        unit = np.ones(n)
        sigma = np.full(n, np.nan)
        label_dates = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        dates = columns.date[found.rows]
        for k, (a, b) in enumerate(found.bounds):
            kept = np.flatnonzero(found.segment == k)
            prices_of_run = columns.adj_close[a:b]
            forward[kept] = labelling.forward_returns(columns.adj_close[found.rows[kept]], h)
            sigma[kept] = labelling.trailing_volatility(prices_of_run, rule.volatility_window)[
                found.rows[kept] - a
            ]
            if rule.rule == "volatility":
                unit[kept] = sigma[kept] * np.sqrt(h)
            label_dates[kept[: max(len(kept) - h, 0)]] = dates[kept[h:]]
            if k < len(found.bounds) - 1:  # the horizon of the run's last h rows reaches past a gap
                quality["labels_dropped_at_gaps"] += min(h, len(kept))
            if k > 0:
                quality["rows_dropped_after_gaps"] += (b - a) - len(kept)
        known = np.isfinite(forward) & np.isfinite(unit)
        # A window ends only where its inputs are one run: w consecutive sessions.
        whole = found.position >= w - 1
        quality["windows_dropped_at_gaps"] += int((known & ~whole & (found.segment > 0)).sum())
        quality["missing_sessions"] += found.missing_sessions
        quality["zero_volume_sessions"] += int((np.asarray(columns.volume) == 0).sum())
        runs = found.segment + run_offset
        run_offset += len(found.bounds)
        parts.append((tid, found.matrix, dates, label_dates, forward, unit, sigma, whole, runs))
    if not parts or sum(len(p[2]) for p in parts) == 0:
        raise ValueError("no rows left after the features' warm-up: load a longer history")
    ticker_ids = np.concatenate([np.full(len(p[2]), p[0], dtype=np.int32) for p in parts])
    matrix, dates, label_dates, forward, unit, sigma, whole, runs = (
        np.concatenate([p[i] for p in parts]) for i in range(1, 9)
    )
    labelled = np.where(np.isfinite(forward) & np.isfinite(unit) & whole, 0, labelling.UNLABELLED)
    return Rows(
        matrix,
        ticker_ids,
        dates,
        label_dates,
        forward,
        unit,
        sigma,
        labelled.astype(np.int8),
        whole,
        runs,
        quality,
    )


def label_split(rows: Rows, ranges: SplitRanges, config: PipelineConfig) -> tuple[Arrays, float]:
    """Window ends of each split and the labels under the scale in force for these splits.

    With `balance_on_train` the scale is chosen on this split's train windows only.
    """
    rule = config.labels
    h = rule.horizon
    ends = window_ends(
        rows.ticker_ids, rows.dates, rows.label_dates, rows.labelled, config.window.length, ranges
    )
    scale = rule.theta if rule.rule == "fixed" else rule.k
    if rule.balance_on_train:
        # Chosen on train windows only; validation and test are labelled with the same scale.
        scale = labelling.balancing_scale(rows.forward[ends["train"]], rows.unit[ends["train"]])
    every_label = labelling.classify(rows.forward, scale * rows.unit)
    known = np.full(len(every_label), labelling.UNLABELLED, dtype=np.int8)
    same_run = rows.runs[h:] == rows.runs[:-h]  # h rows back is h sessions back only within one run
    known[h:] = np.where(same_run, every_label[:-h], labelling.UNLABELLED)
    # No window ends where its inputs would not be one run; those rows carry no trainable label.
    labels = np.where(rows.whole, every_label, labelling.UNLABELLED).astype(np.int8)
    arrays = Arrays(
        rows.matrix,
        rows.ticker_ids,
        rows.dates,
        rows.label_dates,
        labels,
        rows.forward,
        known,
        ends,
        rows.volatility,
    )
    return arrays, float(scale)


def assemble(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig
) -> tuple[Arrays, SplitRanges, float, dict[str, object]]:
    """Features and labels per ticker, concatenated; one holdout split over the union of sessions.

    Returns the arrays, the split ranges, the label threshold scale in force (theta or k; with
    `balance_on_train`, the one chosen on the train windows) and the data-quality record.
    """
    rows = assemble_rows(prices, config)
    ranges = chronological_split(
        rows.sessions,
        config.split.train_fraction,
        config.split.validation_fraction,
        config.purge_sessions + config.split.embargo_sessions,
    )
    arrays, scale = label_split(rows, ranges, config)
    return arrays, ranges, scale, rows.quality


def train_rows(arrays: Arrays, ranges: SplitRanges) -> np.ndarray:
    lo, hi = (np.datetime64(d, "ns") for d in ranges.train)
    return (arrays.dates >= lo) & (arrays.dates <= hi)


def build_dataset(
    prices: Mapping[str, pd.DataFrame | PriceColumns],
    config: PipelineConfig,
    out_dir: Path,
    source: dict,
    lineage: dict | None = None,
) -> DatasetInfo:
    """Build, audit and write the dataset for one run into `out_dir`.

    `lineage` (models.prices.lineage.data_lineage) is recorded as `DatasetInfo.data`; the per-ticker
    rows used are always computed here from `prices`, whatever the caller passed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint(prices, config, source)
    given = (lineage or {}).get("tickers", {})
    used = {t: {**given.get(t, {}), **rows} for t, rows in used_rows(prices).items()}
    arrays, ranges, scale, quality = assemble(prices, config)
    data = {**(lineage or {}), "tickers": used}
    return _write_split(
        arrays, ranges, scale, config, out_dir, print_, tuple(sorted(prices)), data=data, quality=quality
    )


def build_walk_forward(
    prices: Mapping[str, pd.DataFrame | PriceColumns],
    config: PipelineConfig,
    out_dir: Path,
    source: dict,
    lineage: dict | None = None,
) -> list[DatasetInfo]:
    """Build, audit and write one dataset per walk-forward fold into `out_dir/fold-<k>`, oldest first.

    Each fold has its own split boundaries with purge + embargo, its own normalization stats fitted
    on its own train rows (`fold-<k>/stats.parquet`), its own leakage audit and label contract. The
    feature rows, which no split changes, are written once (`out_dir/rows.npz`). `lineage` is recorded
    as every fold's `DatasetInfo.data`, as in `build_dataset`.

    Raises:
        GuardFailure: a fold leaks or breaks the label contract (the message names the fold).
        ValueError: the history is too short for the folds.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print_ = fingerprint(prices, config, source)
    given = (lineage or {}).get("tickers", {})
    data = {
        **(lineage or {}),
        "tickers": {t: {**given.get(t, {}), **r} for t, r in used_rows(prices).items()},
    }
    rows = assemble_rows(prices, config)
    evaluation = config.evaluation
    folds = walk_forward_splits(
        rows.sessions,
        evaluation.folds,
        evaluation.test_fraction,
        config.split.validation_fraction,
        config.purge_sessions + config.split.embargo_sessions,
        evaluation.train_window,
    )
    np.savez(
        out_dir / ROWS_FILE,
        matrix=rows.matrix,
        ticker_ids=rows.ticker_ids,
        dates=rows.dates,
        label_dates=rows.label_dates,
        forward_returns=rows.forward,
        volatility=rows.volatility,
    )
    infos = []
    for k, ranges in enumerate(folds):
        arrays, scale = label_split(rows, ranges, config)
        try:
            infos.append(
                _write_split(
                    arrays,
                    ranges,
                    scale,
                    config,
                    out_dir / f"fold-{k}",
                    print_,
                    tuple(sorted(prices)),
                    k,
                    data=data,
                    quality=rows.quality,
                )
            )
        except GuardFailure as err:
            where = ", ".join(f"{split} {a}..{b}" for split, (a, b) in ranges.as_dict().items())
            raise GuardFailure(
                [
                    replace(d, message=f"{d.message} (walk-forward fold-{k} of {len(folds)}: {where})")
                    for d in err.diagnoses
                ]
            ) from err
    return infos


def _write_split(
    arrays: Arrays,
    ranges: SplitRanges,
    scale: float,
    config: PipelineConfig,
    out_dir: Path,
    print_: str,
    tickers: tuple[str, ...],
    fold: int | None = None,
    data: dict | None = None,
    quality: dict | None = None,
) -> DatasetInfo:
    """Fit train-only stats, audit, check the label contract and write one split's dataset folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = train_rows(arrays, ranges)
    fit_dates = arrays.dates[rows]
    per_ticker = config.features.normalization == "per_ticker"
    names = np.asarray(tickers)
    stats = fit_normalization(
        arrays.matrix[rows],
        config.features.names,
        {
            "fit_start": str(pd.Timestamp(fit_dates.min()).date()),
            "fit_end": str(pd.Timestamp(fit_dates.max()).date()),
            "splits": ranges.as_dict(),
            "fingerprint": print_,
            "scope": config.features.normalization,
            **({} if fold is None else {"fold": fold}),
        },
        names[arrays.ticker_ids[rows]] if per_ticker else None,
        robust=config.features.robust,
        robust_clip=config.features.robust_clip,
    )
    stats_path = write_stats(stats, out_dir / STATS_FILE)
    audit = audit_leakage(arrays, ranges, read_stats(stats_path), config)
    shares = check_label_contract(arrays, config)
    split_columns = {
        "labels": arrays.labels,
        "known_label": arrays.known_label,
        **{f"ends_{s}": arrays.ends[s] for s in SPLITS},
    }
    if fold is None:  # a holdout dataset keeps every array in one file
        np.savez(
            out_dir / ROWS_FILE,
            matrix=arrays.matrix,
            ticker_ids=arrays.ticker_ids,
            dates=arrays.dates,
            label_dates=arrays.label_dates,
            forward_returns=arrays.forward_returns,
            volatility=arrays.volatility,
            **split_columns,
        )
    else:
        np.savez(out_dir / SPLIT_FILE, **split_columns)
    info = DatasetInfo(
        path=str(out_dir),
        fingerprint=print_,
        tickers=tickers,
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
        data=data or {},
        data_quality=quality or {},
        fold=fold,
    )
    (out_dir / INFO_FILE).write_text(json.dumps(info.as_dict(), indent=2, default=str))
    return info
