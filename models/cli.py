"""Use the model registry from the shell: list versions, show a manifest, predict, move aliases, and
read the nightly predictions and the live scorecard.

Examples:
    python -m models list                                   # every model, its versions and aliases
    python -m models list updown
    python -m models show updown@champion                   # manifest summary (--json for all of it)
    python -m models predict updown@champion --prices prices.parquet --out preds.parquet
    python -m models predict updown/7 --prices AAA.csv BBB.csv --latest
    python -m models alias set updown champion 6            # roll the champion back to version 6
    python -m models prune updown --keep 10                 # retention: newest 10 + aliased ones
    python -m models smoke updown/8 --prices prices.parquet # load + predict check (prints JSON)
    python -m models doctor                                 # list registry problems
    python -m models doctor updown --fix                    # repair aliases, remove leftovers
    python -m models deliveries updown                      # events/artifacts Prefect has not received
    python -m models predictions updown                     # the latest night's predictions
    python -m models predictions updown --date 2026-11-25 --csv
    python -m models scorecard updown                       # the champion's live scorecard summary

The registry is --registry, else $PIPELINE_HOME/registry, else ./.pipeline/registry; predictions live
under the data home, --home, else $PIPELINE_HOME, else ./.pipeline.
A price file is anything the folder source reads (models.prices.reader): the store's columns (date,
open, high, low, close, adj_close, volume, any usual spelling), or what yfinance writes
(Ticker.history / yf.download, .to_csv() or .to_parquet()); without a `ticker` column, and not a
yf.download file, it holds the ticker named by the file (AAA.parquet).
Exit status: 0 on success, 1 on a registry or data error, 2 on bad usage. An error is one paragraph
on stderr; -v/--debug adds its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from models.errors import explain
from models.registry import Registry, RegistryError, smoke_state
from models.registry.bundle import check_model_name


def default_registry() -> str:
    """$PIPELINE_HOME/registry, else ./.pipeline/registry (read when the CLI runs, not on import)."""
    home = os.environ.get("PIPELINE_HOME") or ".pipeline"
    return home.rstrip("/") + "/registry" if "://" in home else str(Path(home) / "registry")


def version_rows(registry: Registry, model: str) -> list[dict]:
    """One row per version: verdict, creation time, test balanced accuracy and aliases."""
    aliases = registry.aliases(model)
    rows = []
    for version in registry.versions(model):
        try:
            manifest = registry.manifest(f"{model}/{version}")
        except (RegistryError, ValueError) as err:
            rows.append({"version": version, "verdict": f"unreadable: {err}", "aliases": []})
            continue
        rows.append(
            {
                "version": version,
                "verdict": manifest.get("gate", {}).get("verdict", "?"),
                "created_at": manifest.get("created_at", "?"),
                "balanced_accuracy": manifest.get("metrics", {}).get("balanced_accuracy"),
                "smoke": smoke_state(manifest),
                "aliases": sorted(a for a, v in aliases.items() if int(v) == version),
            }
        )
    return rows


def manifest_summary(manifest: dict) -> list[str]:
    """The lines `show` prints: what the model is, what it was trained on, how it scored."""
    gate = manifest.get("gate", {})
    metrics = manifest.get("metrics", {})
    lines = [
        f"model:      {manifest.get('model')}/{manifest.get('version')}  ({gate.get('verdict', '?')})",
        f"created:    {manifest.get('created_at')}  schema {manifest.get('schema_version')}",
        f"source:     {manifest.get('source', {}).get('kind')}"
        + ("  (SYNTHETIC data)" if manifest.get("synthetic_data") else ""),
        f"tickers:    {', '.join(manifest.get('tickers', []))}",
        f"features:   {', '.join(manifest.get('features', []))}",
        f"window:     {manifest.get('window')}  horizon {manifest.get('horizon')}  "
        f"labels {manifest.get('labels', {}).get('rule')} (scale {manifest.get('labels', {}).get('scale')})",
        f"classes:    {', '.join(manifest.get('labels', {}).get('classes', []))}",
    ]
    for split, dates in (manifest.get("splits") or {}).items():
        lines.append(f"{split + ':':<12}{dates[0]} .. {dates[1]}")
    walk_forward = (manifest.get("evaluation") or {}).get("scheme") == "walk_forward"
    if metrics:
        interval = metrics.get("interval")
        bounds = f" [{interval['lower']:.4f}, {interval['upper']:.4f}]" if interval else ""
        lines.append(
            f"{'pooled:' if walk_forward else 'test:':<12}accuracy {metrics.get('accuracy', float('nan')):.4f}  "
            f"balanced accuracy {metrics.get('balanced_accuracy', float('nan')):.4f}{bounds}"
            + (
                f"  ({manifest['evaluation']['folds']} walk-forward folds, out of sample)"
                if walk_forward
                else ""
            )
        )
    for name, base in (manifest.get("baselines") or {}).items():
        lines.append(f"{name + ':':<12}balanced accuracy {base.get('balanced_accuracy', float('nan')):.4f}")
    lines += [f"  - {reason}" for reason in gate.get("reasons", [])]
    lines.append(f"smoke test: {smoke_state(manifest)}")
    lines.append(
        f"fingerprint {str(manifest.get('data_fingerprint', ''))[:16]}  git {manifest.get('git_commit')}"
    )
    lines.append("files:      " + ", ".join(sorted(manifest.get("files", {}))))
    return lines


def cmd_list(registry: Registry, args: argparse.Namespace) -> int:
    models = [registry.require_model(args.model)] if args.model else registry.models()
    if not models:
        print(f"no models in {registry.root}")
    for model in models:
        print(f"{model}  aliases {json.dumps(registry.aliases(model), sort_keys=True)}")
        for row in version_rows(registry, model):
            score = row.get("balanced_accuracy")
            print(
                f"  {row['version']:>4}  {row['verdict']:<9} {row.get('created_at', ''):<26} "
                f"{'' if score is None else f'bal.acc {score:.4f}':<15} "
                f"{'smoke ' + row.get('smoke', '?'):<14} {' '.join(row['aliases'])}"
            )
    return 0


def cmd_show(registry: Registry, args: argparse.Namespace) -> int:
    verified = registry.check(args.ref) if args.verify else None
    manifest = verified.manifest if verified else registry.manifest(args.ref)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        print("\n".join(manifest_summary(manifest)))
        if verified:
            print("\n".join(verified.lines()))
    return 0


def cmd_predict(registry: Registry, args: argparse.Namespace) -> int:
    from models.registry.smoke import read_prices_files

    predictor = registry.load_predictor(args.ref)
    prices = read_prices_files(args.prices, predictor.exchange)
    predictions = predictor.predict(prices, max_abs_z=args.max_z)
    if args.latest:
        predictions = predictions.groupby("ticker", sort=True).tail(1).reset_index(drop=True)
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() == ".csv":
            predictions.to_csv(out, index=False)
        else:
            predictions.to_parquet(out, index=False)
        print(f"{len(predictions)} predictions from {predictor.bundle} written to {out}", file=sys.stderr)
    else:
        predictions.to_csv(sys.stdout, index=False, float_format="%.6f")
    return 0


def cmd_alias(registry: Registry, args: argparse.Namespace) -> int:
    check_model_name(args.model)
    try:
        registry.aliases(args.model)
    except RegistryError as err:  # set_alias repairs it: say what it replaces
        damage = str(err).split("; repair it with")[0]
        print(f"note: {damage}; rewriting it with its valid entries", file=sys.stderr)
    table = registry.set_alias(args.model, args.alias, args.version, force=args.force)
    print(f"{args.model} aliases {json.dumps(table, sort_keys=True)}")
    return 0


def cmd_prune(registry: Registry, args: argparse.Namespace) -> int:
    removed = registry.prune(args.model, keep=args.keep)
    print(f"removed {args.model} versions {removed}" if removed else "nothing to remove")
    return 0


def cmd_doctor(registry: Registry, args: argparse.Namespace) -> int:
    from models.registry.doctor import doctor

    report = doctor(registry, args.model, fix=args.fix)
    for finding in report.findings:
        print(finding.line())
    print(report.summary(str(registry.root), args.fix), file=sys.stderr)
    return 1 if report.left else 0


def default_home() -> str:
    """$PIPELINE_HOME, else ./.pipeline (read when the CLI runs)."""
    return os.environ.get("PIPELINE_HOME") or ".pipeline"


def cmd_predictions(registry: Registry, args: argparse.Namespace) -> int:
    from models.monitoring.predictions import read_predictions

    check_model_name(args.model)
    frame = read_predictions(Path(args.home or default_home()), args.model, args.date)
    if args.csv:
        frame.to_csv(sys.stdout, index=False, float_format="%.6f", date_format="%Y-%m-%d")
        return 0
    rows = [
        {
            **{k: frame[k].iloc[i] for k in ("ticker", "label")},
            "date": str(frame["date"].iloc[i].date()),
            **{c: f"{frame[c].iloc[i]:.4f}" for c in frame.columns if c.startswith("p_")},
            "max_abs_z": f"{frame['max_abs_z'].iloc[i]:.2f}",
            "out_of_range": bool(frame["out_of_range"].iloc[i]),
            "version": f"{frame['model'].iloc[i]}/{frame['version'].iloc[i]}",
        }
        for i in range(len(frame))
    ]
    columns = ["ticker", "date", *(c for c in frame.columns if c.startswith("p_")), "label"]
    print(_table(rows, [*columns, "max_abs_z", "out_of_range", "version"]))
    return 0


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [
        [("yes" if v else "no") if isinstance(v, bool) else str(v) for v in (r[c] for c in columns)]
        for r in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in [columns, *cells]
    )


def cmd_scorecard(registry: Registry, args: argparse.Namespace) -> int:
    from models.monitoring import report, scorecard, summary
    from models.monitoring.sessions import load_champion, load_version

    registry.require_model(args.model)
    champion = (
        load_version(registry, f"{args.model}/{args.version}")
        if args.version
        else load_champion(registry, args.model)
    )
    if champion is None:
        raise RegistryError(f"{args.model} has no champion: pass --version")
    monitoring = champion.config.monitoring
    if args.window:
        monitoring = monitoring.model_copy(update={"window_sessions": args.window})
    found = summary.summarize(
        scorecard.read(registry, args.model), champion, monitoring, champion.config.gate
    )
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        found["scorecard"] = registry.model_file_url(args.model, scorecard.SCORECARD)
        print(report.scorecard_markdown(found), end="")
    return 0


def cmd_smoke(registry: Registry, args: argparse.Namespace) -> int:
    from models.registry.smoke import failure_record, run_smoke

    try:
        result = run_smoke(registry.url, args.ref, args.prices)
    except Exception as err:  # every failure is the test's verdict, reported as JSON
        result = failure_record(err)
    print(json.dumps(result, default=str))
    return 0 if result["passed"] else 1


def cmd_deliveries(registry: Registry, args: argparse.Namespace) -> int:
    from models.registry import deliveries

    models = [args.model] if args.model else registry.models()
    rows = [row for model in models for row in deliveries.status(registry, model)]
    waiting = [row for row in rows if row.pending]
    for row in rows if args.all else waiting:
        print(row.summary())
    if not waiting:
        print(f"every version's event and artifacts were delivered to Prefect ({len(rows)} versions)")
    else:
        print(
            f"{len(waiting)} of {len(rows)} versions not fully delivered: the next retrain run delivers them"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    registry_help = (
        "registry root: a folder or an fsspec URL (default: $PIPELINE_HOME/registry or ./.pipeline/registry)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    debug_help = "on an error, show its traceback too"
    parser.add_argument("--registry", help=registry_help)
    parser.add_argument("-v", "--debug", action="store_true", help=debug_help)
    # Accepted after the subcommand too; SUPPRESS keeps a subcommand from resetting it to None.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", default=argparse.SUPPRESS, help=registry_help)
    common.add_argument("-v", "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", parents=[common], help="models, versions, verdicts and aliases")
    p.add_argument("model", nargs="?", help="one model (default: all)")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", parents=[common], help="summary of a version's manifest")
    p.add_argument("ref", help="name@champion, name@latest or name/7")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also verify the bundle: manifest, every file's size and sha256, nothing unlisted",
    )
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("predict", parents=[common], help="class probabilities from raw daily prices")
    p.add_argument("ref", help="name@champion, name@latest or name/7")
    p.add_argument("--prices", nargs="+", required=True, help="Parquet or CSV price file(s)")
    p.add_argument("--out", help="write .parquet or .csv here (default: CSV on stdout)")
    p.add_argument("--latest", action="store_true", help="only the latest date of each ticker")
    p.add_argument(
        "--max-z",
        type=float,
        help="flag a window (out_of_range) when a normalized input lies beyond ±this "
        "(default: the bundle's registry.out_of_range_z, 10)",
    )
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("alias", parents=[common], help="move an alias (e.g. roll the champion back)")
    alias_sub = p.add_subparsers(dest="action", required=True)
    s = alias_sub.add_parser("set", parents=[common], help="point ALIAS at VERSION")
    s.add_argument("model")
    s.add_argument("alias", help="e.g. champion")
    s.add_argument("version", type=int)
    s.add_argument("--force", action="store_true", help="allow a rejected version")
    s.set_defaults(run=cmd_alias)

    p = sub.add_parser("prune", parents=[common], help="keep the newest K versions plus aliased ones")
    p.add_argument("model")
    p.add_argument("--keep", type=positive_int, default=10, help="versions to keep (default 10, at least 1)")
    p.set_defaults(run=cmd_prune)

    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check aliases, versions and leftovers; --fix repairs what it can",
        description="One line per problem on stdout (`<subject>: <problem>: <detail>`), a summary "
        "on stderr. Exit status 0 when no problem is left, 1 otherwise. --fix takes the publish lock, "
        "removes leftovers of killed writers, rewrites a damaged aliases.json from its valid entries, "
        "points a dangling champion or latest at the newest version that verifies and was promoted, "
        "and drops other dangling aliases; it never deletes a version.",
    )
    p.add_argument("model", nargs="?", help="one model (default: all)")
    p.add_argument("--fix", action="store_true", help="repair what can be repaired")
    p.set_defaults(run=cmd_doctor)

    p = sub.add_parser(
        "predictions",
        parents=[common],
        help="a night's predictions (<home>/predictions/<model>/<date>.parquet)",
        description="Print one night's predictions of MODEL's champion: one row per ticker (its last "
        "closed session), the class probabilities, the label, max_abs_z and the out-of-range flag, "
        "and the version that made them. Exit status 1 when there is no such night.",
    )
    p.add_argument("model", help="model name, e.g. updown")
    p.add_argument("--date", type=iso_date, help="the night, YYYY-MM-DD (default: the latest)")
    p.add_argument("--home", help="data home (default: $PIPELINE_HOME or ./.pipeline)")
    p.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    p.set_defaults(run=cmd_predictions)

    p = sub.add_parser(
        "scorecard",
        parents=[common],
        help="the champion's live scorecard: rolling figures, baselines, degraded or not",
        description="Summarize <registry>/<model>/scorecard.parquet for the champion (or --version) over "
        "its rolling window: accuracy, balanced accuracy and direction skill against the gate's "
        "baselines with block-bootstrap bounds, and whether it is degraded. Read only.",
    )
    p.add_argument("model", help="model name, e.g. updown")
    p.add_argument("--version", type=positive_int, help="a version instead of the champion")
    p.add_argument(
        "--window", type=positive_int, help="sessions in the window (default: the version's config, 60)"
    )
    p.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    p.set_defaults(run=cmd_scorecard)

    p = sub.add_parser("smoke", parents=[common], help="load and predict the latest windows; JSON verdict")
    p.add_argument("ref", help="e.g. updown/8")
    p.add_argument("--prices", required=True, help="Parquet or CSV price file")
    p.set_defaults(run=cmd_smoke)

    p = sub.add_parser(
        "deliveries", parents=[common], help="versions whose event or artifacts Prefect has not received"
    )
    p.add_argument("model", nargs="?", help="one model (default: all)")
    p.add_argument("--all", action="store_true", help="list every version, delivered ones too")
    p.set_defaults(run=cmd_deliveries)
    return parser


def iso_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; an error is one paragraph on stderr (its traceback too with --debug)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        registry = Registry(args.registry or default_registry())
        return args.run(registry, args)
    except (Exception, KeyboardInterrupt) as err:
        explanation = explain(err)
        if args.debug:
            traceback.print_exception(err, file=sys.stderr)
        print(explanation.text, file=sys.stderr)
        return explanation.status


if __name__ == "__main__":
    sys.exit(main())
