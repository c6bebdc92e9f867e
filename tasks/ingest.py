"""Prefect tasks around ingestion: fetch with retries, report per ticker."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import Task, task
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State

from models.config import SourceConfig
from models.prices import ingest, sources
from models.prices.ingest import IngestRecord


def retry_transient_only(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry failures that may pass (network, HTTP 5xx, rate limit); never bad data or bad symbols."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(error, sources.TransientSourceError)


def ticker_session_key(context: TaskRunContext, parameters: dict) -> str:
    """One cache entry per (source, ticker, last session, store): a retried run refetches nothing it stored."""
    source: SourceConfig = parameters["source"]
    return "-".join(
        (
            "ingest",
            sources.source_label(source),
            source.start.isoformat(),
            parameters["ticker"],
            parameters["end"].isoformat(),
            parameters["home"],
        )
    )


@task(
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient_only,
    task_run_name="ingest-{ticker}",
    cache_key_fn=ticker_session_key,
    # A day covers a retried or re-triggered nightly; a restatement is caught by the next session's run.
    cache_expiration=dt.timedelta(days=1),
)
def ingest_ticker(source: SourceConfig, ticker: str, home: str, end: dt.date) -> IngestRecord:
    """Fetch new daily prices for one ticker and merge them into the store."""
    return ingest.ingest_ticker(source, ticker, Path(home), end)


@task
def resolve_end(source: SourceConfig) -> dt.date:
    """The last session to load: the configured end or the last closed session."""
    return ingest.resolve_end(source)


@task
def report_ingest(source: SourceConfig, records: list[IngestRecord], max_failed_share: float) -> list[str]:
    """Publish the ingest table; fail when too much of the universe is quarantined."""
    create_table_artifact(
        key="ingest-report",
        table=[r.as_dict() for r in records],
        description=f"Ingest from {sources.source_label(source)}",
    )
    quarantined = [r for r in records if r.status == "quarantined"]
    if len(quarantined) > max_failed_share * len(records):
        reasons = "; ".join(f"{r.ticker}: {r.reason}" for r in quarantined)
        raise RuntimeError(
            f"{len(quarantined)} of {len(records)} tickers failed to ingest "
            f"(more than {max_failed_share:.0%}): {reasons}"
        )
    if quarantined:
        get_run_logger().warning("quarantined: %s", ", ".join(r.ticker for r in quarantined))
    return [r.ticker for r in records if r.status != "quarantined"]
