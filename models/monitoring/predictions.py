"""Nightly predictions: the champion's signal for each ticker's last closed session, in plain Parquet.

`<home>/predictions/<model>/<YYYY-MM-DD>.parquet`, one file per night (the last session loaded), one
row per ticker: model, version, ticker, date (the ticker's last stored session up to the night),
p_down, p_range_bound, p_up, label (the most probable class), max_abs_z and out_of_range (the
predictor's flag: an input beyond the bundle's bound, in train standard deviations). The predictor
is the consumer's (`models.registry.predictor`): the bundle's model, stats and window; nothing is
refitted.

A file is written atomically (temporary file, fsync, rename). Its Parquet metadata
(`updown.predictions`) records the version, the night, the tickers left out and why, and `inputs`: a
hash of everything the rows depend on (the bundle's manifest, the stored prices used, the bound).
Rerunning a night therefore leaves the file byte for byte as it was: with the same inputs nothing is
recomputed (no Keras import), and recomputing (`force`) writes the same bytes. A night's file written
by another version (the champion moved since) is what was served that night and is never replaced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.config import CLASS_NAMES
from models.monitoring.sessions import Champion
from models.prices.store import PRICE_COLUMNS, PriceColumns, write_atomic
from models.registry.bundle import check_model_name

META_KEY = b"updown.predictions"
PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("date", pa.timestamp("ns"), nullable=False),
        *(pa.field(f"p_{c}", pa.float64(), nullable=False) for c in CLASS_NAMES),
        pa.field("label", pa.string(), nullable=False),
        pa.field("max_abs_z", pa.float64(), nullable=False),
        pa.field("out_of_range", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True)
class NightlyPredictions:
    """What the predictions step did for one night.

    Attributes:
        status: `written` (computed and written), `unchanged` (the file's inputs are today's: kept
            as it is, nothing recomputed) or `kept` (written by another version, which served that
            night: never replaced).
    """

    path: str
    night: str
    model: str
    version: int  # the version whose predictions the file holds
    status: str
    rows: int
    missing: dict[str, str] = field(default_factory=dict)  # ticker -> why it has no prediction
    out_of_range: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def predictions_dir(home: Path, model: str) -> Path:
    return Path(home) / "predictions" / check_model_name(model)


def predictions_path(home: Path, model: str, night: dt.date) -> Path:
    return predictions_dir(home, model) / f"{night.isoformat()}.parquet"


def price_frame(prices: Mapping[str, PriceColumns]) -> dict[str, pd.DataFrame]:
    """Store columns as one frame per ticker (what the predictor reads)."""
    return {
        ticker: pd.DataFrame({"date": p.date, **{c: p[c] for c in PRICE_COLUMNS}}).assign(ticker=ticker)
        for ticker, p in prices.items()
    }


def inputs_digest(
    champion: Champion, prices: Mapping[str, PriceColumns], night: dt.date, bound: float
) -> str:
    """A hash of what a night's predictions depend on: the bundle (its manifest lists every file's
    sha256), the night, the bound and every stored price row used, per ticker."""
    digest = hashlib.sha256()
    header = {
        "model": champion.model,
        "version": champion.version,
        "files": champion.manifest["files"],
        "night": night.isoformat(),
        "bound": bound,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for ticker in sorted(prices):
        p = prices[ticker]
        digest.update(ticker.encode())
        digest.update(np.asarray(p.date, dtype="datetime64[ns]").tobytes())
        for column in PRICE_COLUMNS:
            digest.update(np.asarray(p[column], dtype=np.float64).tobytes())
    return digest.hexdigest()


def read_meta(path: Path) -> dict | None:
    """The `updown.predictions` metadata of a predictions file, None when there is no such file."""
    if not Path(path).exists():
        return None
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[META_KEY]) if META_KEY in metadata else {}


def latest_predictions(
    champion: Champion, prices: Mapping[str, PriceColumns], night: dt.date, bound: float
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The champion's prediction for each ticker's last stored session up to `night` (imports Keras).

    Returns:
        (rows in the file's columns, sorted by ticker; ticker -> why it has none).
    """
    predictor = champion.predictor()
    frames, missing = [], {}
    cutoff = np.datetime64(pd.Timestamp(night), "ns")
    for ticker, frame in sorted(price_frame(prices).items()):
        frame = frame.loc[frame["date"].to_numpy(dtype="datetime64[ns]") <= cutoff]
        if frame.empty:
            missing[ticker] = f"{ticker}: no prices stored up to {night}"
            continue
        last = pd.Timestamp(frame["date"].iloc[-1])
        try:
            one = predictor.predict(frame, max_abs_z=bound, since=last)
        except ValueError as err:
            missing[ticker] = f"{ticker}: {err}"
            continue
        if one.empty:  # its last session ends no whole window (a missing session just before it)
            missing[ticker] = (
                f"{ticker}: no whole window of {champion.window} sessions ends on its last stored "
                f"session {last.date()} (a missing session inside the window)"
            )
            continue
        frames.append(one)
    if not frames:
        return pd.DataFrame({f.name: [] for f in PREDICTIONS_SCHEMA}), missing
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "version", champion.version)
    out.insert(0, "model", champion.model)
    return out.sort_values("ticker", kind="stable").reset_index(drop=True), missing


def to_table(frame: pd.DataFrame, meta: dict) -> pa.Table:
    """The file's table: fixed schema and column order, rows by ticker, metadata as sorted JSON."""
    columns = {
        f.name: pa.array(
            frame[f.name].to_numpy(dtype="datetime64[ns]") if f.name == "date" else frame[f.name].tolist(),
            type=f.type,
        )
        for f in PREDICTIONS_SCHEMA
    }
    table = pa.table(columns, schema=PREDICTIONS_SCHEMA)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_nightly(
    home: Path,
    champion: Champion,
    prices: Mapping[str, PriceColumns],
    night: dt.date,
    bound: float,
    force: bool = False,
) -> NightlyPredictions:
    """Predict the night with the champion and write `<home>/predictions/<model>/<night>.parquet`.

    Args:
        home: Data home.
        champion: The version in place when the night began.
        prices: The stored prices of the universe (each ticker's last stored session up to `night`
            is predicted).
        night: The last session loaded (the file's name).
        bound: The out-of-range bound (|z|).
        force: Recompute even when the file's recorded inputs are today's (the same version only).
    """
    path = predictions_path(home, champion.model, night)
    digest = inputs_digest(champion, prices, night, bound)
    existing = read_meta(path)
    if existing is not None and existing.get("version") not in (None, champion.version):
        return NightlyPredictions(
            str(path),
            night.isoformat(),
            champion.model,
            int(existing["version"]),
            "kept",
            int(pq.read_metadata(path).num_rows),
            dict(existing.get("missing") or {}),
            int(existing.get("out_of_range", 0)),
        )
    if existing is not None and existing.get("inputs") == digest and not force:
        return NightlyPredictions(
            str(path),
            night.isoformat(),
            champion.model,
            champion.version,
            "unchanged",
            int(pq.read_metadata(path).num_rows),
            dict(existing.get("missing") or {}),
            int(existing.get("out_of_range", 0)),
        )
    frame, missing = latest_predictions(champion, prices, night, bound)
    flagged = int(frame["out_of_range"].sum()) if len(frame) else 0
    meta = {
        "model": champion.model,
        "version": champion.version,
        "night": night.isoformat(),
        "classes": list(CLASS_NAMES),
        "horizon": champion.horizon,
        "out_of_range_z": bound,
        "inputs": digest,
        "missing": missing,
        "out_of_range": flagged,
    }
    write_atomic(to_table(frame, meta), path)
    return NightlyPredictions(
        str(path),
        night.isoformat(),
        champion.model,
        champion.version,
        "written",
        len(frame),
        missing,
        flagged,
    )


def nights(home: Path, model: str) -> list[dt.date]:
    """The nights that have a predictions file, ascending."""
    folder = predictions_dir(home, model)
    out = []
    for path in folder.glob("*.parquet") if folder.is_dir() else []:
        try:
            out.append(dt.date.fromisoformat(path.stem))
        except ValueError:
            continue  # not a night's file (a consumer's own file, a temporary one)
    return sorted(out)


def read_predictions(home: Path, model: str, night: dt.date | None = None) -> pd.DataFrame:
    """One night's predictions (the latest night when `night` is None), as a frame.

    Raises:
        FileNotFoundError: there is no such night (the message lists the nights there are).
    """
    known = nights(home, model)
    if night is None:
        if not known:
            raise FileNotFoundError(f"no predictions of {model} in {predictions_dir(home, model)}")
        night = known[-1]
    path = predictions_path(home, model, night)
    if not path.exists():
        listed = ", ".join(d.isoformat() for d in known[-5:]) or "none"
        raise FileNotFoundError(
            f"no predictions of {model} for {night} in {predictions_dir(home, model)} "
            f"(latest nights: {listed})"
        )
    return pq.read_table(path).to_pandas()


def read_all(home: Path, model: str, until: dt.date | None = None) -> pd.DataFrame:
    """Every night's predictions up to `until` (inclusive), with the night each came from."""
    frames = []
    for night in nights(home, model):
        if until is not None and night > until:
            continue
        table = pq.read_table(predictions_path(home, model, night))
        frames.append(table.to_pandas().assign(night=pd.Timestamp(night)))
    if not frames:
        empty = PREDICTIONS_SCHEMA.empty_table().to_pandas()
        return empty.assign(night=pd.Series(dtype="datetime64[ns]"))
    return pd.concat(frames, ignore_index=True)
