"""The nightly monitoring steps over the registry and the price store, each a plain function.

The nightly flow runs, after ingest and before any retrain: `predict_night` (the champion's
predictions file), `score_night` (the scorecard: matured nightly predictions of every version, and
the champion's backfill), `summarize_night` (the rolling summary, the degraded verdict and
scorecard.png) and `drift_night`. The `scorecard/backfill` deployment runs `score_night` and
`summarize_night` alone. Every step reads the champion in place when it starts; a night without a
champion (the first) predicts and scores nothing, and says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import PipelineConfig, SourceConfig
from models.monitoring import drift as drifting
from models.monitoring import predictions as nightly_files
from models.monitoring import scorecard, summary
from models.monitoring.sessions import Champion, covered, load_champion, load_version, session_rows
from models.prices import sources, store
from models.prices.store import PriceColumns
from models.registry import Registry, RegistryError

SCORECARD_PNG = "scorecard.png"


def stored_prices(
    source: SourceConfig, home: Path, tickers: list[str], night: dt.date
) -> dict[str, PriceColumns]:
    """The stored prices of `tickers` from `source`, `source.start` to `night` (tickers without a
    store file are left out: ingest quarantined them before they were ever stored)."""
    label = sources.source_label(source)
    out = {}
    for ticker in sorted(tickers):
        if store.price_path(home, ticker, source=label).exists():
            out[ticker] = store.read_columns(home, ticker, source.start, night, source=label)
    return {t: p for t, p in out.items() if len(p)}


def no_champion(model: str) -> dict:
    return {
        "status": "no_champion",
        "model": model,
        "message": f"{model} has no champion yet: nothing to score",
    }


def predict_night(
    registry: Registry,
    home: Path,
    config: PipelineConfig,
    tickers: list[str],
    night: dt.date,
    force: bool = False,
) -> dict:
    """The champion's predictions for each ticker's last stored session up to `night`, written to
    `<home>/predictions/<model>/<night>.parquet` (see models.monitoring.predictions)."""
    champion = load_champion(registry, config.model.name)
    if champion is None:
        return no_champion(config.model.name) | {
            "message": f"{config.model.name} has no champion yet: no predictions"
        }
    prices = stored_prices(config.source, Path(home), tickers, night)
    prices, uncovered = covered(prices, champion.stats)
    lost = {
        t: f"{t}: nothing stored from {sources.source_label(config.source)}"
        for t in tickers
        if t not in prices
    }
    result = nightly_files.write_nightly(
        Path(home), champion, prices, night, config.registry.out_of_range_z, force=force
    )
    record = result.as_dict()
    record["missing"] = {**lost, **uncovered, **record["missing"]}
    return record


def score_night(
    registry: Registry,
    home: Path,
    config: PipelineConfig,
    tickers: list[str],
    night: dt.date,
    backfill: bool | None = None,
) -> dict:
    """Record in the scorecard every prediction whose label matured by `night`.

    Nightly predictions of every version found in the predictions folder are scored with that
    version's own label rule and baselines; then (with `backfill`, default
    `config.monitoring.backfill`) the champion is predicted on the matured sessions after its
    training end that the scorecard still lacks. Rows already in the scorecard are never added again.

    Returns:
        What was added (per origin), the scorecard's size, and notes (versions that could not be read).
    """
    model = config.model.name
    champion = load_champion(registry, model)
    backfill = config.monitoring.backfill if backfill is None else backfill
    prices = stored_prices(config.source, Path(home), tickers, night)
    existing = scorecard.read(registry, model)
    served = nightly_files.read_all(Path(home), model, until=night)
    new, notes = [], []
    versions = sorted({int(v) for v in served["version"].unique()})
    loaded: dict[int, Champion] = {}
    for version in versions:
        pending = _unscored(served.loc[served["version"] == version], existing, version)
        if not len(pending):
            continue
        try:
            made_by = (
                champion
                if champion and champion.version == version
                else load_version(registry, f"{model}/{version}")
            )
        except RegistryError as err:
            notes.append(f"{model}/{version}'s nightly predictions cannot be scored: {err}")
            continue
        loaded[version] = made_by
        rows = session_rows(covered(prices, made_by.stats)[0], made_by)
        new.append(scorecard.score(made_by, rows, pending, "nightly", night))
    nightly = sum(len(f) for f in new)
    backfilled = 0
    if champion is not None and backfill:
        known = pd.concat([existing, *new], ignore_index=True) if new else existing
        kept, _ = covered(prices, champion.stats)
        if kept:
            rows = session_rows(kept, champion)
            candidates = scorecard.backfill_candidates(champion, rows, night, known)
            if candidates is not None:
                first, ends = candidates
                frames = nightly_files.price_frame(kept)
                predictor = champion.predictor()
                predicted = predictor.predict(
                    pd.concat(frames.values(), ignore_index=True),
                    max_abs_z=config.registry.out_of_range_z,
                    since=first,
                )
                wanted = pd.MultiIndex.from_arrays([rows.names[ends], pd.DatetimeIndex(rows.dates[ends])])
                keys = pd.MultiIndex.from_arrays([predicted["ticker"], pd.DatetimeIndex(predicted["date"])])
                rows_new = scorecard.score(
                    champion, rows, predicted.loc[keys.isin(wanted)], "backfill", night
                )
                backfilled = len(rows_new)
                new.append(rows_new)
    added, total = (0, len(existing))
    if new and sum(len(f) for f in new):
        added, total = scorecard.append(registry, model, pd.concat(new, ignore_index=True))
    return {
        "status": "scored" if champion is not None or versions else "no_champion",
        "message": f"{model} has no champion yet and no nightly predictions: nothing to score",
        "model": model,
        "champion": None if champion is None else champion.version,
        "night": night.isoformat(),
        "added": added,
        "nightly": nightly,
        "backfill": backfilled,
        "total": total,
        "versions": versions,
        "notes": notes,
        "url": registry.model_file_url(model, scorecard.SCORECARD) if total else None,
    }


def _unscored(served: pd.DataFrame, existing: pd.DataFrame, version: int) -> pd.DataFrame:
    """The served predictions of `version` that have no scorecard row yet (one per ticker and date)."""
    served = served.drop_duplicates(["ticker", "date"], keep="first")
    mine = existing.loc[existing["version"] == version]
    if not len(mine):
        return served
    have = pd.MultiIndex.from_arrays([mine["ticker"], pd.DatetimeIndex(mine["date"])])
    keys = pd.MultiIndex.from_arrays([served["ticker"], pd.DatetimeIndex(served["date"])])
    return served.loc[~keys.isin(have)]


def summarize_night(registry: Registry, config: PipelineConfig, night: dt.date | None) -> dict:
    """The champion's rolling summary as of `night`, with scorecard.png written beside the scorecard
    (replaced only when its bytes change)."""
    model = config.model.name
    champion = load_champion(registry, model)
    if champion is None:
        return no_champion(model)
    card = scorecard.read(registry, model)
    found = summary.summarize(card, champion, config.monitoring, config.gate, night)
    against = found.get("strongest_baseline")
    series = (
        summary.rolling(card, champion, config.monitoring, config.gate, against, night)
        if against
        else pd.DataFrame(columns=["date", "champion", "lower", "upper", "baseline", "difference_upper"])
    )
    png = summary.plot(series, found, against)
    with registry.locked(model):
        if registry.read_model_file(model, SCORECARD_PNG) != png:
            registry.write_model_file(model, SCORECARD_PNG, png)
    found["plot"] = registry.model_file_url(model, SCORECARD_PNG)
    found["scorecard"] = registry.model_file_url(model, scorecard.SCORECARD)
    return found


def drift_night(
    registry: Registry, home: Path, config: PipelineConfig, tickers: list[str], night: dt.date
) -> dict:
    """Drift of the latest sessions' features against the champion's train distribution."""
    champion = load_champion(registry, config.model.name)
    if champion is None:
        return no_champion(config.model.name)
    prices, _ = covered(stored_prices(config.source, Path(home), tickers, night), champion.stats)
    if not prices:
        return {"status": "no_prices", "model": champion.model, "version": champion.version, "drifted": []}
    rows = session_rows(prices, champion)
    return {
        "status": "checked",
        **drifting.drift(champion, rows, config.monitoring, config.registry.out_of_range_z, night),
    }


def night_of(prices: Mapping[str, PriceColumns]) -> dt.date | None:
    """The last stored session over the universe."""
    last = [p.date[-1] for p in prices.values() if len(p)]
    return None if not last else pd.Timestamp(np.max(last)).date()
