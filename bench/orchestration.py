"""Orchestration overhead: the retrain flow vs the same models/ calls in a plain script
(bench/plain_pipeline.py), same config, fresh data homes, alternating, each in a fresh process.

Both talk to one Prefect API started here (as a deployment talks to its server), so the figures
are what Prefect adds per run: task and state bookkeeping, artifacts, events, the ingest subflow.
Reported twice: the run itself (timed inside the process, TensorFlow already imported on both sides)
and the whole process (imports included).
Starting a temporary API per process, as `python -m flows.retrain` without PREFECT_API_URL does, adds
a fixed start-up on top; it is printed separately.

    python -m bench.orchestration [--repeats 2]
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
CONFIG = '{"source": {"end": "2025-12-31"}}'

WORKER = """
import json, sys, time
from pathlib import Path
import tensorflow  # both sides: the flow imports it lazily inside a task, the script at import
from models.config import PipelineConfig
config = PipelineConfig.model_validate_json(sys.argv[2])
if sys.argv[1] == "flow":
    from flows.retrain import retrain
    started = time.perf_counter()
    retrain(config, sys.argv[3])
else:
    from bench.plain_pipeline import run
    started = time.perf_counter()
    run(config, Path(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def timed(args: list[str], env: dict) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    whole = time.perf_counter() - started
    inner = json.loads(done.stdout.strip().splitlines()[-1])["seconds"] if args[0] == "-c" else whole
    return inner, whole


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    runs: dict[str, list[tuple[float, float]]] = {"flow": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        base_env = {
            **os.environ,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_ENABLE_ONEDNN_OPTS": "0",
            "KERAS_HOME": f"{tmp}/keras",
        }
        # What a CLI run without a server pays on top: its own temporary API (PREFECT_HOME warm).
        cli_env = {**base_env, "PREFECT_HOME": f"{tmp}/prefect-cli"}
        cli_env.pop("PREFECT_API_URL", None)
        config_file = Path(tmp) / "config.json"
        config_file.write_text(CONFIG)
        cli = ["-m", "flows.retrain", "--config", str(config_file), "--force"]
        timed([*cli, "--home", f"{tmp}/cli-warm"], cli_env)
        _, cli_whole = timed([*cli, "--home", f"{tmp}/cli"], cli_env)
        with prefect_test_harness(server_startup_timeout=120):
            env = {**base_env, "PREFECT_API_URL": PREFECT_API_URL.value()}
            timed(["-c", WORKER, "flow", CONFIG, f"{tmp}/warm"], env)  # first-use costs on both sides
            for i in range(args.repeats):
                for mode in ("flow", "plain"):
                    runs[mode].append(timed(["-c", WORKER, mode, CONFIG, f"{tmp}/{mode}{i}"], env))
    rows = []
    for k, what in ((0, "the run itself"), (1, "whole process")):
        flow = statistics.median(r[k] for r in runs["flow"])
        plain = statistics.median(r[k] for r in runs["plain"])
        rows.append(
            row(
                f"orchestration: full retrain, flow vs plain script, {what}",
                f"{flow:.1f} s",
                f"{plain:.1f} s",
                flow / plain,
                f"Prefect adds {flow - plain:+.1f} s = {(flow - plain) / plain:+.1%}",
            )
        )
    flow_whole = statistics.median(r[1] for r in runs["flow"])
    print(
        f"`python -m flows.retrain` with its own temporary API: {cli_whole:.1f} s (vs {flow_whole:.1f} s against a running server)"
    )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
