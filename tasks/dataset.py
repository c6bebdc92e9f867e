"""Prefect task: build the audited dataset of one run from the price store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.dataset.build import build_dataset as build_from_prices
from models.prices import freshness, sources


@task
def build_dataset(
    config: PipelineConfig, home: str, tickers: list[str], end: dt.date, run_dir: str
) -> DatasetInfo:
    """Features, labels, splits, train-only stats and window index for the stored prices."""
    prices = freshness.stored_prices(Path(home), tickers, config.source.start, end)
    info = build_from_prices(prices, config, Path(run_dir) / "dataset", sources.describe(config.source))
    logger = get_run_logger()
    logger.info("dataset %s: windows %s, splits %s", info.fingerprint[:12], info.sizes, info.splits)
    for split, shares in info.class_shares.items():
        logger.info("%s class shares: %s", split, ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    return info
