"""The serving smoke test: a fresh Python process loads a bundle the way consumers do and predicts.

Run after the gate passes and before `champion` moves. A fresh process catches what an in-process
check cannot: a model that only loads because the training process still has its custom objects
registered, a bundle missing a file, a dependency the consumer side lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.prices import reader

# Rows per ticker kept for the smoke test: the window plus generous room for feature warm-up
# (the longest look-back among the features is 21 sessions).
SMOKE_ROWS = 120
LATEST_WINDOWS = 5


class SmokeTestFailure(RuntimeError):
    """The bundle could not be loaded or gave unusable predictions in a fresh process."""


def write_smoke_prices(prices: Mapping[str, pd.DataFrame], path: Path, rows: int = SMOKE_ROWS) -> Path:
    """Write the last `rows` sessions of each ticker into one Parquet file with a `ticker` column.

    Args:
        prices: Ticker -> its stored prices (the store's schema).
        path: Where to write.
        rows: Sessions kept per ticker, counting from the latest.

    Returns:
        `path`.
    """
    frames = [
        frame.sort_values("date").tail(rows).assign(ticker=ticker) for ticker, frame in sorted(prices.items())
    ]
    if not frames:
        raise ValueError("no prices to smoke-test with")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    return path


def read_prices_files(paths: list[str | Path], exchange: str) -> pd.DataFrame:
    """Daily prices from CSV or Parquet files in any shape the folder source reads, one frame.

    Args:
        paths: Files; one without a `ticker` column (and not a yf.download file) holds the ticker
            named by its stem (AAA.csv).
        exchange: The calendar whose session dates timestamps are mapped to (the bundle's).

    Returns:
        Columns ticker, date, open, high, low, close, adj_close, volume and location (file and line).
    """
    return pd.concat([reader.read_price_file(p, exchange) for p in paths], ignore_index=True)


def check_predictions(predictions: pd.DataFrame, classes: list[str]) -> None:
    """Raise SmokeTestFailure unless every probability is finite, in [0, 1] and each row sums to 1."""
    if predictions.empty:
        raise SmokeTestFailure("the predictor returned no rows")
    columns = [f"p_{c}" for c in classes]
    missing = [c for c in columns if c not in predictions.columns]
    if missing:
        raise SmokeTestFailure(f"the predictions lack the columns {missing}")
    probs = predictions[columns].to_numpy(np.float64)
    if not np.isfinite(probs).all():
        bad = predictions.loc[~np.isfinite(probs).all(axis=1)].iloc[0]
        raise SmokeTestFailure(
            f"non-finite probabilities for {bad['ticker']} on {pd.Timestamp(bad['date']).date()} "
            f"({int((~np.isfinite(probs)).any(axis=1).sum())} of {len(probs)} windows)"
        )
    if (probs < -1e-6).any() or (probs > 1 + 1e-6).any():
        raise SmokeTestFailure("probabilities outside [0, 1]")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise SmokeTestFailure(f"probabilities do not sum to 1 (range {sums.min():.4f}..{sums.max():.4f})")


def run_smoke(
    registry_url: str | Path, ref: str, prices_path: str | Path, latest: int = LATEST_WINDOWS
) -> dict:
    """Load `ref` through the consumer API in THIS process and predict the latest windows.

    Raises:
        SmokeTestFailure: on non-finite or malformed probabilities.
        Exception: whatever loading or predicting raised (a RegistryError for a bad bundle).
    """
    from models.registry import Registry

    started = time.perf_counter()
    predictor = Registry(registry_url).load_predictor(ref)
    predictions = predictor.predict(read_prices_files([prices_path], predictor.exchange))
    predictions = predictions.groupby("ticker", sort=True).tail(latest)
    check_predictions(predictions, predictor.classes)
    flagged = predictions["out_of_range"].to_numpy(dtype=bool)
    return {
        "passed": True,
        "reason": None,
        "bundle": str(predictor.bundle),
        "windows": len(predictions),
        "tickers": sorted(predictions["ticker"].unique().tolist()),
        "last_date": str(pd.Timestamp(predictions["date"].max()).date()),
        # Windows with an input beyond ±out_of_range_z train stds: reported, not a failure.
        "out_of_range_windows": int(flagged.sum()),
        "out_of_range_share": round(float(flagged.mean()), 4),
        "out_of_range_z": predictor.out_of_range_z,
        "seconds": round(time.perf_counter() - started, 2),
    }


def smoke_test(registry_url: str | Path, ref: str, prices_path: str | Path, timeout: float = 600) -> dict:
    """Run the smoke test in a fresh Python process (`python -m models smoke ...`).

    Args:
        registry_url: The registry root (a folder or an fsspec URL).
        ref: The version to test, e.g. `updown/8` (not an alias: it is not promoted yet).
        prices_path: Raw daily prices with enough history for a few windows per ticker.
        timeout: Seconds before the process is killed and the test fails.

    Returns:
        `{"passed": bool, "reason": str | None, ...}`; a failure never raises, it is reported.
    """
    root = Path(__file__).resolve().parents[2]  # the checkout holding `models`
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "models",
        "smoke",
        ref,
        "--registry",
        str(registry_url),
        "--prices",
        str(prices_path),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"passed": False, "reason": f"no answer within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
        if done.returncode == 0 or not result.get("passed"):
            return result
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"passed": False, "reason": f"the smoke process exited with status {done.returncode}: {tail}"}


def failure_record(error: BaseException) -> dict:
    """The JSON a failed smoke run prints: the error's type and message, one line."""
    message = " ".join(str(error).split()) or type(error).__name__
    return {"passed": False, "reason": f"{type(error).__name__}: {message}"}
