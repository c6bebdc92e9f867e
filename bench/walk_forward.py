"""Walk-forward evaluation: K folds vs one holdout split, and folds on Dask vs in-process.

    python -m bench.walk_forward [--folds 4] [--repeats 1]

1. The whole judgement of one run (dataset build, training, out-of-sample predictions, baselines,
   pooled evaluation; no Prefect, no publishing) as walk-forward with K folds vs one holdout split,
   each in a fresh process: wall time and the process's peak resident memory.
2. The K fold tasks of the `walk-forward` subflow on a 2-worker local Dask cluster vs Prefect's
   in-process thread runner, against one temporary Prefect API (cluster start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import print_table, row

ROOT = Path(__file__).resolve().parents[1]

JUDGE = """
import json, resource, sys, time
from pathlib import Path
from models.config import PipelineConfig
from tests.helpers import sample_prices

config = PipelineConfig.model_validate_json(sys.argv[1])
out = Path(sys.argv[2])
started = time.perf_counter()
prices = sample_prices(config)
if config.evaluation.scheme == "holdout":
    from models.dataset.build import build_dataset
    from models.training.evaluation import evaluate_run
    from models.training.trainer import train
    info = build_dataset(prices, config, out / "dataset", {"kind": "sample"})
    result = train(info, config, out / "training", log=lambda _m: None)
    evaluate_run(Path(info.path), Path(result.model_path), config.gate, [])
else:
    from models.dataset.build import build_walk_forward
    from models.training.evaluation import evaluate_walk_forward
    from models.training.folds import run_fold
    folds = build_walk_forward(prices, config, out / "dataset", {"kind": "sample"})
    records = [run_fold(f, config, out / f"fold-{f.fold}", log=lambda _m: None) for f in folds]
    evaluate_walk_forward(records, folds, config, out / "evaluation")
print("BENCH " + json.dumps({"seconds": time.perf_counter() - started,
                             "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FOLDS_ON = """
import json, sys, time
from pathlib import Path
from flows.common import with_task_runner
from flows.retrain import walk_forward
from models.config import PipelineConfig
from models.dataset.arrays import load_info

if __name__ == "__main__":
    config = PipelineConfig.model_validate_json(sys.argv[1])
    folds = [load_info(Path(p)) for p in json.loads(sys.argv[2])]
    cluster = {"n_workers": 2, "threads_per_worker": 1} if sys.argv[3] == "dask" else {}
    started = time.perf_counter()
    parallel = sys.argv[3] == "dask"
    records = with_task_runner(walk_forward, sys.argv[3], None, **cluster)(folds, config, sys.argv[4], parallel)
    print("BENCH " + json.dumps({"seconds": time.perf_counter() - started,
                                 "metrics": [r["metrics"]["balanced_accuracy"] for r in records]}))
"""


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    return json.loads(line[len("BENCH ") :])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    from models.config import PipelineConfig
    from tests.helpers import END

    base = {"source": {"end": END.isoformat()}, "evaluation": {"folds": args.folds}}
    walk = PipelineConfig.model_validate(base)
    holdout = PipelineConfig.model_validate({**base, "evaluation": {"scheme": "holdout"}})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"walk": [], "holdout": []}
        for i in range(args.repeats):
            for name, config in (("holdout", holdout), ("walk", walk)):
                runs[name].append(_run(JUDGE, config.model_dump_json(), f"{tmp}/{name}-{i}", env=env))
        w_s, h_s = (statistics.median(r["seconds"] for r in runs[k]) for k in ("walk", "holdout"))
        w_m, h_m = (statistics.median(r["peak_mb"] for r in runs[k]) for k in ("walk", "holdout"))
        rows.append(
            row(
                f"walk-forward {args.folds} folds vs one holdout, wall time",
                f"{w_s:.1f} s",
                f"{h_s:.1f} s",
                w_s / h_s,
                "demo market, default model; build + train + predict + baselines + pooled evaluation",
            )
        )
        rows.append(
            row(
                f"walk-forward {args.folds} folds vs one holdout, peak RSS",
                f"{w_m:,.0f} MB",
                f"{h_m:,.0f} MB",
                w_m / h_m,
                "whole process; folds run one after another",
            )
        )
        folds = sorted(str(p) for p in Path(f"{tmp}/walk-0/dataset").glob("fold-*"))
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            api = {
                **env,
                "PREFECT_API_URL": PREFECT_API_URL.value(),
                "DASK_TEMPORARY_DIRECTORY": f"{tmp}/dask",
            }
            timed = {"thread": [], "dask": []}
            for i in range(args.repeats):
                for runner in ("thread", "dask"):
                    timed[runner].append(
                        _run(
                            FOLDS_ON,
                            walk.model_dump_json(),
                            json.dumps(folds),
                            runner,
                            f"{tmp}/{runner}-{i}",
                            env=api,
                        )
                    )
        same = all(a["metrics"] == b["metrics"] for a, b in zip(timed["thread"], timed["dask"], strict=True))
        d_s, t_s = (statistics.median(r["seconds"] for r in timed[k]) for k in ("dask", "thread"))
        rows.append(
            row(
                f"{args.folds} fold tasks on a 2-worker local Dask cluster vs in-process",
                f"{d_s:.1f} s",
                f"{t_s:.1f} s",
                d_s / t_s,
                f"cluster start-up included; same fold metrics: {same}",
            )
        )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
