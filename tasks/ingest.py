"""Prefect tasks around ingestion: fetch with retries, report per ticker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
from pathlib import Path

from prefect import Task, task
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State

from models.config import SourceConfig
from models.errors import IngestFailed
from models.prices import ingest, sources, store
from models.prices.ingest import IngestRecord


def retry_transient_only(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry failures that may pass (network, HTTP 5xx, rate limit); never bad data or bad symbols."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(error, sources.TransientSourceError)


def ticker_session_key(context: TaskRunContext, parameters: dict) -> str | None:
    """A cache key over what is really stored: the source's identity, the ticker's store file and `end`.

    The key holds the store file's inode, mtime and size, so a deleted, replaced or otherwise changed
    file never matches an earlier run; with no file there is no key, and the ticker is always
    ingested. It holds the whole source configuration (validation limits included) and, for a folder
    source, the sha256 of the ticker's file, so a changed file is read again. An entry whose run
    changed the file is therefore never found again: a cache hit means "this exact file was already
    brought up to `end` from this exact source", and nothing new would be fetched.
    """
    source: SourceConfig = parameters["source"]
    ticker, home = parameters["ticker"], parameters["home"]
    label = sources.source_label(source)
    try:
        stat = os.stat(store.price_path(Path(home), ticker, source=label))
        file = sources.source_file(source, ticker)
    except (OSError, ValueError):
        return None
    identity = "|".join(
        (
            source.model_dump_json(exclude={"tickers"}),
            label,
            str(Path(home).resolve()),
            parameters["end"].isoformat(),
            f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}",
            "" if file is None else file["sha256"],
        )
    )
    return f"ingest-{ticker}-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


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
def check_reachable(source: SourceConfig) -> None:
    """Fail at once, before any ticker, when the source cannot be reached at all (no retries)."""
    sources.check_reachable(source)


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
        raise IngestFailed(
            f"{len(quarantined)} of {len(records)} tickers failed to ingest "
            f"(more than {max_failed_share:.0%}): {ingest.summarize_reasons(quarantined)}. Fix or drop "
            "those tickers, or allow a larger share (--max-failed-share; the flow parameter max_failed_share)",
            [r.as_dict() for r in records],
        )
    if quarantined:
        get_run_logger().warning("quarantined: %s", "; ".join(str(r.reason) for r in quarantined))
    return [r.ticker for r in records if r.status != "quarantined"]


def failure_reason(ticker: str, error: BaseException | object) -> str:
    """The error's message, naming the ticker once: most errors start with it already."""
    message = str(error) or type(error).__name__
    return message if re.match(rf"{re.escape(ticker)}[ :]", message) else f"{ticker}: {message}"


def as_cached(record: IngestRecord) -> IngestRecord:
    """A record replayed from the ingest cache, saying so: this run read and wrote nothing."""
    return dataclasses.replace(
        record,
        status="cached",
        rows_added=0,
        fetched_from=None,
        note="cached: this store file was already brought up to date from this unchanged source; "
        "nothing was read (force=true reads again)",
    )
