"""The nightly `retrain` flow: ingest -> dataset -> guarded training -> evaluation -> publish.

Examples:
    python -m flows.retrain                                  # sample market (synthetic), defaults
    python -m flows.retrain --variant noise                  # negative control: must not be promoted
    python -m flows.retrain --source yfinance --tickers SPY,QQQ,IWM --start 2012-01-03
    python -m flows.retrain --source folder --folder ./prices --tickers ACME,INIT
    python -m flows.retrain --window 20 --horizon 5 --theta 0.015 --epochs 10 --home /data/pipeline
    python -m flows.retrain --force                          # retrain although nothing changed
    python -m flows.retrain --task-runner dask --dask-address tcp://scheduler:8786

Without PREFECT_API_URL, Prefect starts a temporary local API for the run.
A run whose data and config equal the champion's trains nothing and says so (see --force).
Exit status: 0 promoted or nothing to do, 1 rejected or failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.runtime import flow_run

from flows.common import quiet_tensorflow, resolve_home, resolve_registry, with_task_runner
from flows.ingest import ingest
from models.config import PipelineConfig, SourceConfig
from models.errors import ModelRejected
from tasks.dataset import build_dataset
from tasks.freshness import check_session, fingerprint_dataset, report_skip, unchanged_champion
from tasks.publish import publish
from tasks.train import evaluate, train_model

FORCE_HINT = (
    "to retrain anyway: `make demo ARGS=--force`, `python -m flows.retrain --force`, "
    "or `--param force=true` on `prefect deployment run`"
)


@flow(name="retrain")
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
    run, or when the champion was trained on exactly this data and config, unless `force`.
    `now` pins the clock for the session check; `task_runner="dask"` fans ingest out on Dask.
    """
    home = resolve_home(home)
    run_dir = str(Path(home) / "runs" / str(flow_run.get_id() or "local"))
    registry_root = resolve_registry(home)
    if skip_if_no_session and not force:
        reason = check_session(config.source, home, now)
        if reason is not None:
            return {"verdict": "skipped", "reason": report_skip(reason, FORCE_HINT)}
    ingested = with_task_runner(ingest, task_runner, dask_address)(config.source, home)
    tickers, end = ingested["tickers"], dt.date.fromisoformat(ingested["end"])
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
        }
    info = build_dataset(config, home, tickers, end, run_dir)
    trained = train_model(info, config, run_dir)
    evaluation = evaluate(info, trained, config, registry_root)
    summary = publish(config, info, trained, evaluation, registry_root, run_dir, home=home)
    if summary["verdict"] != "promoted":
        raise ModelRejected(summary)
    return summary


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data source")
    g.add_argument(
        "--source",
        choices=["sample", "yfinance", "folder"],
        help="price source (default: sample, the synthetic market, or the --config file's)",
    )
    g.add_argument("--tickers", help="comma-separated universe, e.g. AAA,BBB or SPY,QQQ")
    g.add_argument("--start", type=dt.date.fromisoformat, help="first date, YYYY-MM-DD")
    g.add_argument("--end", type=dt.date.fromisoformat, help="last date (default: last closed session)")
    g.add_argument("--folder", help="for --source folder: directory of <TICKER>.csv|parquet")
    g.add_argument("--variant", choices=["signal", "noise"], help="sample market variant (default signal)")
    g.add_argument("--seed", type=int, help="sample market seed")


def source_from_args(args: argparse.Namespace) -> SourceConfig:
    values: dict = {} if args.source is None else {"kind": args.source}
    if args.tickers:
        values["tickers"] = tuple(t for t in args.tickers.split(",") if t)
    for key, name in (
        ("start", "start"),
        ("end", "end"),
        ("folder", "folder"),
        ("sample_variant", "variant"),
        ("sample_seed", "seed"),
    ):
        if getattr(args, name) is not None:
            values[key] = getattr(args, name)
    return SourceConfig(**values)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    base = (
        PipelineConfig.model_validate_json(Path(args.config).read_text()) if args.config else PipelineConfig()
    )
    changes = base.model_dump()
    changes["source"] = {
        **changes["source"],
        **source_from_args(args).model_dump(exclude_unset=True),
    }
    for section, key, value in (
        ("window", "length", args.window),
        ("labels", "horizon", args.horizon),
        ("labels", "theta", args.theta),
        ("training", "epochs", args.epochs),
        ("model", "name", args.model_name),
    ):
        if value is not None:
            changes[section][key] = value
    return PipelineConfig.model_validate(changes)


def print_summary(summary: dict) -> None:
    m = summary["metrics"]
    print()
    print(f"{'bundle:':<13}{summary['path']}")
    print(f"{'version:':<13}{summary['model']}/{summary['version']}")
    if summary.get("synthetic_data"):
        print(f"{'data:':<13}SYNTHETIC sample market (not real prices)")
    print(f"{'test:':<13}accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}")
    for name, b in summary["baselines"].items():  # majority first
        print(f"{name + ':':<13}accuracy {b['accuracy']:.4f}  balanced accuracy {b['balanced_accuracy']:.4f}")
    print(f"{'verdict:':<13}{summary['verdict'].upper()}")
    for reason in summary.get("reasons", []):
        print(f"  - {reason}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.retrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser)
    g = parser.add_argument_group("dataset and model")
    g.add_argument("--window", type=int, help="sessions per input window (default 10)")
    g.add_argument("--horizon", type=int, help="sessions ahead the label looks (default 5)")
    g.add_argument("--theta", type=float, help="up/down threshold on the forward return (default 0.01)")
    g.add_argument("--epochs", type=int, help="maximum training epochs (default 8)")
    g.add_argument("--model-name", help="registry name of the model (default updown)")
    g.add_argument("--config", help="a JSON PipelineConfig to start from; options above override it")
    parser.add_argument("--home", help="data home (default: $PIPELINE_HOME or ./.pipeline)")
    g = parser.add_argument_group("run")
    g.add_argument(
        "--force", action="store_true", help="retrain even when nothing changed since the champion"
    )
    g.add_argument(
        "--skip-if-no-session",
        action="store_true",
        help="do nothing when no exchange session closed since the last stored one (the nightly's rule)",
    )
    g.add_argument(
        "--task-runner",
        choices=["thread", "dask"],
        default="thread",
        help="where per-ticker ingest runs: threads here (default) or Dask",
    )
    g.add_argument("--dask-address", help="with --task-runner dask: a scheduler, e.g. tcp://10.0.0.5:8786")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    quiet_tensorflow()
    state = retrain(
        config,
        args.home,
        force=args.force,
        skip_if_no_session=args.skip_if_no_session,
        task_runner=args.task_runner,
        dask_address=args.dask_address,
        return_state=True,
    )
    if state.is_completed():
        summary = state.result()
        if summary["verdict"] == "skipped":
            print(f"\nnothing to do: {summary['reason']}.\n{FORCE_HINT}.")
        else:
            print_summary(summary)
        return 0
    error = state.result(raise_on_failure=False)
    if isinstance(error, ModelRejected):
        print_summary(error.summary)
    else:
        print(f"\nretrain failed: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
