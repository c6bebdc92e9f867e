"""What a run's data really is: the rows used per ticker, the tickers dropped and why, and its age.

A manifest's `data` section is built from these records, next to the `config` that asked for the data,
so a consumer reads what the model was trained on, not only what was requested.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import SourceConfig
from models.prices import calendar, sources, store
from models.prices.store import PriceColumns


def used_rows(prices: Mapping[str, pd.DataFrame | PriceColumns]) -> dict[str, dict[str, object]]:
    """Per ticker, the first and last date and the number of price rows a dataset is built from."""
    out: dict[str, dict[str, object]] = {}
    for ticker in sorted(prices):
        dates = np.asarray(prices[ticker]["date"], dtype="datetime64[ns]")
        if len(dates) == 0:
            out[ticker] = {"first_date": None, "last_date": None, "rows": 0}
            continue
        out[ticker] = {
            "first_date": str(pd.Timestamp(dates.min()).date()),
            "last_date": str(pd.Timestamp(dates.max()).date()),
            "rows": int(len(dates)),
        }
    return out


def sessions_behind(exchange: str, last: dt.date, now: pd.Timestamp) -> tuple[dt.date, int]:
    """The last session closed at `now` and how many sessions after `last` have closed by then."""
    last_closed = calendar.last_closed_session(exchange, now)
    return last_closed, len(calendar.sessions(exchange, last + dt.timedelta(days=1), last_closed))


def data_lineage(
    source: SourceConfig,
    home: Path,
    prices: Mapping[str, PriceColumns | pd.DataFrame],
    end: dt.date,
    quarantined: Mapping[str, str],
    now: pd.Timestamp,
) -> dict[str, object]:
    """The `data` section of a manifest: asked vs used, the store it came from, drops and age.

    Args:
        source: The source settings that asked for the data.
        home: Data home (for the store's per-file lineage).
        prices: The prices the dataset is built from, per ticker (after quarantine).
        end: The last session loaded (`source.end`, or the last closed session).
        quarantined: Ticker -> why ingest dropped it.
        now: When the run judges the data's age.

    Returns:
        A JSON-able dict: `asked` (tickers, start, end from the config), `end` (resolved),
        `store` (source label and folder key), `first_date`/`last_date` over all tickers,
        `sessions_before_first` (sessions between the asked start and `first_date`), `tickers`
        (per ticker first/last date and rows; for a folder source also the file and its sha256),
        `quarantined`, `last_closed_session` and `age_sessions` (sessions closed after `last_date`).
    """
    label = sources.source_label(source)
    used = used_rows(prices)
    if source.kind == "folder":
        for ticker, entry in used.items():
            entry["source_file"] = store.read_meta(home, ticker, source=label).get("source_file")
    firsts = [e["first_date"] for e in used.values() if e["first_date"]]
    lasts = [e["last_date"] for e in used.values() if e["last_date"]]
    last = max(lasts) if lasts else None
    first = min(firsts) if firsts else None
    last_closed, behind = (
        sessions_behind(source.exchange, dt.date.fromisoformat(last), now) if last else (None, None)
    )
    before = (
        len(
            calendar.sessions(
                source.exchange, source.start, dt.date.fromisoformat(first) - dt.timedelta(days=1)
            )
        )
        if first
        else 0
    )
    return {
        "asked": {
            "tickers": list(source.tickers),
            "start": source.start.isoformat(),
            "end": None if source.end is None else source.end.isoformat(),
        },
        "end": end.isoformat(),
        "historical": source.end is not None,
        "store": {"source": label, "key": store.source_key(label)},
        "first_date": first,
        "last_date": last,
        "sessions_before_first": before,  # sessions from asked start to first_date the source lacks
        "tickers": used,
        "quarantined": dict(sorted(quarantined.items())),
        "last_closed_session": None if last_closed is None else last_closed.isoformat(),
        "age_sessions": behind,
    }


def incomplete_universe(source: SourceConfig, quarantined: Mapping[str, str]) -> str | None:
    """Why a run that must train on the whole universe cannot, or None when nothing was dropped."""
    if not quarantined:
        return None
    dropped = "; ".join(quarantined[t] for t in sorted(quarantined))
    return (
        f"{len(quarantined)} of {len(source.tickers)} tickers were quarantined at ingest and "
        f"gate.require_full_universe is on, so nothing was trained: {dropped}. Fix the data, "
        "remove the tickers from the universe, or set gate.require_full_universe to false"
    )
