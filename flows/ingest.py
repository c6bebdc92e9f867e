"""The `ingest` flow: fetch the universe's daily prices into the Parquet store.

python -m flows.ingest --source sample --tickers AAA,BBB
python -m flows.ingest --source yfinance --tickers AAPL,MSFT --start 2015-01-02
python -m flows.ingest --source folder --folder ./csv --tickers ACME
python -m flows.ingest --source sample --task-runner dask      # per-ticker work on a local Dask cluster
"""

from __future__ import annotations

import argparse
import json
import sys

from prefect import flow, unmapped
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from flows.common import resolve_home, with_task_runner
from models.config import SourceConfig
from models.ingest import IngestRecord
from tasks.ingest import ingest_ticker, report_ingest, resolve_end


@flow(name="ingest")
def ingest(
    source: SourceConfig = SourceConfig(), home: str | None = None, max_failed_share: float = 0.2
) -> dict:
    """Ingest every ticker of the universe; a failing ticker is quarantined, the rest proceed."""
    home = resolve_home(home)
    end = resolve_end(source)
    futures = ingest_ticker.map(unmapped(source), source.tickers, unmapped(home), unmapped(end))
    by_id = {f.task_run_id: t for f, t in zip(futures, source.tickers, strict=True)}
    records = []
    logger = get_run_logger()
    for done, future in enumerate(as_completed(futures), start=1):
        ticker = by_id[future.task_run_id]
        outcome = future.result(raise_on_failure=False)
        record = (
            outcome
            if isinstance(outcome, IngestRecord)
            else IngestRecord(ticker, "quarantined", reason=str(outcome))
        )
        records.append(record)
        logger.info(
            "ingested %d/%d tickers: %s %s (+%d rows)",
            done,
            len(futures),
            ticker,
            record.status,
            record.rows_added,
        )
    tickers = report_ingest(source, sorted(records, key=lambda r: r.ticker), max_failed_share)
    return {"tickers": tickers, "end": end.isoformat(), "records": [r.as_dict() for r in records]}


def main(argv: list[str] | None = None) -> int:
    from flows.retrain import add_source_arguments, source_from_args

    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser)
    parser.add_argument("--home", help="data home (default: $PIPELINE_HOME or ./.pipeline)")
    parser.add_argument(
        "--max-failed-share",
        type=float,
        default=0.2,
        help="fail the run when more than this share of tickers is quarantined (default 0.2)",
    )
    parser.add_argument(
        "--task-runner", choices=["thread", "dask"], default="thread", help="where per-ticker work runs"
    )
    parser.add_argument("--dask-address", help="with --task-runner dask: a scheduler, e.g. tcp://host:8786")
    args = parser.parse_args(argv)
    on_runner = with_task_runner(ingest, args.task_runner, args.dask_address)
    result = on_runner(source_from_args(args), args.home, args.max_failed_share)
    print(json.dumps(result["records"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
