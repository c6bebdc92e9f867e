"""Normalization stats fitted on the TRAIN split only, persisted as Parquet, always read back.

NOTE (leakage): stats fitted over rows after the train split's end leak the future into every
training window. `fit_normalization` takes the rows it is given; `models.dataset` hands it train
rows only, and the leakage audit refuses any stats file whose fit range reaches past the train split.

Each feature is normalized as z = (x - center) / scale, then clipped to [-clip, clip]:

- method `zscore` (the default): center = mean, scale = std (ddof=0), no clip (clip = +inf);
- method `robust` (opt-in per feature, for heavy tails): center = median, scale = IQR / 1.349 (equal
  to the std for normal data), clip = `FeatureConfig.robust_clip`. A zero IQR falls back to the std.

stats.parquet holds, per (scope, feature): mean, std, count, scope, std_replaced, method, center,
scale, clip. `mean` and `std` are always the true mean and std; `center`, `scale` and `clip` are what
is applied, so a consumer without this package reproduces the inputs exactly.

It also holds, for drift monitoring (models.monitoring.drift), each feature's train distribution on
train-fitted bins: `bin_edges` (the distinct train deciles of the raw feature) and `bin_shares` (the
share of train rows in each of the len(edges) + 1 bins, bin i holding edges[i-1] <= x < edges[i]).
A population stability index of later rows is computed on exactly these bins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
        pa.field("method", pa.string(), nullable=False),
        pa.field("center", pa.float64(), nullable=False),
        pa.field("scale", pa.float64(), nullable=False),
        pa.field("clip", pa.float64(), nullable=False),
        pa.field("bin_edges", pa.list_(pa.float64()), nullable=False),
        pa.field("bin_shares", pa.list_(pa.float64()), nullable=False),
    ]
)
BIN_QUANTILES = np.round(np.arange(0.1, 0.95, 0.1), 2)  # train deciles: ten bins at most


POOLED = "pooled"
ZSCORE, ROBUST = "zscore", "robust"
IQR_TO_STD = 1.349  # the IQR of a normal distribution in standard deviations


@dataclass(frozen=True)
class Stats:
    """Per feature (in feature order): mean and std, and the center, scale and clip applied.

    Pooled: arrays have shape [features] and `scopes == ("pooled",)`. Per ticker: shape
    [tickers, features], one row per name in `scopes`. `center`/`scale` default to mean/std,
    `clip` to +inf and `methods` to zscore (stats files written before robust normalization).
    """

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: int
    std_replaced: tuple[str, ...]
    metadata: dict[str, object]
    scopes: tuple[str, ...] = (POOLED,)
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    clip: np.ndarray | None = None
    methods: tuple[str, ...] = field(default=())
    # (scope, feature) -> (bin edges, train share of each bin); empty in stats written before bins
    bins: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.center is None:
            object.__setattr__(self, "center", np.asarray(self.mean, dtype=np.float64))
        if self.scale is None:
            object.__setattr__(self, "scale", np.asarray(self.std, dtype=np.float64))
        if self.clip is None:
            object.__setattr__(self, "clip", np.full(len(self.features), np.inf))
        if not self.methods:
            object.__setattr__(self, "methods", (ZSCORE,) * len(self.features))

    @property
    def pooled(self) -> bool:
        return self.scopes == (POOLED,)

    def zscores(self, matrix: np.ndarray, tickers: str | np.ndarray | None = None) -> np.ndarray:
        """(x - center) / scale as float64, before clipping (what the out-of-range check looks at).

        Args:
            matrix: [rows, features].
            tickers: For per-ticker stats, the ticker of all rows (a name) or of each row (names).

        Raises:
            ValueError: per-ticker stats and a ticker they were not fitted for.
        """
        if self.pooled:
            return (matrix - self.center) / self.scale
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
        return (matrix - self.center[rows]) / self.scale[rows]

    def apply(self, matrix: np.ndarray, tickers: str | np.ndarray | None = None) -> np.ndarray:
        """The model's inputs: (x - center) / scale clipped to [-clip, clip], as float32."""
        z = self.zscores(matrix, tickers)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)


def apply_to_rows(
    stats: Stats, matrix: np.ndarray, ticker_ids: np.ndarray, tickers: tuple[str, ...]
) -> np.ndarray:
    """Normalize a dataset matrix whose row i belongs to tickers[ticker_ids[i]]."""
    if stats.pooled:
        return stats.apply(matrix)
    return stats.apply(matrix, np.asarray(tickers)[ticker_ids])


def _fit(
    matrix: np.ndarray, features: tuple[str, ...], robust: frozenset[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, center, scale, replaced) of the columns; a useless scale becomes 1."""
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0)
    if not np.isfinite(mean).all():
        column = features[int(np.argmax(~np.isfinite(mean)))]
        raise ValueError(f"feature {column!r} has a non-finite mean over the train split")
    bad_std = ~np.isfinite(std) | (std <= 1e-12)
    std = np.where(bad_std, 1.0, std)
    center, scale = mean.copy(), std.copy()
    replaced = bad_std.copy()
    for j, name in enumerate(features):
        if name not in robust:
            continue
        q25, median, q75 = np.quantile(matrix[:, j], [0.25, 0.5, 0.75])
        spread = (q75 - q25) / IQR_TO_STD
        center[j] = median
        # A feature that is mostly one value has no IQR: its std is the next best spread.
        scale[j] = spread if np.isfinite(spread) and spread > 1e-12 else std[j]
    return mean, std, center, scale, replaced


def fit_normalization(
    train_matrix: np.ndarray,
    features: tuple[str, ...],
    metadata: dict[str, object],
    tickers: np.ndarray | None = None,
    robust: tuple[str, ...] = (),
    robust_clip: float = 5.0,
) -> Stats:
    """Center and scale per column over the given train rows (mean/std, or median/IQR for `robust`).

    Pooled across tickers by default; with `tickers` (the ticker of each train row), one set of
    stats per ticker. A std that is zero or not finite (a feature constant over train, e.g. a
    one-hot category never seen) would turn into 0/0 = NaN inputs; it becomes 1 and the feature is
    listed in `std_replaced`. Features in `robust` are clipped to ±`robust_clip` after scaling.
    """
    if len(train_matrix) == 0:
        raise ValueError("cannot fit normalization on an empty train split")
    unknown = [f for f in robust if f not in features]
    if unknown:
        raise ValueError(f"robust normalization asked for {unknown}, which are not among {list(features)}")
    chosen = frozenset(robust)
    methods = tuple(ROBUST if f in chosen else ZSCORE for f in features)
    clip = np.array([robust_clip if f in chosen else np.inf for f in features])
    if tickers is None:
        mean, std, center, scale, bad = _fit(train_matrix, features, chosen)
        replaced = tuple(f for f, b in zip(features, bad, strict=True) if b)
        bins = {(POOLED, f): fit_bins(train_matrix[:, j]) for j, f in enumerate(features)}
        return Stats(
            features,
            mean,
            std,
            len(train_matrix),
            replaced,
            dict(metadata),
            (POOLED,),
            center,
            scale,
            clip,
            methods,
            bins,
        )
    scopes = tuple(str(t) for t in np.unique(tickers))
    fits = [_fit(train_matrix[tickers == t], features, chosen) for t in scopes]
    bad = np.any([f[4] for f in fits], axis=0)
    replaced = tuple(f for f, b in zip(features, bad, strict=True) if b)
    return Stats(
        features,
        np.stack([f[0] for f in fits]),
        np.stack([f[1] for f in fits]),
        len(train_matrix),
        replaced,
        {**metadata, "scope": "per_ticker"},
        scopes,
        np.stack([f[2] for f in fits]),
        np.stack([f[3] for f in fits]),
        clip,
        methods,
        {(t, f): fit_bins(train_matrix[tickers == t][:, j]) for t in scopes for j, f in enumerate(features)},
    )


def fit_bins(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges (the distinct deciles of `values`) and the share of `values` in each bin.

    Bin i holds edges[i-1] <= x < edges[i] (bin 0 everything below the first edge, the last bin
    everything from the last edge up), as `bin_index` assigns them.
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(values, BIN_QUANTILES))
    counts = np.bincount(bin_index(edges, values), minlength=len(edges) + 1)
    return edges, counts / max(len(values), 1)


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value on `edges` (see `fit_bins`)."""
    return np.searchsorted(edges, values, side="right")


def write_stats(stats: Stats, path: Path) -> Path:
    """Write stats.parquet: one row per (scope, feature); fit range, splits and fingerprint as metadata."""
    n = len(stats.features) * len(stats.scopes)

    def flat(values: np.ndarray) -> np.ndarray:
        return np.atleast_2d(values).astype(np.float64).ravel()

    table = pa.table(
        {
            "feature": list(stats.features) * len(stats.scopes),
            "mean": flat(stats.mean),
            "std": flat(stats.std),
            "count": [stats.count] * n,
            "scope": [s for s in stats.scopes for _ in stats.features],
            "std_replaced": [f in stats.std_replaced for _ in stats.scopes for f in stats.features],
            "method": list(stats.methods) * len(stats.scopes),
            "center": flat(stats.center),
            "scale": flat(stats.scale),
            "clip": np.tile(np.asarray(stats.clip, dtype=np.float64), len(stats.scopes)),
            "bin_edges": [_bins(stats, s, f, 0) for s in stats.scopes for f in stats.features],
            "bin_shares": [_bins(stats, s, f, 1) for s in stats.scopes for f in stats.features],
        },
        schema=STATS_SCHEMA,
    )
    meta = {**stats.metadata, "feature_order": list(stats.features), "scopes": list(stats.scopes)}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})
    write_atomic(table, path)
    return path


def _bins(stats: Stats, scope: str, feature: str, part: int) -> list[float]:
    found = stats.bins.get((scope, feature))
    return [] if found is None else [float(v) for v in found[part]]


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
    pooled = scopes == (POOLED,)

    def column(name: str, fallback: str | None = None) -> np.ndarray | None:
        if name not in frame.columns:
            return None if fallback is None else column(fallback)
        values = frame[name].to_numpy().reshape(shape)
        return values[0] if pooled else values

    replaced = tuple(
        f for j, f in enumerate(order) if frame["std_replaced"].to_numpy().reshape(shape)[:, j].any()
    )
    methods = tuple(frame["method"].to_numpy().reshape(shape)[0]) if "method" in frame.columns else ()
    clip = frame["clip"].to_numpy().reshape(shape)[0] if "clip" in frame.columns else None
    bins = {}
    if "bin_edges" in frame.columns:
        for (scope, feature), edges, shares in zip(
            frame.index, frame["bin_edges"], frame["bin_shares"], strict=True
        ):
            if len(shares):  # a stats file without bins for this feature has empty lists
                bins[(scope, feature)] = (np.asarray(edges, dtype=np.float64), np.asarray(shares))
    return Stats(
        features=order,
        mean=column("mean"),
        std=column("std"),
        count=int(frame["count"].iloc[0]),
        std_replaced=replaced,
        metadata={k: v for k, v in meta.items() if k not in ("feature_order", "scopes")},
        scopes=scopes,
        center=column("center", "mean"),
        scale=column("scale", "std"),
        clip=clip,
        methods=methods,
        bins=bins,
    )


def stats_frame(path: Path) -> pd.DataFrame:
    """The stats as a plain DataFrame (what a consumer without project code would read)."""
    return pq.read_table(path).to_pandas()
