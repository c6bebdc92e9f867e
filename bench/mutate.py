"""`make mutate`: mutation testing of the modules that carry the project's guarantees.

Runs mutmut (pinned in the dev extra; configured in pyproject.toml [tool.mutmut], which lists the
files it may mutate and the fast tests that cover them) over the functions below, then prints the
score per module and every surviving mutant as a diff. A survivor listed in
bench/mutation_equivalents.py (an equivalent mutant: no behaviour changed, with the reason) is
counted apart; any other survivor fails the command (exit 1). Not part of CI: on 2 shared cores,
7 minutes for gate, bootstrap, baselines and audit, 9 for aliases, store and publication,
whose tests write files, 7-10 for evaluation; about 26 for every module (bench/MUTATION.md has the
measured times and scores).

    python -m bench.mutate                  every module, from scratch (removes mutants/)
    python -m bench.mutate gate audit       some modules only
    python -m bench.mutate --list           the modules and their functions
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module label -> (file, mutant-name globs): the functions whose behaviour is a guarantee. mutmut
# names a function's mutants `<module>.x_<function>__mutmut_<n>` and a method's
# `<module>.xǁ<Class>ǁ<method>__mutmut_<n>`.
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gate": ("models/training/gate.py", ("models.training.gate.*",)),
    "evaluation": (
        "models/training/evaluation.py",
        (
            "models.training.evaluation.x_evaluate_run__*",
            "models.training.evaluation.x_evaluate_model__*",
            "models.training.evaluation.x_predict_windows__*",
            "models.training.evaluation.x_champion_metrics__*",
            "models.training.evaluation.x_pool_folds__*",
            "models.training.evaluation.x__baseline_names__*",
            "models.training.evaluation.x__correct__*",
            "models.training.evaluation.x_walk_forward_evidence__*",
            "models.training.evaluation.x__balanced__*",
            "models.training.evaluation.x_champion_comparison__*",
            "models.training.evaluation.x__judge_walk_forward__*",
            "models.training.evaluation.x_rejudge__*",
        ),
    ),
    "bootstrap": ("models/training/bootstrap.py", ("models.training.bootstrap.*",)),
    "baselines": ("models/training/baselines.py", ("models.training.baselines.*",)),
    "audit": ("models/dataset/audit.py", ("models.dataset.audit.*",)),
    "aliases": (
        "models/registry/local.py",
        tuple(
            f"models.registry.local.x{name}__*"
            for name in (
                "_smoke_state",
                "ǁRegistryǁaliases",
                "ǁRegistryǁresolve",
                "ǁRegistryǁadd_version",
                "ǁRegistryǁpromote",
                "ǁRegistryǁ_promotable",
                "ǁRegistryǁreject",
                "ǁRegistryǁset_alias",
                "ǁRegistryǁ_set_aliases",
                "ǁRegistryǁ_write_aliases",
                "ǁRegistryǁprune",
                "ǁChampionMovedǁ__init__",
            )
        ),
    ),
    "publication": (
        "models/registry/publication.py",
        (
            "models.registry.publication.x_release__*",
            "models.registry.publication.x__amend_rejected__*",
            "models.registry.publication.x__render__*",
            "models.registry.publication.x__name__*",
        ),
    ),
    "store": (
        "models/prices/store.py",
        tuple(
            f"models.prices.store.x_{name}__*"
            for name in (
                "write_atomic",
                "remove_stale_temp_files",
                "upsert",
                "replace_prices",
                "_merge",
                "restated_dates",
                "_with_meta",
                "_check_same_source",
                "check_source",
            )
        ),
    ),
    "sources": ("models/prices/sources.py", ("models.prices.sources.x_classify_yfinance_error__*",)),
}

# mutmut's exit-code statuses, as `mutmut results --all true` prints them.
KILLED = {"killed", "timeout", "caught by type check"}


def mutmut(*args: str, log: Path | None = None) -> str:
    """Run the mutmut command line in the repository root; its progress spinner goes to `log`."""
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SystemExit(f"mutmut {' '.join(args[:1])} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def statuses() -> dict[str, tuple[str, Path]]:
    """Every mutant's status ("killed", "survived", "no tests", ...) and its source file."""
    from mutmut.__main__ import SourceFileMutationData, status_by_exit_code, walk_mutatable_files

    out = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            out[name] = (status_by_exit_code[code], path)
    return out


def diff_of(name: str, path: Path) -> str:
    """The mutant's change: the -/+ lines of its diff (what bench/mutation_equivalents.py keys on)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return "\n".join(
        line.rstrip()
        for line in get_diff_for_mutant(name, path=path).splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def function_of(name: str) -> str:
    return name.rpartition("__mutmut_")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutate", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="list the modules and their functions")
    parser.add_argument(
        "--children", type=int, default=1, help="mutants run at once (default 1: 2 shared cores)"
    )
    parser.add_argument("--json", type=Path, help="also write the scores and survivors to this file")
    args = parser.parse_args(argv)
    if args.list:
        for label, (path, globs) in MODULES.items():
            print(f"{label}: {path}\n  " + "\n  ".join(globs))
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}: use some of {', '.join(MODULES)}")
    chosen = {label: MODULES[label] for label in (args.modules or MODULES)}
    os.chdir(ROOT)  # mutmut reads pyproject.toml and writes mutants/ in the working directory
    from bench.mutation_equivalents import EQUIVALENT

    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # every score from scratch, no cached verdict
    started = time.perf_counter()
    globs = [g for _, gs in chosen.values() for g in gs]
    (ROOT / "mutants").mkdir(exist_ok=True)
    mutmut("run", "--max-children", str(args.children), *globs, log=ROOT / "mutants" / "run.log")
    seconds = time.perf_counter() - started
    found = statuses()

    report: dict = {"seconds": round(seconds), "modules": {}, "unexplained": [], "equivalent": []}
    print(f"mutmut ran {len(chosen)} module(s) in {seconds / 60:.1f} min\n")
    print(
        f"{'module':<18} {'mutants':>7} {'killed':>7} {'survived':>8} {'no test':>7} {'equiv':>6} {'score':>7}"
    )
    for label, (_, gs) in chosen.items():
        names = [n for n in found if any(fnmatch.fnmatchcase(n, g) for g in gs)]
        counts = {"killed": 0, "survived": 0, "no tests": 0, "equivalent": 0}
        for name in names:
            status, path = found[name]
            if status in KILLED:
                counts["killed"] += 1
                continue
            change = diff_of(name, path)
            reason = EQUIVALENT.get((function_of(name), change))
            if status == "survived" and reason:
                counts["equivalent"] += 1
                report["equivalent"].append({"mutant": name, "diff": change, "why": reason})
                continue
            counts["no tests" if status == "no tests" else "survived"] += 1
            report["unexplained"].append({"mutant": name, "status": status, "diff": change})
        judged = len(names) - counts["equivalent"]
        score = counts["killed"] / judged if judged else 1.0
        report["modules"][label] = {**counts, "mutants": len(names), "score": round(score, 4)}
        print(
            f"{label:<18} {len(names):>7} {counts['killed']:>7} {counts['survived']:>8} "
            f"{counts['no tests']:>7} {counts['equivalent']:>6} {score:>7.1%}"
        )
    if report["unexplained"]:
        print(f"\n{len(report['unexplained'])} unexplained survivor(s) (kill each with a test, or list it")
        print("in bench/mutation_equivalents.py with why no behaviour changed):\n")
        for item in report["unexplained"]:
            print(f"{item['mutant']} ({item['status']})\n{item['diff']}\n")
    else:
        print("\nno unexplained survivor")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if report["unexplained"] else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
