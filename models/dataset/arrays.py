"""What a built dataset is on disk and in memory: its files, `DatasetInfo` and `Arrays`.

`models.dataset.build` writes a dataset folder; training, evaluation and the leakage audit read it
back with `load_arrays` and `load_info`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.dataset.normalization import Stats, apply_to_rows, read_stats
from models.dataset.windows import SPLITS

ROWS_FILE = "rows.npz"
STATS_FILE = "stats.parquet"
INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class DatasetInfo:
    """A small, JSON-able description of a built dataset (what Prefect tasks pass around)."""

    path: str
    fingerprint: str
    tickers: tuple[str, ...]
    features: tuple[str, ...]
    window: int
    horizon: int
    theta: float  # the threshold scale in force: theta (rule fixed) or k (rule volatility)
    label_rule: dict[str, object]
    splits: dict[str, list[str]]
    sizes: dict[str, int]
    class_shares: dict[str, dict[str, float]]
    audit: dict[str, object]
    std_replaced: tuple[str, ...]
    # The data actually used: per ticker first/last date and rows (+ the run's lineage, see
    # models.prices.lineage.data_lineage); a manifest's `data` section.
    data: dict[str, object] = field(default_factory=dict)
    # Missing sessions, and the rows, windows and labels dropped so none spans one; zero-volume
    # sessions (see models.dataset.build.assemble).
    data_quality: dict[str, object] = field(default_factory=dict)

    @property
    def stats_path(self) -> Path:
        return Path(self.path) / STATS_FILE

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Arrays:
    """The in-memory dataset: one raw feature matrix and indexes into it."""

    matrix: np.ndarray  # [rows, features] float64, raw (not normalized)
    ticker_ids: np.ndarray
    dates: np.ndarray  # datetime64[ns]
    label_dates: np.ndarray  # datetime64[ns], NaT where unlabelled
    labels: np.ndarray  # int8, -1 where no trainable window ends (no known label, or inputs span a gap)
    forward_returns: np.ndarray
    known_label: np.ndarray  # int8: label of the window whose horizon ended at this day, or -1
    ends: dict[str, np.ndarray]


def normalized_matrix(dataset: DatasetInfo, arrays: Arrays, stats: Stats | None = None) -> np.ndarray:
    """The dataset's matrix normalized with the stats read back from its stats.parquet (never
    recomputed here), so training and evaluation use the very numbers consumers get."""
    stats = stats or read_stats(dataset.stats_path)
    if stats.features != dataset.features:
        raise ValueError(f"stats features {stats.features} differ from dataset features {dataset.features}")
    return apply_to_rows(stats, arrays.matrix, arrays.ticker_ids, dataset.tickers)


def load_arrays(path: Path) -> Arrays:
    with np.load(Path(path) / ROWS_FILE) as z:
        return Arrays(
            matrix=z["matrix"],
            ticker_ids=z["ticker_ids"],
            dates=z["dates"],
            label_dates=z["label_dates"],
            labels=z["labels"],
            forward_returns=z["forward_returns"],
            known_label=z["known_label"],
            ends={s: z[f"ends_{s}"] for s in SPLITS},
        )


def load_info(path: Path) -> DatasetInfo:
    raw = json.loads((Path(path) / INFO_FILE).read_text())
    raw["tickers"] = tuple(raw["tickers"])
    raw["features"] = tuple(raw["features"])
    raw["std_replaced"] = tuple(raw["std_replaced"])
    return DatasetInfo(**raw)
