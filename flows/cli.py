"""The command lines of the flows: `python -m flows.retrain` and `python -m flows.ingest`.

Arguments are parsed and everything that can be checked without data is checked (the configuration,
the data home, the price folder) before Prefect or TensorFlow is imported: `--help` and a mistake
take a fraction of a second. The flow module is imported only to run. Every failure ends as one
paragraph on stderr and an exit status: 0 done (or nothing to do), 1 the run failed or its model was
rejected, 2 bad usage or configuration (nothing ran). `--debug` adds the tracebacks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Only the standard library at import time: `--help` and argparse's usage errors need nothing else.
# The rest is imported when a command runs: pydantic and the config to validate, Prefect to run.
if TYPE_CHECKING:
    from pydantic import BaseModel

    from models.config import PipelineConfig, SourceConfig

EXIT_OK, EXIT_FAILED = 0, 1  # as in models.errors (2, bad usage, is argparse's own)

EXIT_STATUS_HELP = (
    "Exit status: 0 done (promoted, or nothing to do), 1 the run failed or its model was rejected (now, "
    "or before on exactly this data), 2 bad usage or configuration (nothing ran)."
)

RETRAIN_HELP = f"""The nightly `retrain` flow: ingest -> dataset -> guarded training -> evaluation -> publish.

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
{EXIT_STATUS_HELP}
"""

INGEST_HELP = """The `ingest` flow: fetch the universe's daily prices into the Parquet store.

Examples:
    python -m flows.ingest --source sample --tickers AAA,BBB
    python -m flows.ingest --source yfinance --tickers AAPL,MSFT --start 2015-01-02   # backfills to 2015
    python -m flows.ingest --source folder --folder ./csv --tickers ACME --end 2019-12-31   # history that ends
    python -m flows.ingest --source sample --task-runner dask      # per-ticker work on a local Dask cluster

Prices land in <home>/prices/<source key>/<TICKER>.parquet, one folder per source.

Prints one line per ticker (every field of its ingest record: status, rows added, dates, reason, ...)
on stdout; --json prints the records as JSON. Exit status: 0 done (quarantined tickers within
--max-failed-share included), 1 the run failed (e.g. more tickers quarantined than allowed), 2 bad
usage or configuration (nothing ran).
"""

# Config field -> the option that sets it, so an error names what the user typed.
SOURCE_FLAGS = {
    "source.kind": "--source",
    "source.tickers": "--tickers",
    "source.start": "--start",
    "source.end": "--end",
    "source.folder": "--folder",
    "source.sample_variant": "--variant",
    "source.sample_seed": "--seed",
    "source.sample_signal_until": "--signal-until",
}
RETRAIN_FLAGS = {
    **SOURCE_FLAGS,
    "window.length": "--window",
    "labels.horizon": "--horizon",
    "labels.theta": "--theta",
    "training.epochs": "--epochs",
    "model.name": "--model-name",
}
INGEST_FLAGS = {**SOURCE_FLAGS, "max_failed_share": "--max-failed-share"}


def add_source_arguments(parser: argparse.ArgumentParser, default_source: str) -> None:
    from models.config import DEFAULT_START  # the help states the real default

    g = parser.add_argument_group("data source")
    g.add_argument(
        "--source",
        choices=["sample", "yfinance", "folder"],
        help=f"price source (default: {default_source})",
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
    g.add_argument(
        "--signal-until",
        type=dt.date.fromisoformat,
        help="sample signal market: the last session with the planted signal; none after it "
        "(a model trained before goes stale; stored apart from the plain signal market)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        help="data home, created if missing (default: $PIPELINE_HOME or ./.pipeline)",
    )
    parser.add_argument(
        "--task-runner",
        choices=["thread", "dask"],
        default="thread",
        help="where per-ticker ingest and the walk-forward folds run: threads here (default) or Dask",
    )
    parser.add_argument(
        "--dask-address", help="with --task-runner dask: a scheduler, e.g. tcp://10.0.0.5:8786"
    )
    parser.add_argument(
        "-v",
        "--debug",
        action="store_true",
        help="show tracebacks: Prefect's on the console and the final error's (they are always kept "
        "in the run's Prefect logs)",
    )


def source_values(args: argparse.Namespace) -> dict:
    """The source settings given on the command line (unvalidated), by SourceConfig field."""
    values: dict = {} if args.source is None else {"kind": args.source}
    if args.tickers is not None:
        listed = args.tickers.strip()
        # "" means an empty universe (refused), never "the default universe".
        values["tickers"] = tuple(t.strip() for t in listed.split(",")) if listed else ()
    for key, name in (
        ("start", "start"),
        ("end", "end"),
        ("folder", "folder"),
        ("sample_variant", "variant"),
        ("sample_seed", "seed"),
        ("sample_signal_until", "signal_until"),
    ):
        if getattr(args, name) is not None:
            values[key] = getattr(args, name)
    return values


def source_from_args(args: argparse.Namespace) -> SourceConfig:
    """The command line's source on top of SourceConfig's defaults (raises ValidationError)."""
    from models.config import SourceConfig

    return SourceConfig(**source_values(args))


def config_path(args: argparse.Namespace) -> str | None:
    """--config, else PIPELINE_CONFIG (read when the command runs), else None."""
    from models.config import Settings

    if args.config:
        return args.config
    return str(Settings().config) if Settings().config else None


def read_config_file(path: str) -> PipelineConfig:
    """A JSON PipelineConfig file; UsageError when it cannot be read, ValidationError when it is wrong."""
    from models.config import PipelineConfig
    from models.errors import UsageError

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UsageError(f"cannot read the config file {path}: {err.strerror}") from err
    return PipelineConfig.model_validate_json(text)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The --config file (else $PIPELINE_CONFIG, else the defaults) with the options on top, validated."""
    from models.config import PipelineConfig

    path = config_path(args)
    base = read_config_file(path) if path else PipelineConfig()
    changes = base.model_dump()
    changes["source"] = {**changes["source"], **source_values(args)}
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


def check_runner(args: argparse.Namespace) -> None:
    from models.errors import UsageError

    if args.dask_address and args.task_runner != "dask":
        raise UsageError("--dask-address needs --task-runner dask")


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
        for name, b in sorted(summary["baselines"].items()):
            diff = b.get("difference") or {}
            strongest = "  strongest" if name == evaluation["strongest_baseline"] else ""
            print(
                f"{name + ':':<19}{b['balanced_accuracy']:.4f}{_bounds(b.get('interval'))}  "
                f"{diff.get('estimate', float('nan')):+.4f} (>= {diff.get('lower', float('nan')):+.4f}){strongest}"
            )
        d = evaluation["direction_skill"]
        if d["windows"]:
            from models.training.gate import direction_baseline_name

            print(
                f"{'direction:':<19}sign accuracy {d['model']:.4f} vs {d['baseline']:.4f} "
                f"{direction_baseline_name(d['baseline_class'])} on {d['windows']} moves: {d['estimate']:+.4f} (>= {d['lower']:+.4f})"
            )
        if evaluation["carried_by"]:
            print(f"{'note:':<13}the result rests on {', '.join(evaluation['carried_by'])}")
    else:
        print(f"{'test:':<13}accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}")
        for name, b in sorted(summary["baselines"].items()):
            print(
                f"{name + ':':<13}accuracy {b['accuracy']:.4f}  balanced accuracy {b['balanced_accuracy']:.4f}"
            )
    print(f"{'verdict:':<13}{summary['verdict'].upper()}")
    for reason in summary.get("reasons", []):
        print(f"  - {reason}")
    for topic, text in data[1:]:  # dropped tickers and the data's age: last, where they are seen
        print(f"{topic + ':':<13}{text}")


def print_monitoring(monitored: dict | None, decision: str | None = None) -> None:
    """The night's monitoring in four lines: predictions, scorecard, the champion's verdict, drift."""
    if not monitored:
        return
    from models.monitoring import report

    print()
    print(f"{'predictions:':<13}{report.predictions_line(monitored['predictions'])}")
    print(f"{'scorecard:':<13}{report.scorecard_line(monitored['scorecard'])}")
    print(f"{'champion:':<13}{report.summary_line(monitored['summary'])}")
    for reason in monitored["summary"].get("reasons") or []:
        print(f"  - {reason}")
    print(f"{'drift:':<13}{report.drift_line(monitored['drift'])}")
    if decision:
        print(f"{'retrain:':<13}{decision}")


def print_quarantined(quarantined: dict[str, str]) -> None:
    for why in quarantined.values():  # each reason names its ticker
        print(f"{'dropped:':<13}{why}")


def print_ingest(records: list[dict] | None) -> None:
    from flows.console import ingest_table

    if records:
        print(ingest_table(records))


def run_command(
    args: argparse.Namespace, command: Callable[[], int], flags: dict[str, str], model: type[BaseModel]
) -> int:
    """Run `command`; any exception becomes one paragraph on stderr and its exit status."""
    try:
        return command()
    except (Exception, KeyboardInterrupt) as err:
        from pydantic import ValidationError

        from flows.console import report_error

        origin = None
        if isinstance(err, ValidationError) and hasattr(args, "config"):
            try:
                path = config_path(args)
            except ValidationError:  # PIPELINE_CONFIG itself is what is wrong
                path = None
            if path:
                origin = f"the config file {path} or the options given with it"
        return report_error(err, args.debug, flags, model, origin)


def failure_of(state) -> BaseException:
    """The exception a failed (or crashed, or cancelled) flow run ended with."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        return error
    return RuntimeError(f"the flow run ended {state.name}: {state.message}")


def start_prefect(args: argparse.Namespace) -> None:
    """Quiet TensorFlow, heartbeat like a deployment, and keep Prefect's tracebacks off the console
    (unless --debug); imports Prefect."""
    from flows.common import heartbeat_like_deployments, quiet_tensorflow

    heartbeat_like_deployments()  # before Prefect reads its settings
    from flows.console import tracebacks_off_the_console

    quiet_tensorflow()
    if not args.debug:
        tracebacks_off_the_console()


def build_retrain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.retrain",
        description=RETRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser, "sample, the synthetic market, or the --config file's")
    g = parser.add_argument_group("dataset and model")
    g.add_argument("--window", type=int, help="sessions per input window (default 10)")
    g.add_argument("--horizon", type=int, help="sessions ahead the label looks (default 5)")
    g.add_argument(
        "--theta", type=float, help="up/down threshold on the forward return, 0 < theta < 1 (default 0.01)"
    )
    g.add_argument("--epochs", type=int, help="maximum training epochs (default 8)")
    g.add_argument("--model-name", help="registry name of the model (default updown)")
    g.add_argument(
        "--config",
        help="a JSON PipelineConfig to start from (default: $PIPELINE_CONFIG, else the defaults); "
        "options above override it",
    )
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
    add_run_arguments(g)
    return parser


def retrain_main(argv: list[str] | None = None) -> int:
    """`python -m flows.retrain`: run the retrain flow once; the exit status says how it ended."""
    args = build_retrain_parser().parse_args(argv)
    from models.config import PipelineConfig

    return run_command(args, lambda: _retrain(args), RETRAIN_FLAGS, PipelineConfig)


def _retrain(args: argparse.Namespace) -> int:
    from flows.common import check_source, resolve_home
    from models.errors import IngestFailed, ModelRejected, RejectedBefore

    config = config_from_args(args)
    check_runner(args)
    check_source(config.source)
    home = resolve_home(args.home)
    start_prefect(args)
    from flows.retrain import FORCE_HINT, retrain

    state = retrain(
        config,
        home,
        force=args.force,
        skip_if_no_session=args.skip_if_no_session,
        task_runner=args.task_runner,
        dask_address=args.dask_address,
        return_state=True,
    )
    if state.is_completed():
        summary = state.result()
        print_ingest(summary.get("ingest"))
        print_monitoring(summary.get("monitoring"), summary.get("decision"))
        if summary["verdict"] == "skipped":
            print(f"\nnothing to do: {summary['reason']}.\n{FORCE_HINT}.")
            print_quarantined(summary.get("quarantined") or {})
        else:
            print_summary(summary)
        return EXIT_OK
    error = failure_of(state)
    if isinstance(error, ModelRejected):
        print_ingest(error.summary.get("ingest"))
        print_monitoring(error.summary.get("monitoring"), error.summary.get("decision"))
        print_summary(error.summary)
        print(
            f"\n{error.summary['model']}/{error.summary['version']} was rejected: no alias moved, "
            "the bundle is kept for inspection.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if isinstance(error, IngestFailed):
        print_ingest(error.records)
    if isinstance(error, RejectedBefore):  # the paragraph says why and how to retrain anyway
        print_quarantined(error.quarantined)
    raise error


def build_ingest_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.ingest",
        description=INGEST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_arguments(parser, "sample, the synthetic market")
    g = parser.add_argument_group("run")
    g.add_argument(
        "--max-failed-share",
        type=float,
        default=0.2,
        help="fail the run when more than this share of tickers is quarantined, 0 <= share < 1 (default 0.2)",
    )
    g.add_argument("--json", action="store_true", help="print the per-ticker records as JSON on stdout")
    g.add_argument("--force", action="store_true", help="read every ticker's source again (no ingest cache)")
    add_run_arguments(g)
    return parser


def ingest_main(argv: list[str] | None = None) -> int:
    """`python -m flows.ingest`: ingest the universe once and print what happened per ticker."""
    args = build_ingest_parser().parse_args(argv)
    from models.config import IngestParameters

    return run_command(args, lambda: _ingest(args), INGEST_FLAGS, IngestParameters)


def _ingest(args: argparse.Namespace) -> int:
    from flows.common import check_source, resolve_home
    from flows.console import ingest_table
    from models.config import IngestParameters
    from models.errors import IngestFailed

    checked = IngestParameters(source=source_values(args), max_failed_share=args.max_failed_share)
    check_runner(args)
    check_source(checked.source)
    home = resolve_home(args.home)
    start_prefect(args)
    from flows.common import with_task_runner
    from flows.ingest import ingest

    on_runner = with_task_runner(ingest, args.task_runner, args.dask_address)
    state = on_runner(checked.source, home, checked.max_failed_share, force=args.force, return_state=True)
    if state.is_completed():
        records = state.result()["records"]
        print(json.dumps(records, indent=2) if args.json else ingest_table(records))
        return EXIT_OK
    error = failure_of(state)
    if isinstance(error, IngestFailed):
        print(json.dumps(error.records, indent=2) if args.json else ingest_table(error.records))
    raise error


SCORECARD_HELP = """The `scorecard` flow: backfill the champion's live scorecard from the stored prices.

Scores the champion on every session after its training end whose label has matured (and the nightly
predictions files), then summarizes its rolling window against the gate's baselines. Reads the price
store as it is (the nightly or `python -m flows.ingest` keeps it current).

Examples:
    python -m flows.scorecard                          # updown's champion, its own source and universe
    python -m flows.scorecard --model updown --window 120 --home /data/pipeline

Exit status: 0 done (degraded or not: the summary says which), 1 the run failed, 2 bad usage.
"""


def build_scorecard_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.scorecard",
        description=SCORECARD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="updown", help="model name (default updown)")
    parser.add_argument(
        "--window", type=int, help="sessions in the rolling window (default: the champion's, 60)"
    )
    parser.add_argument(
        "--date", type=dt.date.fromisoformat, help="score up to this night (default: the last stored session)"
    )
    parser.add_argument("--home", help="data home (default: $PIPELINE_HOME or ./.pipeline)")
    parser.add_argument("-v", "--debug", action="store_true", help="show tracebacks")
    return parser


def scorecard_main(argv: list[str] | None = None) -> int:
    """`python -m flows.scorecard`: backfill and summarize the champion's scorecard once."""
    args = build_scorecard_parser().parse_args(argv)
    from models.config import MonitoringConfig

    return run_command(args, lambda: _scorecard(args), {"window_sessions": "--window"}, MonitoringConfig)


def _scorecard(args: argparse.Namespace) -> int:
    from flows.common import resolve_home
    from models.config import MonitoringConfig
    from models.errors import UsageError
    from models.registry import RegistryError
    from models.registry.bundle import check_model_name

    try:
        check_model_name(args.model)
    except RegistryError as err:
        raise UsageError(f"--model: {err}") from None
    if args.window is not None:
        MonitoringConfig(window_sessions=args.window)  # refused here, before Prefect starts
    home = resolve_home(args.home)
    start_prefect(args)
    from flows.scorecard import scorecard
    from models.monitoring import report

    state = scorecard(args.model, home, window_sessions=args.window, night=args.date, return_state=True)
    if not state.is_completed():
        raise failure_of(state)
    result = state.result()
    print(report.scorecard_line(result["scorecard"]))
    print()
    print(report.scorecard_markdown(result["summary"]), end="")
    return EXIT_OK
