"""Normalization stats fitted on the TRAIN split only, persisted as Parquet, always read back.

NOTE (leakage): stats fitted over rows after the train split's end leak the future into every
training window. `fit_normalization` takes the rows it is given; `models.dataset` hands it train
rows only, and the leakage audit refuses any stats file whose fit range reaches past the train split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.prices.store import write_atomic

METADATA_KEY = b"normalization"
STATS_SCHEMA = pa.schema(
    [
        pa.field("feature", pa.string(), nullable=False),
        pa.field("mean", pa.float64(), nullable=False),
        pa.field("std", pa.float64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("std_replaced", pa.bool_(), nullable=False),
    ]
)


POOLED = "pooled"


@dataclass(frozen=True)
class Stats:
    """Mean and std per feature (in feature order), pooled or per ticker, and where they were fitted.

    Pooled: `mean`/`std` have shape [features] and `scopes == ("pooled",)`. Per ticker: shape
    [tickers, features], one row per name in `scopes`.
    """

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: int
    std_replaced: tuple[str, ...]
    metadata: dict[str, object]
    scopes: tuple[str, ...] = (POOLED,)

    @property
    def pooled(self) -> bool:
        return self.scopes == (POOLED,)

    def apply(self, matrix: np.ndarray, tickers: str | np.ndarray | None = None) -> np.ndarray:
        """(x - mean) / std as float32, columns in `features` order.

        Args:
            matrix: [rows, features].
            tickers: For per-ticker stats, the ticker of all rows (a name) or of each row (names).

        Raises:
            ValueError: per-ticker stats and a ticker they were not fitted for.
        """
        if self.pooled:
            return ((matrix - self.mean) / self.std).astype(np.float32)
        names = np.asarray([tickers] if isinstance(tickers, str) or tickers is None else tickers)
        unique, inverse = np.unique(names, return_inverse=True)
        missing = [str(t) for t in unique if t not in self.scopes]
        if missing:
            raise ValueError(
                f"normalization stats are per ticker and have none for {missing} "
                f"(fitted for {list(self.scopes)})"
            )
        rows = np.array([self.scopes.index(t) for t in unique])[inverse]
        if isinstance(tickers, str):
            rows = np.full(len(matrix), rows[0])
        return ((matrix - self.mean[rows]) / self.std[rows]).astype(np.float32)


def apply_to_rows(
    stats: Stats, matrix: np.ndarray, ticker_ids: np.ndarray, tickers: tuple[str, ...]
) -> np.ndarray:
    """Normalize a dataset matrix whose row i belongs to tickers[ticker_ids[i]]."""
    if stats.pooled:
        return stats.apply(matrix)
    return stats.apply(matrix, np.asarray(tickers)[ticker_ids])


def _fit(matrix: np.ndarray, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0)
    if not np.isfinite(mean).all():
        column = features[int(np.argmax(~np.isfinite(mean)))]
        raise ValueError(f"feature {column!r} has a non-finite mean over the train split")
    bad = ~np.isfinite(std) | (std <= 1e-12)
    return mean, np.where(bad, 1.0, std), bad


def fit_normalization(
    train_matrix: np.ndarray,
    features: tuple[str, ...],
    metadata: dict[str, object],
    tickers: np.ndarray | None = None,
) -> Stats:
    """Mean and std (ddof=0) per column over the given train rows.

    Pooled across tickers by default; with `tickers` (the ticker of each train row), one set of
    stats per ticker. A std that is zero or not finite (a feature constant over train, e.g. a
    one-hot category never seen) would turn into 0/0 = NaN inputs; it becomes 1 and the feature is
    listed in `std_replaced`.
    """
    if len(train_matrix) == 0:
        raise ValueError("cannot fit normalization on an empty train split")
    if tickers is None:
        mean, std, bad = _fit(train_matrix, features)
        replaced = tuple(f for f, b in zip(features, bad, strict=True) if b)
        return Stats(features, mean, std, len(train_matrix), replaced, dict(metadata))
    scopes = tuple(str(t) for t in np.unique(tickers))
    fits = [_fit(train_matrix[tickers == t], features) for t in scopes]
    bad = np.any([b for _, _, b in fits], axis=0)
    replaced = tuple(f for f, b in zip(features, bad, strict=True) if b)
    return Stats(
        features,
        np.stack([m for m, _, _ in fits]),
        np.stack([s for _, s, _ in fits]),
        len(train_matrix),
        replaced,
        {**metadata, "scope": "per_ticker"},
        scopes,
    )


def write_stats(stats: Stats, path: Path) -> Path:
    """Write stats.parquet: one row per (scope, feature); fit range, splits and fingerprint as metadata."""
    means = np.atleast_2d(stats.mean)
    stds = np.atleast_2d(stats.std)
    table = pa.table(
        {
            "feature": list(stats.features) * len(stats.scopes),
            "mean": means.astype(np.float64).ravel(),
            "std": stds.astype(np.float64).ravel(),
            "count": [stats.count] * (len(stats.features) * len(stats.scopes)),
            "scope": [s for s in stats.scopes for _ in stats.features],
            "std_replaced": [f in stats.std_replaced for _ in stats.scopes for f in stats.features],
        },
        schema=STATS_SCHEMA,
    )
    meta = {**stats.metadata, "feature_order": list(stats.features), "scopes": list(stats.scopes)}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    write_atomic(table, path)
    return path


def read_stats(path: Path) -> Stats:
    """Read stats back; the feature order is the file's, as recorded at fit time."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a stats file (no {METADATA_KEY.decode()!r} metadata)")
    meta = json.loads(raw)
    order = tuple(meta["feature_order"])
    scopes = tuple(meta.get("scopes", [POOLED]))
    frame = table.to_pandas().set_index(["scope", "feature"])
    index = pd.MultiIndex.from_product([scopes, order])
    frame = frame.loc[index]
    shape = (len(scopes), len(order))
    mean = frame["mean"].to_numpy().reshape(shape)
    std = frame["std"].to_numpy().reshape(shape)
    replaced = tuple(
        f for j, f in enumerate(order) if frame["std_replaced"].to_numpy().reshape(shape)[:, j].any()
    )
    pooled = scopes == (POOLED,)
    return Stats(
        features=order,
        mean=mean[0] if pooled else mean,
        std=std[0] if pooled else std,
        count=int(frame["count"].iloc[0]),
        std_replaced=replaced,
        metadata={k: v for k, v in meta.items() if k not in ("feature_order", "scopes")},
        scopes=scopes,
    )


def stats_frame(path: Path) -> pd.DataFrame:
    """The stats as a plain DataFrame (what a consumer without project code would read)."""
    return pq.read_table(path).to_pandas()
