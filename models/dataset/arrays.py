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
# A walk-forward fold's folder holds only what depends on its split (labels, window ends) in
# SPLIT_FILE; the rows every fold shares are written once, in ROWS_FILE one folder up.
SPLIT_FILE = "split.npz"
SHARED_COLUMNS = ("matrix", "ticker_ids", "dates", "label_dates", "forward_returns", "volatility")
SPLIT_COLUMNS = ("labels", "known_label")


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
    fold: int | None = None  # walk-forward: this fold's number (0 = oldest); None for a holdout split

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
    # Trailing volatility of daily log returns known at each day (the volatility-regime baseline's
    # input); None in datasets built before it was recorded.
    volatility: np.ndarray | None = None


def normalized_matrix(dataset: DatasetInfo, arrays: Arrays, stats: Stats | None = None) -> np.ndarray:
    """The dataset's matrix normalized with the stats read back from its stats.parquet (never
    recomputed here), so training and evaluation use the very numbers consumers get."""
    stats = stats or read_stats(dataset.stats_path)
    if stats.features != dataset.features:
        raise ValueError(f"stats features {stats.features} differ from dataset features {dataset.features}")
    return apply_to_rows(stats, arrays.matrix, arrays.ticker_ids, dataset.tickers)


def load_arrays(path: Path) -> Arrays:
    """The arrays of a dataset folder: a holdout dataset, or one walk-forward fold."""
    path = Path(path)
    rows_path = path / ROWS_FILE if (path / ROWS_FILE).exists() else path.parent / ROWS_FILE
    split_path = path / SPLIT_FILE if (path / SPLIT_FILE).exists() else rows_path
    with np.load(rows_path) as rows, np.load(split_path) as split:
        return Arrays(
            matrix=rows["matrix"],
            ticker_ids=rows["ticker_ids"],
            dates=rows["dates"],
            label_dates=rows["label_dates"],
            labels=split["labels"],
            forward_returns=rows["forward_returns"],
            known_label=split["known_label"],
            ends={s: split[f"ends_{s}"] for s in SPLITS},
            volatility=rows["volatility"] if "volatility" in rows else None,
        )


def load_info(path: Path) -> DatasetInfo:
    raw = json.loads((Path(path) / INFO_FILE).read_text())
    raw["tickers"] = tuple(raw["tickers"])
    raw["features"] = tuple(raw["features"])
    raw["std_replaced"] = tuple(raw["std_replaced"])
    return DatasetInfo(**raw)


def load_shared_rows(path: Path) -> dict[str, np.ndarray]:
    """The rows every fold of a walk-forward dataset shares (matrix, tickers, dates, ...)."""
    with np.load(Path(path) / ROWS_FILE) as rows:
        return {k: rows[k] for k in SHARED_COLUMNS if k in rows}
