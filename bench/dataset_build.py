"""Dataset build (features + split + stats + labels + window index, from the price files) vs the
floor: a bare pyarrow read of the same files followed by a numpy z-score of the same columns.
Also the growth with the number of tickers, to show it is linear.

    python -m bench.dataset_build [--sizes 50,200,500 --years 20 --repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import END, market, median_time, print_table, row
from models.config import PipelineConfig
from models.dataset.build import build_dataset
from models.prices import sources, store
from models.prices.freshness import stored_prices

LABEL = sources.source_label(PipelineConfig().source)  # what the dataset build reads back


def write_store(home: Path, tickers: int, years: int) -> list[str]:
    fetched = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for ticker, frame in market(tickers, years).items():
        store.upsert(home, ticker, frame, LABEL, fetched)
    return sorted(p.stem for p in store.namespace(home, LABEL).glob("*.parquet"))


def project(home: Path, names: list[str], out: Path, config: PipelineConfig) -> None:
    prices = stored_prices(config.source, home, names, END)
    build_dataset(prices, config, out, {"kind": "sample"})


def floor(home: Path, names: list[str]) -> None:
    columns = ["open", "high", "low", "close", "adj_close", "volume"]
    tables = [pq.read_table(store.price_path(home, t, source=LABEL), columns=columns) for t in names]
    matrix = np.concatenate(
        [np.column_stack([t.column(c).to_numpy().astype(np.float64) for c in columns]) for t in tables]
    )
    ((matrix - matrix.mean(axis=0)) / matrix.std(axis=0)).astype(np.float32)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    config = PipelineConfig.model_validate({"source": {"start": f"{END.year - args.years}-01-02"}})
    rows, per_ticker = [], {}
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            names = write_store(home, size, args.years)
            ours = median_time(
                functools.partial(project, home, names, home / "dataset", config), args.repeats
            )
            base = median_time(functools.partial(floor, home, names), args.repeats)
        per_ticker[size] = ours / size
        rows.append(
            row(
                f"dataset build, {size} tickers x {args.years} y",
                f"{ours:.2f} s",
                f"{base:.2f} s",
                ours / base,
                "vs pyarrow read + numpy z-score",
            )
        )
    sizes = sorted(per_ticker)
    if len(sizes) > 1:
        growth = per_ticker[sizes[-1]] / per_ticker[sizes[0]]
        rows.append(
            row(
                f"growth: time per ticker at {sizes[-1]} vs {sizes[0]} tickers",
                f"{per_ticker[sizes[-1]] * 1000:.1f} ms",
                f"{per_ticker[sizes[0]] * 1000:.1f} ms",
                growth,
                "1.0 = linear",
            )
        )
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
