"""The dataset: features, labels, chronological splits, train-only stats and a window index.

`build_dataset` writes everything training and evaluation need into one folder:

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
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import PipelineConfig
from models.dataset import labels as labelling
from models.dataset.arrays import INFO_FILE, ROWS_FILE, STATS_FILE, Arrays, DatasetInfo
from models.dataset.audit import audit_leakage, check_label_contract
from models.dataset.features import segmented_features
from models.dataset.normalization import fit_normalization, read_stats, write_stats
from models.dataset.windows import SPLITS, SplitRanges, chronological_split, window_ends
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


def assemble(
    prices: Mapping[str, pd.DataFrame | PriceColumns], config: PipelineConfig
) -> tuple[Arrays, SplitRanges, float, dict[str, object]]:
    """Features and labels per ticker, concatenated; splits over the union of sessions.

    Counted in sessions of the exchange's calendar, not in rows: a ticker's rows are cut at every
    missing session into gap-free runs (see `features.segmented_features`). Features restart their
    warm-up after a gap; a window whose inputs would reach across a gap, or a label whose horizon
    would, is dropped. What was dropped is counted in the returned data-quality record.

    Returns the arrays, the split ranges, the label threshold scale in force (theta or k; with
    `balance_on_train`, the one chosen on the train windows) and the data-quality record.
    """
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
        label_dates = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        dates = columns.date[found.rows]
        for k, (a, b) in enumerate(found.bounds):
            kept = np.flatnonzero(found.segment == k)
            prices_of_run = columns.adj_close[a:b]
            forward[kept] = labelling.forward_returns(columns.adj_close[found.rows[kept]], h)
            if rule.rule == "volatility":
                sigma = labelling.trailing_volatility(prices_of_run, rule.volatility_window)
                unit[kept] = sigma[found.rows[kept] - a] * np.sqrt(h)
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
        parts.append((tid, found.matrix, dates, label_dates, forward, unit, whole, runs))
    if not parts or sum(len(p[2]) for p in parts) == 0:
        raise ValueError("no rows left after the features' warm-up: load a longer history")
    ticker_ids = np.concatenate([np.full(len(p[2]), p[0], dtype=np.int32) for p in parts])
    matrix, dates, label_dates, forward, unit, whole, runs = (
        np.concatenate([p[i] for p in parts]) for i in range(1, 8)
    )
    labelled = np.where(np.isfinite(forward) & np.isfinite(unit) & whole, 0, labelling.UNLABELLED)
    labelled = labelled.astype(np.int8)
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
    every_label = labelling.classify(forward, scale * unit)
    known = np.full(len(every_label), labelling.UNLABELLED, dtype=np.int8)
    same_run = runs[h:] == runs[:-h]  # h rows back is h sessions back only within one run
    known[h:] = np.where(same_run, every_label[:-h], labelling.UNLABELLED)
    # No window ends where its inputs would not be one run; those rows carry no trainable label.
    labels = np.where(whole, every_label, labelling.UNLABELLED).astype(np.int8)
    arrays = Arrays(matrix, ticker_ids, dates, label_dates, labels, forward, known, ends)
    return arrays, ranges, float(scale), quality


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
        robust=config.features.robust,
        robust_clip=config.features.robust_clip,
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
        data={**(lineage or {}), "tickers": used},
        data_quality=quality,
    )
    (out_dir / INFO_FILE).write_text(json.dumps(info.as_dict(), indent=2, default=str))
    return info
