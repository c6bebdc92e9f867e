"""Command-line responsiveness: `--help` of the three command lines and the time to a config error.

Each is a fresh process, timed from outside (interpreter start-up included), median of --repeats,
side by side with importing the flow module (what `--help` cost when it imported Prefect first).
The targets: `--help` <= 0.5 s, a config error <= 1 s, on a quiet machine.

    python -m bench.cli [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.common import median_time, print_table, row

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    ("--help, python -m flows.retrain", ["-m", "flows.retrain", "--help"], 0),
    ("--help, python -m flows.ingest", ["-m", "flows.ingest", "--help"], 0),
    ("--help, python -m models", ["-m", "models", "--help"], 0),
    ("config error (--theta 5), flows.retrain", ["-m", "flows.retrain", "--theta", "5"], 2),
    (
        "config error (--max-failed-share 5), flows.ingest",
        ["-m", "flows.ingest", "--max-failed-share", "5"],
        2,
    ),
]
ALTERNATIVE = ["-c", "import flows.retrain"]


def timed(args: list[str], status: int, env: dict[str, str], repeats: int) -> float:
    def once() -> None:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True)
        assert done.returncode == status, (args, done.returncode, done.stderr.decode()[-500:])

    once()  # compiled bytecode, warm file cache: every later run starts alike
    return median_time(once, repeats)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (median reported)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_CONFIG"}
    floor = timed(["-c", "pass"], 0, env, args.repeats)
    old = timed(ALTERNATIVE, 0, env, args.repeats)
    rows = []
    for figure, command, status in COMMANDS:
        seconds = timed(command, status, env, args.repeats)
        print(f"{figure:<52} {seconds:5.2f} s  (interpreter alone {floor:.2f} s)")
        rows.append(
            row(
                figure,
                f"{seconds:.2f} s",
                f"{old:.2f} s",
                seconds / old,
                f"alternative: importing the flow module (Prefect); bare interpreter {floor:.2f} s",
            )
        )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
