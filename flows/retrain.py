"""The nightly `retrain` flow: ingest -> dataset -> guarded training -> evaluation -> publish.

Deployed by prefect.yaml (nightly, manual); `python -m flows.retrain --help` runs it once from a shell.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # `python -m flows.retrain`: the command line (flows/cli.py) parses its arguments before Prefect is
    # imported, then imports this module by name to run the flow.
    from flows.cli import retrain_main

    sys.exit(retrain_main())

import datetime as dt
from typing import Literal

from prefect import flow
from prefect.futures import wait
from prefect.runtime import flow_run

from flows.common import clean_run_scratch, resolve_home, resolve_registry, with_task_runner
from flows.ingest import ingest
from models import runs
from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.errors import ModelRejected, RejectedBefore
from tasks.dataset import build_dataset, build_folds
from tasks.freshness import (
    check_full_universe,
    check_session,
    fingerprint_dataset,
    rejected_before,
    report_skip,
    unchanged_champion,
)
from tasks.publish import publish, publish_lock, redeliver, require_publish_lock
from tasks.train import evaluate, evaluate_folds, train_fold, train_model

FORCE_HINT = (
    "to retrain anyway: `make demo ARGS=--force`, `python -m flows.retrain --force`, "
    "or `--param force=true` on `prefect deployment run`"
)


@flow(name="walk-forward")
def walk_forward(
    folds: list[DatasetInfo], config: PipelineConfig, run_dir: str, parallel: bool = False
) -> list[dict]:
    """Train and predict every fold as its own task.

    With `parallel` (a Dask task runner) the folds are submitted and run on the workers, one process
    each. Without it they run one after another in this process: two TensorFlow trainings in threads
    of one process share its global random state (so neither is reproducible) and its cores.
    """
    if not parallel:
        return [train_fold(info.fold, info, config, run_dir) for info in folds]
    futures = [train_fold.submit(info.fold, info, config, run_dir) for info in folds]
    wait(futures)
    return [future.result() for future in futures]


# Scratch: removed when the run completes, kept for inspection when it fails or crashes.
@flow(
    name="retrain",
    on_completion=[clean_run_scratch],
    on_failure=[clean_run_scratch],
    on_crashed=[clean_run_scratch],
)
def retrain(
    config: PipelineConfig = PipelineConfig(),
    home: str | None = None,
    force: bool = False,
    skip_if_no_session: bool = False,
    now: dt.datetime | None = None,
    task_runner: Literal["thread", "dask"] = "thread",
    dask_address: str | None = None,
) -> dict:
    """Retrain the direction model on fresh prices and publish it; fails when it is rejected.

    Skips (and completes) when `skip_if_no_session` and no exchange session closed since the last
    run, or when the champion was trained on exactly this data and config, unless `force`. Fails
    without training when a rejected version was trained on exactly this data and config (unless
    `force`), and when ingest quarantined a ticker while `config.gate.require_full_universe` is on.
    `force` also reads every ticker's source again instead of replaying the ingest cache.
    `now` pins the clock for the session check and the data's age; `task_runner="dask"` fans the
    per-ticker ingest and the walk-forward folds out on Dask.
    """
    home = resolve_home(home)
    run_dir = str(runs.run_dir(home, flow_run.get_id()))
    registry_root = resolve_registry(home)
    require_publish_lock()
    # What an API outage kept from Prefect (events, artifacts) of earlier versions, before anything new.
    redeliver(registry_root, config.model.name)
    if skip_if_no_session and not force:
        reason = check_session(config.source, home, now)
        if reason is not None:
            return {"verdict": "skipped", "reason": report_skip(reason, FORCE_HINT)}
    ingested = with_task_runner(ingest, task_runner, dask_address)(config.source, home, force=force)
    tickers, end = ingested["tickers"], dt.date.fromisoformat(ingested["end"])
    quarantined = ingested["quarantined"]
    if config.gate.require_full_universe:
        check_full_universe(config, quarantined)
    # Before the dataset build and before TensorFlow is imported: a no-op nightly must stay cheap.
    fingerprint = fingerprint_dataset(config, home, tickers, end)
    unchanged = None if force else unchanged_champion(config, fingerprint, registry_root)
    if unchanged is not None:
        reason = f"no new data since version {unchanged} of {config.model.name} (same data, same config)"
        return {
            "verdict": "skipped",
            "reason": report_skip(reason, FORCE_HINT),
            "model": config.model.name,
            "version": unchanged,
            "fingerprint": fingerprint,
            "quarantined": quarantined,
            "ingest": ingested["records"],
        }
    rejected = None if force else rejected_before(config, fingerprint, registry_root)
    if rejected is not None:
        version, reasons = rejected
        error = RejectedBefore(config.model.name, version, reasons, FORCE_HINT, quarantined)
        report_skip(error.reason, FORCE_HINT)
        raise error
    if config.evaluation.scheme == "holdout":
        info = build_dataset(config, home, tickers, end, run_dir, quarantined, now)
        trained = train_model(info, config, run_dir)
    else:
        folds = build_folds(config, home, tickers, end, run_dir, quarantined, now)
        records = with_task_runner(walk_forward, task_runner, dask_address)(
            folds, config, run_dir, parallel=task_runner != "thread"
        )
        # The published model is the most recent fold's, with the stats its own training used.
        info, trained = folds[-1], records[-1]["training"]
    with publish_lock():  # one run at a time compares against the champion and publishes
        if config.evaluation.scheme == "holdout":
            evaluation = evaluate(info, trained, config, registry_root)
        else:
            evaluation = evaluate_folds(records, folds, config, registry_root, run_dir)
        summary = publish(config, info, trained, evaluation, registry_root, run_dir, home=home)
    summary = {**summary, "ingest": ingested["records"]}  # each ticker's ingest, for the CLI's table
    if summary["verdict"] != "promoted":
        raise ModelRejected(summary)
    return summary
