"""Shared helpers for the benchmarks: the machine line, medians, a sample market of any size."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from models.prices import sample

END = dt.date(2025, 12, 31)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{os.cpu_count()} cores", cpu, f"Python {platform.python_version()}"]
    try:
        from importlib.metadata import version

        parts.append(f"TensorFlow {version('tensorflow-cpu')}")
    except Exception:
        pass
    return ", ".join(parts)


def tickers(n: int) -> list[str]:
    return [f"T{i:03d}" for i in range(n)]


def market(n_tickers: int, years: int, variant: str = "signal") -> dict[str, pd.DataFrame]:
    start = dt.date(END.year - years, 1, 2)
    return {t: sample.generate(t, END, start=start, variant=variant) for t in tickers(n_tickers)}


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(figure: str, ours: str, theirs: str, ratio: float, note: str = "") -> dict[str, str]:
    return {
        "figure": figure,
        "this project": ours,
        "alternative": theirs,
        "ratio": f"{ratio:.3f}",
        "note": note,
    }


def print_table(rows: list[dict[str, str]]) -> None:
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for r in rows:
        print("| " + " | ".join(r[h] for h in headers) + " |")
