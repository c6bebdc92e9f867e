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

from models.dataset.features import compute_features
from models.dataset.normalization import Stats, read_stats
from models.registry.bundle import BundleRef, RegistryError
from models.training.evaluation import predict_windows


@dataclass
class Predictor:
    bundle: BundleRef
    manifest: dict
    model: keras.Model
    stats: Stats

    @classmethod
    def from_folder(cls, bundle: BundleRef, manifest: dict, folder: Path) -> Predictor:
        """Load the model (safe_mode) and stats of a bundle whose files in `folder` were verified.

        Use `Registry.load_predictor(ref)`, which resolves and verifies the bundle first.
        """
        model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
        stateful = [layer.name for layer in _layers(model) if getattr(layer, "stateful", False)]
        if stateful:
            raise RegistryError(
                f"{bundle}: model.keras has stateful layers ({', '.join(stateful)}), whose answers "
                "depend on earlier calls: the same window would get different probabilities; "
                "refusing to serve it (retrain with model.stateful = false)"
            )
        stats = read_stats(folder / "stats.parquet")
        if list(stats.features) != list(manifest["features"]):
            raise ValueError(
                f"{bundle}: stats features {stats.features} differ from manifest {manifest['features']}"
            )
        return cls(bundle, manifest, model, stats)

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


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, nested models' layers included."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_layers(layer))
    return out
