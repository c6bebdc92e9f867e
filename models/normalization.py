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

from models.store import write_atomic

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


@dataclass(frozen=True)
class Stats:
    """Per-feature mean and std, in feature order, plus where they were fitted."""

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: int
    std_replaced: tuple[str, ...]
    metadata: dict[str, object]

    def apply(self, matrix: np.ndarray) -> np.ndarray:
        """(x - mean) / std, as float32, columns in `features` order."""
        return ((matrix - self.mean) / self.std).astype(np.float32)


def fit_normalization(
    train_matrix: np.ndarray, features: tuple[str, ...], metadata: dict[str, object]
) -> Stats:
    """Mean and std (ddof=0) per column over the given train rows, pooled across tickers.

    A std that is zero or not finite (a feature constant over train, e.g. a weekday never seen)
    would turn into 0/0 = NaN inputs; it becomes 1 and the feature is listed in `std_replaced`.
    """
    if len(train_matrix) == 0:
        raise ValueError("cannot fit normalization on an empty train split")
    mean = train_matrix.mean(axis=0)
    std = train_matrix.std(axis=0)
    bad = ~np.isfinite(std) | (std <= 1e-12)
    if not np.isfinite(mean).all():
        column = features[int(np.argmax(~np.isfinite(mean)))]
        raise ValueError(f"feature {column!r} has a non-finite mean over the train split")
    std = np.where(bad, 1.0, std)
    replaced = tuple(f for f, b in zip(features, bad, strict=True) if b)
    return Stats(features, mean, std, len(train_matrix), replaced, dict(metadata))


def write_stats(stats: Stats, path: Path) -> Path:
    """Write stats.parquet: one row per feature; fit range, splits and fingerprint as metadata."""
    table = pa.table(
        {
            "feature": list(stats.features),
            "mean": stats.mean.astype(np.float64),
            "std": stats.std.astype(np.float64),
            "count": [stats.count] * len(stats.features),
            "scope": ["pooled"] * len(stats.features),
            "std_replaced": [f in stats.std_replaced for f in stats.features],
        },
        schema=STATS_SCHEMA,
    )
    meta = {**stats.metadata, "feature_order": list(stats.features)}
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
    frame = table.to_pandas()
    order = tuple(meta["feature_order"])
    frame = frame.set_index("feature").loc[list(order)]
    replaced = tuple(frame.index[frame["std_replaced"].to_numpy()])
    return Stats(
        features=order,
        mean=frame["mean"].to_numpy(),
        std=frame["std"].to_numpy(),
        count=int(frame["count"].iloc[0]),
        std_replaced=replaced,
        metadata={k: v for k, v in meta.items() if k != "feature_order"},
    )


def stats_frame(path: Path) -> pd.DataFrame:
    """The stats as a plain DataFrame (what a consumer without project code would read)."""
    return pq.read_table(path).to_pandas()
