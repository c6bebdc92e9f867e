"""The nightly `retrain` flow: ingest -> monitor (predictions, scorecard, drift) -> retrain when the
data changed, the champion degraded, or forced: dataset -> guarded training -> evaluation -> publish.

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
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.common import clean_run_scratch, resolve_home, resolve_registry, with_task_runner
from flows.ingest import ingest
from flows.monitor import monitor
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
from tasks.monitoring import predict_night, report_night
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

    After ingest, and whether or not anything is trained, the `monitor` subflow predicts the night
    with the champion in place (a night that began without one is predicted by the version this run
    promotes), scores the predictions whose label matured, summarizes the champion's rolling window
    and checks drift. A degraded champion is retrained even when the data and config are unchanged.
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
    monitored = monitor(config, home, registry_root, tickers, end, quarantined)
    summary_of = monitored["summary"]
    if config.gate.require_full_universe:
        check_full_universe(config, quarantined)
    # Before the dataset build and before TensorFlow is imported: a no-op nightly must stay cheap.
    fingerprint = fingerprint_dataset(config, home, tickers, end)
    unchanged = None if force else unchanged_champion(config, fingerprint, registry_root)
    degraded = bool(summary_of.get("degraded"))
    decision = retrain_decision(config, force, unchanged, summary_of)
    report_night(
        config,
        end,
        monitored["predictions"],
        monitored["scorecard"],
        summary_of,
        monitored["drift"],
        decision,
    )
    if unchanged is not None and not degraded:
        reason = f"no new data since version {unchanged} of {config.model.name} (same data, same config)"
        return {
            "verdict": "skipped",
            "reason": report_skip(reason, FORCE_HINT),
            "model": config.model.name,
            "version": unchanged,
            "fingerprint": fingerprint,
            "quarantined": quarantined,
            "ingest": ingested["records"],
            "monitoring": monitored,
            "decision": decision,
        }
    if unchanged is not None:
        get_run_logger().warning("retraining: %s", decision)
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
    if summary["verdict"] == "promoted" and monitored["predictions"]["status"] == "no_champion":
        # The night began without a champion: its predictions come from the version just promoted.
        monitored = {
            **monitored,
            "predictions": predict_night(config, home, registry_root, tickers, end, quarantined),
        }
    # Each ticker's ingest and the night's monitoring, for the CLI's output.
    summary = {**summary, "ingest": ingested["records"], "monitoring": monitored, "decision": decision}
    if summary["verdict"] != "promoted":
        raise ModelRejected(summary)
    return summary


def retrain_decision(config: PipelineConfig, force: bool, unchanged: int | None, summary: dict) -> str:
    """Why this run trains, or why it does not, in one sentence (the report and the CLI say it)."""
    name = config.model.name
    if force:
        return "forced (--force): trains whatever the data"
    if summary.get("status") == "no_champion":
        return f"{name} has no champion yet: trains"
    if unchanged is None:
        return "new data or config since the champion: trains"
    if summary.get("degraded"):
        reasons = "; ".join(summary.get("reasons") or [])
        return (
            f"the data and config are unchanged since version {unchanged} of {name}, but "
            f"{name}/{summary['version']} is DEGRADED ({reasons}): trains anyway"
        )
    return f"skipped: no new data since version {unchanged} of {name} (same data, same config)"
