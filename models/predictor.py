"""The consumer side: load a published bundle and predict from raw daily prices.

The predictor applies exactly what training used, read from the bundle: the feature order, the
window length and the normalization stats in `stats.parquet`. Nothing is refitted on new data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from models.evaluation import predict_windows
from models.features import compute_features
from models.normalization import Stats, read_stats
from models.registry import BundleRef, Registry


@dataclass
class Predictor:
    bundle: BundleRef
    manifest: dict
    model: keras.Model
    stats: Stats

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["labels"]["classes"])

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    def predict(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities for every day that ends a complete window, per ticker.

        Args:
            prices: Daily prices in the store's columns (date, open, high, low, close, adj_close,
                volume), with a `ticker` column for several tickers.

        Returns:
            Columns ticker, date, p_<class> for each class in order, and `label`.
        """
        frames = dict(tuple(prices.groupby("ticker", sort=True))) if "ticker" in prices else {"": prices}
        out = []
        for ticker, frame in frames.items():
            frame = frame.sort_values("date").reset_index(drop=True)
            feats = compute_features(frame, self.stats.features)
            if len(feats) < self.window:
                raise ValueError(
                    f"{ticker or 'prices'}: {len(feats)} usable rows after warm-up, "
                    f"need at least the window of {self.window}"
                )
            matrix = self.stats.apply(feats[list(self.stats.features)].to_numpy(np.float64), ticker)
            ends = np.arange(self.window - 1, len(feats))
            probs = predict_windows(self.model, matrix, ends, self.window)
            result = pd.DataFrame({"ticker": ticker, "date": feats["date"].to_numpy()[ends]})
            for k, name in enumerate(self.classes):
                result[f"p_{name}"] = probs[:, k]
            result["label"] = np.asarray(self.classes)[probs.argmax(axis=1)]
            out.append(result)
        return pd.concat(out, ignore_index=True)


def load_predictor(registry: Registry | str | Path, ref: str) -> Predictor:
    """Resolve `ref`, verify the bundle's checksums, and load its model (safe_mode) and stats.

    Args:
        registry: A Registry, or its root (a folder or an fsspec URL such as s3://bucket/prefix).
        ref: `name@champion`, `name@latest`, `name/7`, or a bare `name` (the champion).

    Raises:
        RegistryError: the reference does not resolve, the schema_version is unknown, or a file
            does not match its sha256 in the manifest.
    """
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    bundle = reg.resolve(ref)
    manifest = reg.verify(bundle)
    folder = reg.local_path(bundle)  # verified above; in an object store, the downloaded copy
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    stats = read_stats(folder / "stats.parquet")
    if list(stats.features) != list(manifest["features"]):
        raise ValueError(
            f"{bundle}: stats features {stats.features} differ from manifest {manifest['features']}"
        )
    return Predictor(bundle, manifest, model, stats)
