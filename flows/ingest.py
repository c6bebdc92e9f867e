"""The `ingest` flow: fetch the universe's daily prices into the Parquet store.

Deployed by prefect.yaml (backfill) and run by `retrain`; `python -m flows.ingest --help` runs it once.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # `python -m flows.ingest`: the command line (flows/cli.py) parses its arguments before Prefect is
    # imported, then imports this module by name to run the flow.
    from flows.cli import ingest_main

    sys.exit(ingest_main())

from prefect import flow, unmapped
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from flows.common import check_source, resolve_home
from models.config import MaxFailedShare, SourceConfig
from models.prices.ingest import IngestRecord
from tasks.ingest import (
    as_cached,
    check_reachable,
    failure_reason,
    ingest_ticker,
    report_ingest,
    resolve_end,
)


@flow(name="ingest")
def ingest(
    source: SourceConfig = SourceConfig(),
    home: str | None = None,
    max_failed_share: MaxFailedShare = 0.2,
    force: bool = False,
) -> dict:
    """Ingest every ticker of the universe; a failing ticker is quarantined, the rest proceed.

    A ticker whose store file this source already brought up to `end` is replayed from Prefect's
    cache and reported `cached`; `force` reads every ticker's source again.
    """
    home = resolve_home(home)
    check_source(source)
    check_reachable(source)
    end = resolve_end(source)
    fetch = ingest_ticker.with_options(refresh_cache=True) if force else ingest_ticker
    futures = fetch.map(unmapped(source), source.tickers, unmapped(home), unmapped(end))
    by_id = {f.task_run_id: t for f, t in zip(futures, source.tickers, strict=True)}
    records = []
    logger = get_run_logger()
    for done, future in enumerate(as_completed(futures), start=1):
        ticker = by_id[future.task_run_id]
        outcome = future.result(raise_on_failure=False)
        if not isinstance(outcome, IngestRecord):
            record = IngestRecord(ticker, "quarantined", reason=failure_reason(ticker, outcome))
        elif future.state.name == "Cached":
            record = as_cached(outcome)
        else:
            record = outcome
        records.append(record)
        logger.info(
            "ingested %d/%d tickers: %s %s (+%d rows)",
            done,
            len(futures),
            ticker,
            record.status,
            record.rows_added,
        )
    records = sorted(records, key=lambda r: r.ticker)
    tickers = report_ingest(source, records, max_failed_share)
    return {
        "tickers": tickers,
        "end": end.isoformat(),
        "records": [r.as_dict() for r in records],
        "quarantined": {r.ticker: r.reason for r in records if r.status == "quarantined"},
    }
