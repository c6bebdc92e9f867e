"""Real files end to end: yfinance's own CSV and Parquet in a folder, history from before 1990, a
missing session and zero-volume prints, through the ingest flow, the retrain flow and `predict`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.ingest import ingest
from flows.retrain import retrain
from models.errors import ModelRejected
from models.prices import calendar, sources, store
from tests.helpers import tiny_config
from tests.yahoo_fake import FakeYahoo, Listing
from tests.yfinance_writer import write_with_yfinance

pytestmark = pytest.mark.usefixtures("prefect_api")

START, END = dt.date(1986, 1, 2), dt.date(1989, 12, 29)  # before the calendar's old 1990 start
SESSIONS = calendar.sessions("XNYS", START, END)
MISSING = SESSIONS[400]  # CCC has no row for this session
ZERO_VOLUME = SESSIONS[[300, 600, 601, 602, 900]]  # CCC printed volume 0 on these
# ticker: (file yfinance writes, call, tickers)
FILES = {
    "AAA": ("AAA.csv", "history", ["AAA"]),  # dates like 1986-01-02 00:00:00-05:00
    "BBB": ("BBB.parquet", "download", ["BBB"]),  # (Price, Ticker) columns
    "CCC": ("CCC.parquet", "history", ["CCC"]),  # tz-aware index
    "DDD": ("DDD.csv", "download", ["DDD"]),  # Price / Ticker / Date header rows
}


def walk(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.012, len(SESSIONS))))
    return pd.DataFrame(
        {
            "date": SESSIONS,
            "open": close * np.exp(rng.normal(0, 0.003, len(SESSIONS))),
            "high": close * 1.02,
            "low": close * 0.98,
            "close": close,
            "volume": rng.integers(1_000, 5_000, len(SESSIONS)),
        }
    ).assign(open=lambda f: f["open"].clip(f["low"], f["high"]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The four files, written by yfinance itself from the fake Yahoo."""
    root = tmp_path_factory.mktemp("real-files")
    fake = FakeYahoo().start()
    try:
        for i, ticker in enumerate(FILES):
            bars = walk(i)
            if ticker == "CCC":
                bars = bars.loc[bars["date"] != MISSING].reset_index(drop=True)
                bars.loc[bars["date"].isin(ZERO_VOLUME), "volume"] = 0
            fake.listings[ticker] = Listing(bars)
        span = {
            "start": START.isoformat(),
            "end": (END + dt.timedelta(days=1)).isoformat(),
            "auto_adjust": False,
        }
        specs = [
            {"path": str(root / name), "call": call, "tickers": tickers, "options": span}
            for name, call, tickers in FILES.values()
        ]
        write_with_yfinance(fake.url, root / "cache", specs)
    finally:
        fake.stop()
    return root


def config(folder: Path):
    source = {"kind": "folder", "folder": str(folder), "tickers": list(FILES)}
    return tiny_config(
        source=source | {"start": START.isoformat(), "end": END.isoformat()}, training={"epochs": 1}
    )


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """The ingest flow, then the retrain flow on what it stored."""
    home = tmp_path_factory.mktemp("home")
    cfg = config(folder)
    state = ingest(cfg.source, str(home), return_state=True)
    records = {r["ticker"]: r for r in state.result()["records"]}
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (table,) = [a for a in artifacts if a.key == "ingest-report"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    run = retrain(cfg, str(home), return_state=True)
    outcome = run.result(raise_on_failure=False)
    summary = outcome.summary if isinstance(outcome, ModelRejected) else outcome
    assert isinstance(summary, dict) and summary.get("version") == 1, outcome
    return {"home": home, "records": records, "rows": rows, "summary": summary, "folder": folder}


def test_the_ingest_flow_stores_every_shape_from_1986_one_row_per_session(trained):
    records, home = trained["records"], trained["home"]
    for ticker in FILES:
        assert records[ticker]["status"] == "ok", records[ticker]
        assert records[ticker]["first_date"] == "1986-01-02" and records[ticker]["last_date"] == "1989-12-29"
        stored = store.read_prices(
            home, ticker, source=sources.source_label(config(trained["folder"]).source)
        )
        expected = SESSIONS[SESSIONS != MISSING] if ticker == "CCC" else SESSIONS
        assert list(stored["date"]) == list(expected)
    assert (records["CCC"]["gaps"], records["CCC"]["zero_volume"]) == (1, len(ZERO_VOLUME))
    assert (records["AAA"]["gaps"], records["AAA"]["zero_volume"]) == (0, 0)
    table = {row["ticker"]: row for row in trained["rows"]}
    assert table["CCC"]["zero_volume"] == len(ZERO_VOLUME) and table["CCC"]["gaps"] == 1


def test_the_retrain_flow_counts_in_sessions_and_says_what_it_dropped(trained):
    bundle = Path(trained["summary"]["path"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    w, h = manifest["window"], manifest["horizon"]
    quality = manifest["data_quality"]
    assert quality["missing_sessions"] == 1 and quality["zero_volume_sessions"] == len(ZERO_VOLUME)
    assert (quality["windows_dropped_at_gaps"], quality["labels_dropped_at_gaps"]) == (w - 1, h)
    assert manifest["splits"]["train"][0] == str(SESSIONS[20].date())  # 1986-01-02 + 20 warm-up rows
    report = (bundle / "report.md").read_text()
    assert f"- data: 1 missing session(s): {w - 1} window(s), {h} label(s)" in report
    assert f"{len(ZERO_VOLUME)} zero-volume session(s) read as missing volume" in report


def test_predict_reads_the_files_that_trained_the_model(trained, tmp_path):
    from models.cli import main as models_cli

    folder = trained["folder"]
    out = tmp_path / "preds.csv"
    files = [str(folder / name) for name, _, _ in FILES.values()]
    registry = str(trained["home"] / "registry")
    assert (
        models_cli(["predict", "updown/1", "--registry", registry, "--prices", *files, "--out", str(out)])
        == 0
    )
    got = pd.read_csv(out, parse_dates=["date"])
    assert sorted(got["ticker"].unique()) == list(FILES)
    assert got["date"].min() < pd.Timestamp("1990-01-01")
    ccc = got[got["ticker"] == "CCC"]
    # No window spans the missing session: each predicted date ends `window` stored sessions in a row.
    manifest = json.loads((trained["home"] / "registry" / "updown" / "1" / "manifest.json").read_text())
    w = manifest["window"]
    present = SESSIONS[SESSIONS != MISSING]
    at = SESSIONS.get_indexer(ccc["date"])
    assert (at >= 0).all()
    for end in at:
        assert all(SESSIONS[i] in present for i in range(end - w + 1, end + 1))
    # Zero-volume sessions are missing volume, in prediction as in training: no input far off.
    holds_zero = np.isin(at, [SESSIONS.get_loc(d) + k for d in ZERO_VOLUME for k in range(w)])
    assert holds_zero.sum() == 3 * w + 2  # windows holding session 300, 600-602 or 900
    assert not ccc["out_of_range"].any() and ccc.loc[holds_zero, "max_abs_z"].max() < 10
