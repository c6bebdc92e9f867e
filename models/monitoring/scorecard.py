"""The live scorecard: every prediction of a published version whose label has matured, scored.

`<registry>/<model>/scorecard.parquet` holds one row per version, ticker and prediction date: the
probabilities the version gave, its call, the label realized `horizon` exchange sessions later (under
the version's own label rule and threshold), and what each baseline the gate used would have called
on the same window, from the version's baselines.json (nothing refitted). Rows come from two places:

- `nightly`: the night's predictions files (`<home>/predictions/<model>/`), once their horizon has
  passed: what was served, scored;
- `backfill`: the version predicted, after the fact, on sessions after its training end that no
  nightly file covers (a champion rolled back to, nights the pipeline did not run, a fresh champion's
  first days): the same frozen model on the same stored prices, so the same numbers.

A window whose label's horizon would span a missing session never matures (as in training).

The file is append-only: an update reads it under the model's registry lock, adds the rows whose key
(version, ticker, date) is not there yet, and replaces it atomically (a temporary file and a rename
locally, one PUT in an object store); existing rows are never changed, and a row is never counted
twice. Rows are sorted by version, date and ticker, so the same rows give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.config import CLASS_NAMES
from models.monitoring.sessions import Champion, SessionRows, class_name
from models.registry import Registry
from models.training.baselines import BASELINES, apply_baselines

SCORECARD = "scorecard.parquet"
KEY = ("version", "ticker", "date")
RULE_BASELINES = tuple(b for b in BASELINES if b != "class_prior")  # scored by their call
SCORECARD_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int64(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("date", pa.timestamp("ns"), nullable=False),  # the window's last session
        pa.field("label_date", pa.timestamp("ns"), nullable=False),  # `horizon` sessions later
        pa.field("origin", pa.string(), nullable=False),  # nightly | backfill
        pa.field("recorded_on", pa.timestamp("ns"), nullable=False),  # the night that scored it
        *(pa.field(f"p_{c}", pa.float64(), nullable=False) for c in CLASS_NAMES),
        pa.field("predicted", pa.string(), nullable=False),
        pa.field("realized", pa.string(), nullable=False),
        pa.field("forward_return", pa.float64(), nullable=False),
        pa.field("max_abs_z", pa.float64(), nullable=False),
        pa.field("out_of_range", pa.bool_(), nullable=False),
        pa.field("direction_baseline", pa.string(), nullable=True),  # the train-majority direction
        *(pa.field(f"baseline_{b}", pa.string(), nullable=True) for b in RULE_BASELINES),
        # A draw from the train class prior, scored by its expected value: the realized class's share.
        pa.field("baseline_class_prior", pa.float64(), nullable=True),
    ]
)


def empty() -> pd.DataFrame:
    return SCORECARD_SCHEMA.empty_table().to_pandas()


def score(
    champion: Champion, rows: SessionRows, predictions: pd.DataFrame, origin: str, night: dt.date
) -> pd.DataFrame:
    """Scorecard rows for the predictions whose label matured by `night`.

    Args:
        champion: The version that made the predictions.
        rows: The stored sessions (`session_rows`) up to `night`.
        predictions: ticker, date, p_<class>, max_abs_z, out_of_range (predictor output or a night's
            file); those of other versions or whose label has not matured are left out.
        origin: `nightly` or `backfill`.
        night: The night recording them.

    Returns:
        Rows in the scorecard's columns (possibly none).
    """
    if len(predictions) == 0:
        return empty()
    at = rows.locate(predictions["ticker"].to_numpy(), predictions["date"].to_numpy())
    found = at >= 0
    at_safe = np.where(found, at, 0)
    matured = (
        found
        & (rows.realized[at_safe] >= 0)
        & (rows.label_dates[at_safe] <= np.datetime64(pd.Timestamp(night), "ns"))
    )
    chosen = predictions.loc[matured].reset_index(drop=True)
    ends = at[matured].astype(np.int64)
    if len(ends) == 0:
        return empty()
    probs = chosen[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)
    realized = rows.realized[ends].astype(np.int64)
    out = pd.DataFrame(
        {
            "version": np.full(len(ends), champion.version, dtype=np.int64),
            "ticker": chosen["ticker"].astype(str).to_numpy(),
            "date": rows.dates[ends],
            "label_date": rows.label_dates[ends],
            "origin": origin,
            "recorded_on": np.datetime64(pd.Timestamp(night), "ns"),
            **{f"p_{c}": probs[:, k] for k, c in enumerate(CLASS_NAMES)},
            "predicted": class_name(probs.argmax(axis=1)),
            "realized": class_name(realized),
            "forward_return": rows.forward[ends],
            "max_abs_z": chosen["max_abs_z"].to_numpy(np.float64),
            "out_of_range": chosen["out_of_range"].to_numpy(bool),
        }
    )
    fitted = (champion.baselines or {}).get("baselines") or {}
    calls = apply_baselines(fitted, rows.normalized, ends, champion.window, rows.known, rows.volatility)
    out["direction_baseline"] = (champion.baselines or {}).get("direction_baseline")
    for name in RULE_BASELINES:
        out[f"baseline_{name}"] = class_name(calls[name].argmax(axis=1)) if name in calls else None
    if "class_prior" in calls:
        out["baseline_class_prior"] = calls["class_prior"][np.arange(len(ends)), realized].astype(np.float64)
    else:
        out["baseline_class_prior"] = np.nan
    return out


def backfill_candidates(
    champion: Champion, rows: SessionRows, night: dt.date, existing: pd.DataFrame
) -> tuple[pd.Timestamp, np.ndarray] | None:
    """The first session to predict and the rows to score when backfilling `champion`: sessions after
    its training end whose label matured by `night` and that the scorecard lacks; None when none."""
    after = np.datetime64(pd.Timestamp(champion.trained_until), "ns")
    cutoff = np.datetime64(pd.Timestamp(night), "ns")
    wanted = rows.whole & (rows.dates > after) & (rows.realized >= 0) & (rows.label_dates <= cutoff)
    mine = existing.loc[existing["version"] == champion.version]
    if len(mine):
        have = rows.locate(mine["ticker"].to_numpy(), mine["date"].to_numpy())
        wanted[have[have >= 0]] = False
    ends = np.flatnonzero(wanted)
    if len(ends) == 0:
        return None
    return pd.Timestamp(rows.dates[ends].min()), ends


def merge(existing: pd.DataFrame, new: pd.DataFrame) -> tuple[pa.Table, int]:
    """The scorecard with `new`'s rows added where their key is not there yet (append-only).

    Returns:
        (the whole table, sorted by version, date, ticker; the number of rows added).
    """
    fresh = new.drop_duplicates(list(KEY), keep="first")
    if len(existing) and len(fresh):
        have = pd.MultiIndex.from_frame(existing[list(KEY)].astype({"date": "datetime64[ns]"}))
        keys = pd.MultiIndex.from_frame(fresh[list(KEY)].astype({"date": "datetime64[ns]"}))
        fresh = fresh.loc[~keys.isin(have)]
    table = pa.concat_tables([_table(existing), _table(fresh)])
    order = pc.sort_indices(
        table, sort_keys=[("version", "ascending"), ("date", "ascending"), ("ticker", "ascending")]
    )
    return table.take(order), len(fresh)


def _table(frame: pd.DataFrame) -> pa.Table:
    columns = {}
    for f in SCORECARD_SCHEMA:
        values = frame[f.name]
        if pa.types.is_timestamp(f.type):
            columns[f.name] = pa.array(values.to_numpy(dtype="datetime64[ns]"), type=f.type)
        elif f.nullable:  # a bundle without baselines.json: no baseline calls (null, never NaN or "")
            columns[f.name] = pa.array([None if _missing(v) else v for v in values.tolist()], type=f.type)
        else:
            columns[f.name] = pa.array(values.tolist(), type=f.type)
    return pa.table(columns, schema=SCORECARD_SCHEMA)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read(registry: Registry, model: str) -> pd.DataFrame:
    """The model's scorecard (an empty frame with its columns when there is none yet)."""
    raw = registry.read_model_file(model, SCORECARD)
    if raw is None:
        return empty()
    return pq.read_table(io.BytesIO(raw)).to_pandas()


def append(registry: Registry, model: str, new: pd.DataFrame) -> tuple[int, int]:
    """Add `new`'s rows whose key is not there yet, under the model's lock, atomically.

    Nothing is written when nothing is new, so rerunning a night leaves the file as it was.

    Returns:
        (rows added, rows in the scorecard).
    """
    with registry.locked(model):
        existing = read(registry, model)
        table, added = merge(existing, new)
        if added:
            registry.write_model_file(model, SCORECARD, to_bytes(table))
        return added, table.num_rows
