"""Prefect task: build the audited dataset of one run from the price store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.dataset.build import build_dataset as build_from_prices
from models.dataset.build import build_walk_forward
from models.prices import freshness, lineage, sources


@task
def build_dataset(
    config: PipelineConfig,
    home: str,
    tickers: list[str],
    end: dt.date,
    run_dir: str,
    quarantined: dict[str, str] | None = None,
    now: dt.datetime | None = None,
) -> DatasetInfo:
    """Features, labels, splits, train-only stats and window index for the stored prices."""
    prices = freshness.stored_prices(config.source, Path(home), tickers, end)
    at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    data = lineage.data_lineage(config.source, Path(home), prices, end, quarantined or {}, at)
    info = build_from_prices(prices, config, Path(run_dir) / "dataset", sources.describe(config.source), data)
    logger = get_run_logger()
    logger.info(
        "prices %s..%s, %d tickers (store %s)",
        data["first_date"],
        data["last_date"],
        len(info.tickers),
        data["store"]["key"],
    )
    logger.info("dataset %s: windows %s, splits %s", info.fingerprint[:12], info.sizes, info.splits)
    for split, shares in info.class_shares.items():
        logger.info("%s class shares: %s", split, ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    return info


@task
def build_folds(
    config: PipelineConfig,
    home: str,
    tickers: list[str],
    end: dt.date,
    run_dir: str,
    quarantined: dict[str, str] | None = None,
    now: dt.datetime | None = None,
) -> list[DatasetInfo]:
    """One audited dataset per walk-forward fold (own splits, purge, train-only stats), oldest first."""
    prices = freshness.stored_prices(config.source, Path(home), tickers, end)
    at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    data = lineage.data_lineage(config.source, Path(home), prices, end, quarantined or {}, at)
    folds = build_walk_forward(
        prices, config, Path(run_dir) / "dataset", sources.describe(config.source), data
    )
    logger = get_run_logger()
    logger.info(
        "prices %s..%s, %d tickers (store %s)",
        data["first_date"],
        data["last_date"],
        len(folds[0].tickers),
        data["store"]["key"],
    )
    for info in folds:
        logger.info(
            "fold %d: train %s, validation %s, test %s; windows %s",
            info.fold,
            "..".join(info.splits["train"]),
            "..".join(info.splits["validation"]),
            "..".join(info.splits["test"]),
            info.sizes,
        )
    return folds
