"""Store writes: upserting one new session into N ticker files (read, merge, validate, atomic write)
vs rewriting every file from scratch with the full history already in memory.

    python -m bench.store_write [--tickers 500 --years 20 --repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import market, print_table, row
from models.prices import store

FETCHED = pd.Timestamp("2026-01-01", tz="UTC")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    full = market(args.tickers, args.years)
    history = {t: f.iloc[:-1] for t, f in full.items()}
    last_day = {t: f.iloc[-1:] for t, f in full.items()}
    upserts, rewrites = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        for ticker, frame in history.items():
            store.upsert(base, ticker, frame, "sample", FETCHED)
        tables = {t: store.to_store_table(f, "sample", FETCHED) for t, f in full.items()}
        for i in range(args.repeats):
            home = Path(tmp) / f"run{i}"
            shutil.copytree(base, home)
            started = time.perf_counter()
            for ticker, frame in last_day.items():
                store.upsert(home, ticker, frame, "sample", FETCHED + dt.timedelta(days=1))
            upserts.append(time.perf_counter() - started)
            started = time.perf_counter()
            for ticker, table in tables.items():
                store.write_atomic(table, store.price_path(home, ticker, source="sample"))
            rewrites.append(time.perf_counter() - started)
    ours, theirs = sorted(upserts)[len(upserts) // 2], sorted(rewrites)[len(rewrites) // 2]
    rows = [
        row(
            f"store: one new day into {args.tickers} files ({args.years} y each)",
            f"{ours:.2f} s",
            f"{theirs:.2f} s",
            ours / theirs,
            "upsert (read+merge+validate+atomic write) vs atomic rewrite of in-memory tables",
        )
    ]
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
