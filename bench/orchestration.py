"""Orchestration overhead: the retrain flow under Prefect's temporary API vs the same models/ calls
in a plain script (bench/plain_pipeline.py). Both run as fresh processes on fresh data homes with
the same config, alternating, so each includes interpreter start, imports and training.

    python -m bench.orchestration [--repeats 2]
"""

from __future__ import annotations

import argparse
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


def timed(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    flows, plains = [], []
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(CONFIG)
        env = {
            **os.environ,
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_ENABLE_ONEDNN_OPTS": "0",
        }
        env.pop("PREFECT_API_URL", None)
        timed(
            ["-m", "flows.retrain", "--config", str(config_file), "--home", f"{tmp}/warmup"], env
        )  # migrations
        for i in range(args.repeats):
            flows.append(
                timed(["-m", "flows.retrain", "--config", str(config_file), "--home", f"{tmp}/flow{i}"], env)
            )
            plains.append(
                timed(["-m", "bench.plain_pipeline", "--config", CONFIG, "--home", f"{tmp}/plain{i}"], env)
            )
    flow, plain = statistics.median(flows), statistics.median(plains)
    rows = [
        row(
            "orchestration: full retrain, Prefect flow vs plain script",
            f"{flow:.1f} s",
            f"{plain:.1f} s",
            flow / plain,
            f"overhead {flow - plain:+.1f} s = {(flow - plain) / plain:+.1%} of a full retrain",
        )
    ]
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
