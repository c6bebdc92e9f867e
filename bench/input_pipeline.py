"""Training throughput and memory: the project's window index (`window_dataset`) vs bare `model.fit`
on the same windows pre-materialized as one numpy array. Same model, batch, steps.

Each side runs in its own subprocess so peak memory is measured separately.

    python -m bench.input_pipeline [--tickers 50 --years 10 --steps 150 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(mode: str, tickers: int, years: int, steps: int, batch: int) -> dict:
    import numpy as np

    from bench.common import market, peak_rss_mb
    from models.config import PipelineConfig
    from models.dataset.arrays import load_arrays
    from models.dataset.build import build_dataset

    config = PipelineConfig.model_validate({"training": {"batch_size": batch}})
    with tempfile.TemporaryDirectory() as tmp:
        info = build_dataset(market(tickers, years), config, Path(tmp), {"kind": "sample"})
        arrays = load_arrays(Path(tmp))
    import keras

    from models.dataset.normalization import read_stats  # noqa: F401  (stats are applied below)
    from models.dataset.windows import gather
    from models.training.network import build_model, compile_model
    from models.training.trainer import balanced_class_weight, window_dataset

    keras.utils.set_random_seed(0)
    stats_mean = arrays.matrix[arrays.ends["train"]].mean(axis=0)
    stats_std = arrays.matrix[arrays.ends["train"]].std(axis=0)
    matrix = ((arrays.matrix - stats_mean) / stats_std).astype(np.float32)
    ends = arrays.ends["train"]
    labels = arrays.labels
    weights = balanced_class_weight(labels[ends])
    before = peak_rss_mb()
    if mode == "index":
        data = window_dataset(
            matrix, ends, labels, config.window.length, batch, shuffle=True, class_weight=weights
        )
        input_bytes = matrix.nbytes + ends.nbytes + labels.nbytes
        fit_args = {"x": data.repeat()}
    else:
        x = gather(matrix, ends, config.window.length)  # [N, window, features]
        y = labels[ends]
        input_bytes = x.nbytes + y.nbytes
        fit_args = {"x": x, "y": y, "batch_size": batch, "shuffle": True, "class_weight": weights}
    model = build_model(config.model, config.window.length, len(info.features))
    compile_model(model, config.model, config.training)
    steps = min(steps, len(ends) // batch)
    model.fit(**fit_args, epochs=1, steps_per_epoch=5, verbose=0)  # warm-up: tracing, first batches
    started = time.perf_counter()
    model.fit(**fit_args, epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "windows": int(len(ends)),
        "rows": int(len(matrix)),
        "samples_per_s": steps * batch / seconds,
        "input_mb": input_bytes / 2**20,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_fit_mb": before,
    }


def measure(tickers: int, years: int, steps: int, batch: int, repeats: int) -> dict[str, dict]:
    out: dict[str, list[dict]] = {"index": [], "numpy": []}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    for _ in range(repeats):
        for mode in ("index", "numpy"):  # alternate so drift on a noisy machine hits both
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.input_pipeline",
                    "--worker",
                    mode,
                    "--tickers",
                    str(tickers),
                    "--years",
                    str(years),
                    "--steps",
                    str(steps),
                    "--batch",
                    str(batch),
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            out[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def median(mode: str, key: str) -> float:
        values = sorted(r[key] for r in out[mode])
        return values[len(values) // 2]

    return {
        mode: {k: median(mode, k) for k in ("samples_per_s", "input_mb", "peak_rss_mb")}
        | {"windows": out[mode][0]["windows"], "rows": out[mode][0]["rows"]}
        for mode in out
    }


def main(argv: list[str] | None = None) -> list[dict]:
    from bench.common import machine, print_table, row

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", choices=["index", "numpy"])
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=None, help="e.g. 50x10,500x20 (tickers x years)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.tickers, args.years, args.steps, args.batch)))
        return []
    sizes = [tuple(map(int, s.split("x"))) for s in (args.sizes or f"{args.tickers}x{args.years}").split(",")]
    rows = []
    for tickers, years in sizes:
        m = measure(tickers, years, args.steps, args.batch, args.repeats)
        i, n = m["index"], m["numpy"]
        label = f"{tickers} tickers x {years} y ({i['windows']:,} train windows)"
        rows.append(
            row(
                f"train throughput, {label}",
                f"{i['samples_per_s']:,.0f}/s",
                f"{n['samples_per_s']:,.0f}/s",
                i["samples_per_s"] / n["samples_per_s"],
                "window index vs materialized numpy",
            )
        )
        rows.append(
            row(
                f"input memory, {label}",
                f"{i['input_mb']:,.1f} MB",
                f"{n['input_mb']:,.1f} MB",
                i["input_mb"] / n["input_mb"],
                "rows x features vs windows x window x features",
            )
        )
        rows.append(
            row(
                f"peak RSS, {label}",
                f"{i['peak_rss_mb']:,.0f} MB",
                f"{n['peak_rss_mb']:,.0f} MB",
                i["peak_rss_mb"] / n["peak_rss_mb"],
                "whole training process",
            )
        )
    print(f"machine: {machine()}")
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
