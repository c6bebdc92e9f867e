"""The consumer side: load a published bundle and predict from raw daily prices.

The predictor applies exactly what training used, read from the bundle: the feature order, the
window length, the normalization stats in `stats.parquet`, and the same reading of the prices (one
reader, `models.prices.reader`; the same validation; windows that never span a missing session).
Nothing is refitted on new data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from models.dataset.features import compute_features
from models.dataset.normalization import Stats, read_stats
from models.prices import reader, store
from models.registry.bundle import BundleRef, RegistryError
from models.training.evaluation import predict_windows

DEFAULT_OUT_OF_RANGE_Z = 10.0


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

    @property
    def exchange(self) -> str:
        """The calendar the model was trained on: dates map to its sessions, gaps are its sessions."""
        return str((self.manifest.get("source") or {}).get("exchange") or "XNYS")

    @property
    def out_of_range_z(self) -> float:
        """The |z| beyond which a window is flagged, as configured when the bundle was trained."""
        registry = (self.manifest.get("config") or {}).get("registry") or {}
        return float(registry.get("out_of_range_z", DEFAULT_OUT_OF_RANGE_Z))

    def validation_rules(self) -> store.ValidationRules:
        """The ingest's checks, from the training config: what the store refuses, predict refuses."""
        source = (self.manifest.get("config") or {}).get("source") or {}
        return store.ValidationRules(
            exchange=self.exchange,
            max_daily_move=source.get("max_daily_move"),
            max_price=source.get("max_price"),
            max_volume=source.get("max_volume"),
        )

    def predict(
        self, prices: pd.DataFrame, max_abs_z: float | None = None, since: object | None = None
    ) -> pd.DataFrame:
        """Class probabilities for every day that ends a complete window, per ticker.

        Args:
            prices: Daily prices in any shape the folder source reads (see models.prices.reader):
                the store's columns, a `Ticker.history()` or `yf.download()` frame, with a `ticker`
                column for several tickers. Rows are sorted by date; the ingest's validation applies.
            max_abs_z: Flag a window when any normalized input in it lies beyond ±this (before any
                clipping); default: the bundle's `registry.out_of_range_z` (10).
            since: Only windows ending on or after this date (the features still use every row
                before it): what a nightly run needs, without predicting the whole history.

        Returns:
            Columns ticker, date, p_<class> for each class in order, `label`, `max_abs_z` (the
            largest |normalized input| in the window) and `out_of_range` (max_abs_z > the bound).
            A window whose inputs would span a missing session of the exchange is not predicted.

        Raises:
            ValueError: prices that cannot be read or break a validation rule (naming ticker, date,
                column, and file and line when read from a file), or too few rows for one window.
        """
        bound = self.out_of_range_z if max_abs_z is None else float(max_abs_z)
        frame = reader.price_frame(prices, self.exchange)
        rules = self.validation_rules()
        first = None if since is None else np.datetime64(pd.Timestamp(since), "ns")
        out = []
        for ticker, one in frame.groupby("ticker", sort=True):
            one = one.sort_values("date", kind="stable").reset_index(drop=True)
            store.validate_prices(ticker or "prices", one, rules)
            feats = compute_features(one, self.stats.features, self.exchange)
            ends = np.flatnonzero(feats["position"].to_numpy() >= self.window - 1)
            if len(ends) == 0:
                raise ValueError(
                    f"{ticker or 'prices'}: {len(feats)} usable rows after warm-up"
                    + (f" in {feats['segment'].nunique()} gap-free runs" if len(feats) else "")
                    + f", need at least the window of {self.window} consecutive sessions"
                )
            if first is not None:
                ends = ends[feats["date"].to_numpy(dtype="datetime64[ns]")[ends] >= first]
                if len(ends) == 0:
                    continue
            raw = feats[list(self.stats.features)].to_numpy(np.float64)
            scope = ticker if not self.stats.pooled else None
            z = np.abs(self.stats.zscores(raw, scope))
            matrix = self.stats.apply(raw, scope)
            probs = predict_windows(self.model, matrix, ends, self.window)
            result = pd.DataFrame({"ticker": ticker, "date": feats["date"].to_numpy()[ends]})
            for k, name in enumerate(self.classes):
                result[f"p_{name}"] = probs[:, k]
            result["label"] = np.asarray(self.classes)[probs.argmax(axis=1)]
            per_row = z.max(axis=1)
            window_max = np.lib.stride_tricks.sliding_window_view(per_row, self.window)[
                ends - self.window + 1
            ]
            result["max_abs_z"] = window_max.max(axis=1)
            result["out_of_range"] = result["max_abs_z"] > bound
            out.append(result)
        if not out:  # every window ended before `since`
            columns = ["ticker", "date", *(f"p_{c}" for c in self.classes), "label", "max_abs_z"]
            return pd.DataFrame({c: [] for c in columns}).assign(out_of_range=pd.Series(dtype=bool))
        return pd.concat(out, ignore_index=True)


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, nested models' layers included."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_layers(layer))
    return out
