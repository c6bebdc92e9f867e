"""The command lines of the flows: `python -m flows.retrain` and `python -m flows.ingest`.

Arguments are parsed here, before Prefect is imported; the flow module is imported only to run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from flows.common import quiet_tensorflow
from models.config import DEFAULT_START, PipelineConfig, SourceConfig
from models.errors import ModelRejected, RejectedBefore

RETRAIN_HELP = """The nightly `retrain` flow: ingest -> dataset -> guarded training -> evaluation -> publish.

Examples:
    python -m flows.retrain                                  # sample market (synthetic), defaults
    python -m flows.retrain --variant noise                  # negative control: must not be promoted
    python -m flows.retrain --variant volatility             # volatility only: must not be promoted
    python -m flows.retrain --source yfinance --tickers SPY,QQQ,IWM --start 2012-01-03
    python -m flows.retrain --source folder --folder ./prices --tickers ACME,INIT
    python -m flows.retrain --window 20 --horizon 5 --theta 0.015 --epochs 10 --home /data/pipeline
    python -m flows.retrain --force                          # retrain although nothing changed
    python -m flows.retrain --task-runner dask --dask-address tcp://scheduler:8786

Data: from --start (default 2016-01-04) to --end (default: the last closed session). A wider start
backfills the store; a narrower one trains on the stored subset. Prices of each source are stored
apart (<home>/prices/<source>/), so --variant noise never trains on stored signal prices.
Historical mode: history that ends in the past (a research data set) is read with --end set to its
last day; without it, a ticker whose newest price is older than the last closed session is stale.

Without PREFECT_API_URL, Prefect starts a temporary local API for the run.
A run whose data and config equal the champion's trains nothing and says so; one whose data and
config equal a rejected version's trains nothing and fails (both: see --force).
Exit status: 0 promoted or nothing to do, 1 rejected (now, or before on exactly this data) or failed.
"""

INGEST_HELP = """The `ingest` flow: fetch the universe's daily prices into the Parquet store.

python -m flows.ingest --source sample --tickers AAA,BBB
python -m flows.ingest --source yfinance --tickers AAPL,MSFT --start 2015-01-02   # backfills to 2015
python -m flows.ingest --source folder --folder ./csv --tickers ACME --end 2019-12-31   # history that ends
python -m flows.ingest --source sample --task-runner dask      # per-ticker work on a local Dask cluster

Prices land in <home>/prices/<source key>/<TICKER>.parquet, one folder per source.
"""


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data source")
    g.add_argument(
        "--source",
        choices=["sample", "yfinance", "folder"],
        help="price source (default: sample, the synthetic market, or the --config file's)",
    )
    g.add_argument("--tickers", help="comma-separated universe, e.g. AAA,BBB or SPY,QQQ")
    g.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        help=f"first date, YYYY-MM-DD (default {DEFAULT_START}); a wider start backfills the store",
    )
    g.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        help="last date (default: the last closed session); set it to train as of a past day "
        "(historical mode, for history that ends in the past)",
    )
    g.add_argument("--folder", help="for --source folder: directory of <TICKER>.csv|parquet")
    g.add_argument(
        "--variant",
        choices=["signal", "noise", "volatility"],
        help="sample market variant (default signal; noise and volatility are negative controls)",
    )
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


def _bounds(interval: dict | None) -> str:
    return f" [{interval['lower']:.4f}, {interval['upper']:.4f}]" if interval else ""


def print_summary(summary: dict) -> None:
    """The run's outcome: bundle, version, data used, pooled (walk-forward) or test (holdout)
    figures, verdict."""
    from models.registry.report import data_lines  # the same words as report.md

    m = summary["metrics"]
    data = data_lines(summary.get("data") or {})
    evaluation = summary.get("evaluation")
    print()
    print(f"{'bundle:':<13}{summary['path']}")
    print(f"{'version:':<13}{summary['model']}/{summary['version']}")
    if summary.get("synthetic_data"):
        print(f"{'data:':<13}SYNTHETIC sample market (not real prices)")
    for topic, text in data[:1]:  # the range and tickers used
        print(f"{topic + ':':<13}{text}")
    if evaluation:
        sample = evaluation["sample"]
        conf = sample["confidence"]
        print(
            f"{'evaluation:':<13}walk-forward, {evaluation['folds']} folds: {sample['windows']} out-of-sample "
            f"windows, {sample['sessions']} sessions, ~{sample['effective_windows']:.0f} independent"
        )
        print(
            f"{'':<13}balanced accuracy [{2 * conf - 1:.0%} interval]; model minus baseline "
            f"(one-sided {conf:.0%} lower bound)"
        )
        print(f"{'model:':<19}{m['balanced_accuracy']:.4f}{_bounds(m.get('interval'))}")
        for name, b in summary["baselines"].items():
            diff = b.get("difference") or {}
            strongest = "  strongest" if name == evaluation["strongest_baseline"] else ""
            print(
                f"{name + ':':<19}{b['balanced_accuracy']:.4f}{_bounds(b.get('interval'))}  "
                f"{diff.get('estimate', float('nan')):+.4f} (>= {diff.get('lower', float('nan')):+.4f}){strongest}"
            )
        d = evaluation["direction_skill"]
        if d["windows"]:
            print(
                f"{'direction:':<19}sign accuracy {d['model']:.4f} vs {d['baseline']:.4f} always "
                f"{d['baseline_class']} on {d['windows']} moves: {d['estimate']:+.4f} (>= {d['lower']:+.4f})"
            )
        if evaluation["carried_by"]:
            print(f"{'note:':<13}the result rests on {', '.join(evaluation['carried_by'])}")
    else:
        print(f"{'test:':<13}accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}")
        for name, b in summary["baselines"].items():  # majority first
            print(
                f"{name + ':':<13}accuracy {b['accuracy']:.4f}  balanced accuracy {b['balanced_accuracy']:.4f}"
            )
    print(f"{'verdict:':<13}{summary['verdict'].upper()}")
    for reason in summary.get("reasons", []):
        print(f"  - {reason}")
    for topic, text in data[1:]:  # dropped tickers and the data's age: last, where they are seen
        print(f"{topic + ':':<13}{text}")


def print_quarantined(quarantined: dict[str, str]) -> None:
    for why in quarantined.values():  # each reason names its ticker
        print(f"{'dropped:':<13}{why}")


def build_retrain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.retrain",
        description=RETRAIN_HELP,
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
        "--force",
        action="store_true",
        help="retrain even when the data and config equal the champion's or a rejected version's, "
        "and read every ticker's source again instead of replaying the ingest cache",
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
        help="where per-ticker ingest and the walk-forward folds run: threads here (default) or Dask",
    )
    g.add_argument("--dask-address", help="with --task-runner dask: a scheduler, e.g. tcp://10.0.0.5:8786")
    return parser


def retrain_main(argv: list[str] | None = None) -> int:
    """`python -m flows.retrain`: run the retrain flow once; the exit status says how it ended."""
    from flows.retrain import FORCE_HINT, retrain

    args = build_retrain_parser().parse_args(argv)
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
            print_quarantined(summary.get("quarantined") or {})
        else:
            print_summary(summary)
        return 0
    error = state.result(raise_on_failure=False)
    if isinstance(error, ModelRejected):
        print_summary(error.summary)
    elif isinstance(error, RejectedBefore):
        print(f"\nnothing trained: {error.reason}.\n{FORCE_HINT}.", file=sys.stderr)
        print_quarantined(error.quarantined)
    else:
        print(f"\nretrain failed: {error}", file=sys.stderr)
    return 1


def ingest_main(argv: list[str] | None = None) -> int:
    """`python -m flows.ingest`: ingest the universe once and print what happened per ticker."""
    from flows.common import with_task_runner
    from flows.ingest import ingest

    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description=INGEST_HELP,
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
    parser.add_argument(
        "--force", action="store_true", help="read every ticker's source again (no ingest cache)"
    )
    args = parser.parse_args(argv)
    on_runner = with_task_runner(ingest, args.task_runner, args.dask_address)
    result = on_runner(source_from_args(args), args.home, args.max_failed_share, force=args.force)
    print(json.dumps(result["records"], indent=2))
    return 0
