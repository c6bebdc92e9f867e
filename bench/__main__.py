"""Run every benchmark and print one table (`make bench`). Each figure is measured side by side with
its alternative in the same run; see bench/RESULTS.md for the latest numbers and what limits them.

    python -m bench [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from bench import cli, dataset_build, input_pipeline, noop_vs_full, orchestration, store_write, walk_forward
from bench.common import machine, print_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    if args.quick:
        rows += input_pipeline.main(["--sizes", "50x10", "--repeats", "1", "--steps", "100"])
        rows += dataset_build.main(["--sizes", "50,200", "--repeats", "1"])
        rows += store_write.main(["--tickers", "100", "--repeats", "1"])
        rows += noop_vs_full.main(["--repeats", "1"])
        rows += orchestration.main(["--repeats", "1"])
        rows += walk_forward.main(["--repeats", "1"])
        rows += cli.main(["--repeats", "3"])
    else:
        rows += input_pipeline.main(["--sizes", "50x10", "--repeats", "3", "--steps", "150"])
        rows += input_pipeline.main(["--sizes", "500x20", "--repeats", "1", "--steps", "150"])
        rows += dataset_build.main(["--sizes", "50,200,500", "--repeats", "3"])
        rows += store_write.main(["--tickers", "500", "--repeats", "3"])
        rows += noop_vs_full.main(["--repeats", "2"])
        rows += orchestration.main(["--repeats", "2"])
        rows += walk_forward.main(["--repeats", "2"])
        rows += cli.main(["--repeats", "7"])
    print()
    print(f"## {dt.date.today()} — {machine()}")
    print()
    print_table(rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
