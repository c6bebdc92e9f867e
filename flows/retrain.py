"""The nightly `retrain` flow: ingest -> dataset -> guarded training -> evaluation -> publish.

Examples:
    python -m flows.retrain                                  # sample market (synthetic), defaults
    python -m flows.retrain --variant noise                  # negative control: must not be promoted
    python -m flows.retrain --source yfinance --tickers SPY,QQQ,IWM --start 2012-01-03
    python -m flows.retrain --source folder --folder ./prices --tickers ACME,INIT
    python -m flows.retrain --window 20 --horizon 5 --theta 0.015 --epochs 10 --home /data/pipeline

Without PREFECT_API_URL, Prefect starts a temporary local API for the run.
Exit status: 0 promoted, 1 rejected or failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.common import quiet_tensorflow, resolve_home
from flows.ingest import ingest
from models.config import PipelineConfig, SourceConfig
from models.errors import ModelRejected
from tasks.dataset import build_dataset
from tasks.publish import publish
from tasks.train import evaluate, train_model


@flow(name="retrain")
def retrain(config: PipelineConfig = PipelineConfig(), home: str | None = None) -> dict:
    """Retrain the direction model on fresh prices and publish it; fails when it is rejected."""
    home = resolve_home(home)
    run_dir = str(Path(home) / "runs" / str(flow_run.get_id() or "local"))
    ingested = ingest(config.source, home)
    info = build_dataset(config, home, ingested["tickers"], dt.date.fromisoformat(ingested["end"]), run_dir)
    trained = train_model(info, config, run_dir)
    registry_root = str(Path(home) / "registry")
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
        default="sample",
        help="price source (default: sample, the synthetic market)",
    )
    g.add_argument("--tickers", help="comma-separated universe, e.g. AAA,BBB or SPY,QQQ")
    g.add_argument("--start", type=dt.date.fromisoformat, help="first date, YYYY-MM-DD")
    g.add_argument("--end", type=dt.date.fromisoformat, help="last date (default: last closed session)")
    g.add_argument("--folder", help="for --source folder: directory of <TICKER>.csv|parquet")
    g.add_argument("--variant", choices=["signal", "noise"], help="sample market variant (default signal)")
    g.add_argument("--seed", type=int, help="sample market seed")


def source_from_args(args: argparse.Namespace) -> SourceConfig:
    values: dict = {"kind": args.source}
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
    m, majority = summary["metrics"], summary["baselines"]["majority"]
    print()
    print(f"bundle:   {summary['path']}")
    print(f"version:  {summary['model']}/{summary['version']}")
    if summary.get("synthetic_data"):
        print("data:     SYNTHETIC sample market (not real prices)")
    print(f"test:     accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}")
    print(
        f"majority: accuracy {majority['accuracy']:.4f}  balanced accuracy {majority['balanced_accuracy']:.4f}"
    )
    for name, b in summary["baselines"].items():
        if name != "majority":
            print(
                f"{name + ':':<10}accuracy {b['accuracy']:.4f}  balanced accuracy {b['balanced_accuracy']:.4f}"
            )
    print(f"verdict:  {summary['verdict'].upper()}")
    for reason in summary.get("reasons", []):
        print(f"  - {reason}")


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    config = config_from_args(args)
    quiet_tensorflow()
    state = retrain(config, args.home, return_state=True)
    if state.is_completed():
        print_summary(state.result())
        return 0
    error = state.result(raise_on_failure=False)
    if isinstance(error, ModelRejected):
        print_summary(error.summary)
    else:
        print(f"\nretrain failed: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
