"""The champion as monitoring sees it, and the sessions it is scored on.

`load_champion` reads a published version from the registry, verified: its manifest, its stats, its
fitted baselines (baselines.json) and the configuration it was trained with. `session_rows` computes,
from stored prices, what every later step needs per ticker and session, with the very functions the
dataset build uses (`models.dataset.build.assemble_rows`): the features (raw and normalized with the
bundle's stats), the realized label under the bundle's own label rule and threshold, the label known
at each session (persistence), the trailing volatility (the volatility rule) and where each window
and label lies in one gap-free run. Nothing is refitted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from models.config import CLASS_NAMES, PipelineConfig
from models.dataset import labels as labelling
from models.dataset.build import assemble_rows
from models.dataset.normalization import Stats, apply_to_rows, read_stats
from models.prices.store import PriceColumns
from models.registry import BundleRef, Registry, RegistryError

BASELINES_FILE = "baselines.json"


@dataclass(frozen=True)
class Champion:
    """A published version and everything scoring it needs, read from its verified bundle."""

    bundle: BundleRef
    manifest: dict
    folder: Path  # the verified files (the bundle, or its downloaded copy)
    config: PipelineConfig  # what it was trained with
    stats: Stats
    baselines: dict | None  # baselines.json (None: a bundle from before they were stored)

    @property
    def model(self) -> str:
        return self.bundle.model

    @property
    def version(self) -> int:
        return self.bundle.version

    @property
    def horizon(self) -> int:
        return int(self.manifest["horizon"])

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    @property
    def scale(self) -> float:
        """The label threshold's scale in force (theta, or k for the volatility rule)."""
        return float(self.manifest["labels"]["scale"])

    @property
    def exchange(self) -> str:
        return str((self.manifest.get("source") or {}).get("exchange") or self.config.source.exchange)

    @property
    def trained_until(self) -> dt.date:
        """The last session of the data the version was built from (training, early stopping and
        the gate's test periods): every later session is out of sample for all of it."""
        data = self.manifest.get("data") or {}
        last = data.get("last_date") or self.manifest["splits"]["test"][1]
        return dt.date.fromisoformat(str(last))

    @property
    def promoted_edge(self) -> dict | None:
        """The gate's pooled edge over its strongest baseline (estimate, lower, ...) and the sample it
        was measured on, or None for a bundle without a walk-forward evaluation."""
        evaluation = self.manifest.get("evaluation") or {}
        pooled = evaluation.get("pooled") or {}
        strongest = pooled.get("strongest_baseline")
        difference = ((pooled.get("baselines") or {}).get(strongest) or {}).get("difference")
        if not strongest or not difference:
            return None
        return {"against": strongest, **difference, "sample": evaluation.get("sample") or {}}

    def predictor(self):
        """The consumer's predictor for this version (imports Keras)."""
        from models.registry.predictor import Predictor

        return Predictor.from_folder(self.bundle, self.manifest, self.folder)


def load_champion(registry: Registry, model: str) -> Champion | None:
    """The version `model@champion` points at, verified; None when the model has no champion yet."""
    try:
        bundle = registry.resolve(f"{model}@champion")
    except RegistryError:
        if model in registry.models() and "champion" in registry.aliases(model):
            raise  # an alias that does not resolve is a problem to report, not "no champion"
        return None
    return load_version(registry, bundle)


def load_version(registry: Registry, ref: str | BundleRef) -> Champion:
    """A published version, verified (manifest and every file), ready to be scored.

    Raises:
        RegistryError: the bundle does not verify, or its configuration cannot be read.
    """
    verified = registry.check(registry.resolve(ref) if isinstance(ref, str) else ref, fresh=False)
    manifest = verified.manifest
    try:
        config = PipelineConfig.model_validate(manifest["config"])
    except (KeyError, ValidationError) as err:
        raise RegistryError(
            f"{verified.bundle}: its manifest's `config` cannot be read by this version of the "
            f"pipeline, so its labels cannot be reproduced: {err}"
        ) from err
    baselines = None
    if BASELINES_FILE in manifest["files"]:
        baselines = json.loads((verified.folder / BASELINES_FILE).read_text())
    stats = read_stats(verified.folder / "stats.parquet")
    return Champion(verified.bundle, manifest, verified.folder, config, stats, baselines)


@dataclass(frozen=True)
class SessionRows:
    """Per ticker and session (rows grouped by ticker, sorted by date), what scoring needs.

    Attributes:
        tickers: The tickers, sorted; `ticker_ids` index into it.
        raw: Features as computed (the stats' inputs), [rows, features].
        normalized: The model's inputs, normalized and clipped with the bundle's stats.
        realized: The label under the bundle's rule whose horizon ends at `label_dates` (-1 where
            the horizon runs past the data or across a missing session).
        known: The label known at each session: that of the window ending `horizon` sessions before
            (persistence's call), -1 where none.
        whole: A window of the bundle's length ends here inside one gap-free run.
    """

    tickers: tuple[str, ...]
    ticker_ids: np.ndarray
    dates: np.ndarray
    label_dates: np.ndarray
    forward: np.ndarray
    realized: np.ndarray
    known: np.ndarray
    volatility: np.ndarray
    whole: np.ndarray
    raw: np.ndarray
    normalized: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def names(self) -> np.ndarray:
        """The ticker of every row."""
        return np.asarray(self.tickers)[self.ticker_ids]

    def locate(self, tickers: np.ndarray, dates: np.ndarray) -> np.ndarray:
        """The row of each (ticker, date), -1 where there is none."""
        index = pd.MultiIndex.from_arrays([self.names, pd.DatetimeIndex(self.dates)])
        query = pd.MultiIndex.from_arrays(
            [np.asarray(tickers, dtype=object), pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]"))]
        )
        return index.get_indexer(query)

    def sessions(self) -> np.ndarray:
        """The distinct sessions of these rows, sorted."""
        return np.unique(self.dates)


def session_rows(prices: Mapping[str, PriceColumns | pd.DataFrame], champion: Champion) -> SessionRows:
    """Features, realized labels and the baselines' inputs for `prices`, under the champion's rules.

    Raises:
        ValueError: prices the dataset build would refuse (a feature not finite, no rows at all).
    """
    rows = assemble_rows(prices, champion.config)
    tickers = tuple(sorted(prices))
    h = champion.horizon
    realized = labelling.classify(rows.forward, champion.scale * rows.unit)
    known = np.full(len(realized), labelling.UNLABELLED, dtype=np.int8)
    if len(realized) > h:
        same_run = rows.runs[h:] == rows.runs[:-h]  # h rows back is h sessions back only within a run
        known[h:] = np.where(same_run, realized[:-h], labelling.UNLABELLED)
    normalized = apply_to_rows(champion.stats, rows.matrix, rows.ticker_ids, tickers)
    return SessionRows(
        tickers=tickers,
        ticker_ids=rows.ticker_ids,
        dates=rows.dates,
        label_dates=rows.label_dates,
        forward=rows.forward,
        realized=realized,
        known=known,
        volatility=rows.volatility,
        whole=rows.whole,
        raw=rows.matrix,
        normalized=normalized,
    )


def covered(prices: Mapping[str, object], stats: Stats) -> tuple[dict, dict[str, str]]:
    """The tickers the stats can normalize (all, for pooled stats), and why the others are left out."""
    if stats.pooled:
        return dict(prices), {}
    kept = {t: p for t, p in prices.items() if t in stats.scopes}
    dropped = {
        t: f"{t}: the champion's stats are per ticker and were not fitted for it"
        for t in prices
        if t not in kept
    }
    return kept, dropped


def class_name(ids: np.ndarray) -> np.ndarray:
    """Class names of integer class ids (-1 becomes '')."""
    names = np.asarray([*CLASS_NAMES, ""], dtype=object)
    return names[np.where(ids >= 0, ids, len(CLASS_NAMES))]
