"""Prefect tasks that decide, cheaply and before any heavy work, whether a run has anything to do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from models.config import PipelineConfig, SourceConfig
from models.dataset.build import fingerprint
from models.errors import IncompleteUniverse
from models.prices import freshness, lineage, sources
from models.registry import Registry, RegistryError


@task
def check_session(source: SourceConfig, home: str, now: dt.datetime | None) -> str | None:
    """Why there is no new exchange session to train on (holiday, weekend, already stored), or None."""
    at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return freshness.no_session_reason(source, Path(home), at)


@task
def fingerprint_dataset(config: PipelineConfig, home: str, tickers: list[str], end: dt.date) -> str:
    """The fingerprint of the dataset this run would build, from the stored prices (no build)."""
    prices = freshness.stored_prices(config.source, Path(home), tickers, end)
    return fingerprint(prices, config, sources.describe(config.source))


@task
def unchanged_champion(config: PipelineConfig, fingerprint: str, registry_root: str) -> int | None:
    """The champion's version when it was trained on this dataset with this config, else None."""
    registry = Registry(registry_root)
    try:
        champion = registry.resolve(f"{config.model.name}@champion")
    except RegistryError:
        return None
    manifest = registry.manifest(champion)
    return champion.version if freshness.unchanged_since(manifest, fingerprint, config) else None


@task
def rejected_before(
    config: PipelineConfig, fingerprint: str, registry_root: str
) -> tuple[int, list[str]] | None:
    """The newest rejected version trained on this dataset with this config, and why it was rejected."""
    registry = Registry(registry_root)
    name = config.model.name
    try:
        manifests = [(v, registry.manifest(f"{name}/{v}")) for v in registry.versions(name)]
    except RegistryError:
        return None
    return freshness.rejected_on_same_data(manifests, fingerprint, config)


@task
def check_full_universe(config: PipelineConfig, quarantined: dict[str, str]) -> None:
    """With gate.require_full_universe, refuse (before any training) a run that lost tickers at ingest."""
    refusal = lineage.incomplete_universe(config.source, quarantined)
    if refusal is not None:
        raise IncompleteUniverse(refusal)


@task
def report_skip(reason: str, hint: str) -> str:
    """Say in the log and in a markdown artifact why this run trained nothing."""
    get_run_logger().info("%s; %s", reason, hint)
    create_markdown_artifact(
        key="retrain-report",
        markdown=f"# Nothing trained\n\n{reason}.\n\n{hint}.\n",
        description=reason,
    )
    return reason
