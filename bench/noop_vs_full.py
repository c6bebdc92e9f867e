"""A nightly run with nothing new vs a full run: wall time side by side, and whether TensorFlow loaded.

Both runs are the demo's retrain flow (sample market, default config) on one data home, each in a
fresh Python process against one shared Prefect API (as under a real server), so the second one
finds the champion trained on the same data and skips.

    python -m bench.noop_vs_full [--repeats 2]

Prints, per run: the flow's own wall time, the process's wall time (imports included), and whether
`tensorflow` was imported; then the no-op/full ratios of both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_table, row

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, time
from flows.retrain import retrain
from models.config import PipelineConfig

started = time.perf_counter()
summary = retrain(PipelineConfig(), sys.argv[1], force=sys.argv[2] == "force")
print("BENCH " + json.dumps({"flow_s": time.perf_counter() - started, "verdict": summary["verdict"],
                             "tensorflow": "tensorflow" in sys.modules}))
"""


def run(home: Path, env: dict[str, str], force: bool) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(home), "force" if force else "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    process_s = time.perf_counter() - started
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    return {**json.loads(line[len("BENCH ") :]), "process_s": process_s}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2, help="full + no-op pairs (medians reported)")
    args = parser.parse_args(argv)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "KERAS_HOME": f"{tmp}/keras"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        full, noop = [], []
        for i in range(args.repeats):
            home = Path(tmp) / f"home-{i}"
            full.append(run(home, env, force=False))
            noop.append(run(home, env, force=False))
    for name, runs in (("full", full), ("no-op", noop)):
        for r in runs:
            print(
                f"{name:<6} flow {r['flow_s']:6.1f} s  process {r['process_s']:6.1f} s  "
                f"verdict {r['verdict']:<9} tensorflow imported: {r['tensorflow']}"
            )
    rows = []
    for key, what in (("flow_s", "flow run"), ("process_s", "whole process")):
        a, b = statistics.median(r[key] for r in noop), statistics.median(r[key] for r in full)
        print(f"no-op / full, {key[:-2]} wall time (medians): {a:.1f} s / {b:.1f} s = {a / b:.1%}")
        tf_noop = any(r["tensorflow"] for r in noop)
        rows.append(
            row(
                f"no-op nightly vs full retrain, {what}",
                f"{a:.1f} s",
                f"{b:.1f} s",
                a / b,
                f"same data, same config; TensorFlow imported in the no-op run: {tf_noop}",
            )
        )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
