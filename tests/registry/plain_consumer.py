"""Read a published bundle with keras, pyarrow, numpy and json only: none of this project's code.

    python plain_consumer.py BUNDLE_DIR PRICES.parquet OUT.npz

This file is the README's recipe, kept runnable so a test proves it: check the listing and the
checksums in manifest.json, load model.keras with safe_mode, normalize with stats.parquet, window,
predict.
PRICES.parquet holds one ticker's daily rows (date, open, high, low, close, adj_close, volume) on
consecutive sessions of the exchange (the package drops windows that span a missing session).
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pyarrow.parquet as pq


def verify(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    if manifest["schema_version"] != 1:
        raise ValueError(f"unsupported schema_version {manifest['schema_version']}")
    names = set(manifest["files"])
    if not all(re.fullmatch(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*", n) for n in names):
        raise ValueError(f"manifest.json lists a file name that is not a plain name: {sorted(names)}")
    if not {"model.keras", "stats.parquet"} <= names:
        raise ValueError("manifest.json does not list model.keras and stats.parquet")
    if {p.name for p in bundle.iterdir()} != names | {"manifest.json"}:
        raise ValueError("the bundle holds files its manifest does not list, or lacks listed ones")
    for name, entry in manifest["files"].items():
        digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ValueError(f"{name} does not match manifest.json: refusing to load")
    return manifest


def shifted(x: np.ndarray, k: int) -> np.ndarray:
    """x[t - k], NaN for the first k rows."""
    return np.concatenate([np.full(k, np.nan), x[:-k]])


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample std (ddof=1) of the last n values, NaN until n values exist (or any is NaN)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(x, n).std(axis=1, ddof=1)
    return out


def features(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feature formulas, by the names manifest.json lists (day t uses rows <= t only)."""
    log_adj = np.log(p["adj_close"])
    log_return = log_adj - shifted(log_adj, 1)
    span = p["high"] - p["low"]
    with np.errstate(divide="ignore", invalid="ignore"):
        close_location = np.where(span > 0, (p["close"] - p["low"]) / span, 0.5)
    # A zero volume is a session without a volume print: carry the last traded volume over it.
    volume = p["volume"].astype(np.float64)
    last = np.where(volume > 0, np.arange(len(volume)), -1)
    np.maximum.accumulate(last, out=last)
    log_volume = np.log1p(np.where(last >= 0, volume[np.maximum(last, 0)], np.nan))
    volume_change = np.nan_to_num(log_volume - shifted(log_volume, 1), nan=0.0)
    volume_change[:1] = np.nan  # the first row has no previous one
    return {
        "log_return": log_return,
        "intraday_range": span / p["close"],
        "close_location": close_location,
        "log_volume_change": volume_change,
        "momentum_20": log_adj - shifted(log_adj, 20),
        "volatility_20": rolling_std(log_return, 20),
    }


def predict(bundle: Path, prices_path: Path, ticker: str = "") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Dates that end a complete window, their class probabilities, and the class names."""
    manifest = verify(bundle)
    model = keras.saving.load_model(bundle / "model.keras", safe_mode=True)
    stats = pq.read_table(bundle / "stats.parquet").to_pydict()
    order = manifest["features"]  # the column order the model was trained with
    # scope is "pooled", or the ticker when the model was trained with per-ticker stats.
    scope = "pooled" if "pooled" in stats["scope"] else ticker
    row = {
        name: i
        for i, (name, s) in enumerate(zip(stats["feature"], stats["scope"], strict=True))
        if s == scope
    }
    # z = (x - center) / scale, clipped to ±clip (center/scale are mean/std, or median/IQR for the
    # features trained with robust normalization; clip is +inf unless robust).
    center = np.array([stats["center"][row[n]] for n in order])
    scale = np.array([stats["scale"][row[n]] for n in order])
    clip = np.array([stats["clip"][row[n]] for n in order])

    table = pq.read_table(prices_path).sort_by("date")
    prices = {c: table.column(c).to_numpy() for c in ("high", "low", "close", "adj_close", "volume")}
    dates = table.column("date").to_numpy()
    computed = features(prices)
    matrix = np.column_stack([computed[name] for name in order])
    first = int(np.argmax(np.isfinite(matrix).all(axis=1)))  # drop the warm-up rows
    matrix, dates = matrix[first:], dates[first:]
    x = np.clip((matrix - center) / scale, -clip, clip).astype(np.float32)  # training's stats, never refitted

    window = int(manifest["window"])
    windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)
    probs = model.predict(np.ascontiguousarray(windows), verbose=0)
    return dates[window - 1 :], probs, manifest["labels"]["classes"]


if __name__ == "__main__":
    bundle, prices_path, out = (Path(a) for a in sys.argv[1:4])
    dates, probs, classes = predict(bundle, prices_path, prices_path.stem)
    np.savez(out, dates=dates, probs=probs, classes=np.array(classes))
    project = sorted(m for m in sys.modules if m.split(".")[0] in ("models", "tasks", "flows", "tests"))
    print(json.dumps({"windows": len(probs), "project_modules": project}))
