"""A run with nothing new trains nothing: market holidays, and data + config equal to the champion's."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.ingest import ingest
from flows.retrain import retrain
from models.errors import ModelRejected
from models.prices import freshness
from models.registry import Registry
from tests.helpers import learning_config, tiny_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def stored_through_2024(tmp_path_factory) -> tuple[str, object]:
    """A home whose store holds the sample market up to Tuesday 2024-12-31, the last 2024 session."""
    home = str(tmp_path_factory.mktemp("home"))
    config = tiny_config()
    ingest(config.source, home)
    return home, config


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # New Year's Day, a Wednesday: the exchange is closed.
        ("2025-01-01T23:30:00Z", "Wednesday 2025-01-01 is not a XNYS trading day"),
        # 22:00 on New Year's Day in New York although already January 2 in UTC: New York decides.
        ("2025-01-02T03:00:00Z", "Wednesday 2025-01-01 is not a XNYS trading day"),
        ("2024-12-28T23:30:00Z", "Saturday 2024-12-28 is not a XNYS trading day"),
        # A session day after the close, with that session already stored.
        ("2024-12-31T23:30:00Z", "no XNYS session closed since 2024-12-31"),
    ],
)
def test_nightly_skips_when_no_session_closed(stored_through_2024, now, expected):
    home, config = stored_through_2024
    summary = retrain(config, home, skip_if_no_session=True, now=dt.datetime.fromisoformat(now))
    assert summary["verdict"] == "skipped"
    assert summary["reason"].startswith("no session: ") and expected in summary["reason"]
    assert not (Path(home) / "registry").exists()


def test_a_closed_session_not_yet_stored_is_new(stored_through_2024):
    home, config = stored_through_2024
    live = config.source.model_copy(update={"end": None})  # the same store, no end: a live universe
    # Thursday 2025-01-02 closed at 16:00 New York; the store ends on 2024-12-31.
    after_close = pd.Timestamp("2025-01-02T23:30:00Z")
    assert freshness.no_session_reason(live, Path(home), after_close) is None
    # Before the close the last closed session is 2024-12-31, which is stored.
    before_close = pd.Timestamp("2025-01-02T15:00:00Z")
    assert "since 2024-12-31" in freshness.no_session_reason(live, Path(home), before_close)
    # With end 2024-12-31 (historical mode) a later session is nothing to load, and it says why.
    assert freshness.no_session_reason(config.source, Path(home), after_close) == (
        "no session: all 4 tickers are stored up to 2024-12-31, the configured end (historical mode)"
    )


RUN_SCRIPT = """
import json, sys, time
from flows.retrain import retrain
from models.config import PipelineConfig

started = time.perf_counter()
summary = retrain(PipelineConfig.model_validate_json(sys.argv[1]), sys.argv[2])
seconds = time.perf_counter() - started
with open(sys.argv[3], "w") as out:
    json.dump({"summary": summary, "seconds": seconds, "tensorflow": "tensorflow" in sys.modules,
               "keras": "keras" in sys.modules}, out)
"""


def run_in_fresh_process(config, home: Path, out: Path) -> dict:
    """One retrain in a new Python process (so sys.modules tells what this run imported)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, config.model_dump_json(), str(home), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_an_unchanged_nightly_trains_nothing_and_imports_no_tensorflow(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client

    config = learning_config("signal", training={"epochs": 4})
    full = run_in_fresh_process(config, tmp_path / "home", tmp_path / "full.json")
    assert full["summary"]["verdict"] == "promoted" and full["summary"]["version"] == 1
    assert full["tensorflow"]

    noop = run_in_fresh_process(config, tmp_path / "home", tmp_path / "noop.json")
    assert noop["summary"]["verdict"] == "skipped"
    assert noop["summary"]["reason"] == "no new data since version 1 of updown (same data, same config)"
    assert not noop["tensorflow"] and not noop["keras"]
    assert Registry(tmp_path / "home" / "registry").versions("updown") == [1]
    # The night is predicted whether or not a retrain follows: the first run (no champion when it
    # began) by the version it promoted; the skipped rerun finds the same inputs and keeps the file.
    night = full["summary"]["monitoring"]["night"]
    predicted = tmp_path / "home" / "predictions" / "updown" / f"{night}.parquet"
    assert full["summary"]["monitoring"]["predictions"]["status"] == "written"
    assert noop["summary"]["monitoring"]["predictions"]["status"] == "unchanged"
    assert noop["summary"]["monitoring"]["predictions"]["path"] == str(predicted)
    frame = pd.read_parquet(predicted)
    assert len(frame) == len(config.source.tickers) and set(frame["version"]) == {1}
    assert noop["summary"]["decision"].startswith("skipped: no new data since version 1")

    print(
        f"\nfull run {full['seconds']:.1f} s, no-op run {noop['seconds']:.1f} s: "
        f"ratio {noop['seconds'] / full['seconds']:.1%}"
    )

    async def latest_report(key: str = "retrain-report") -> str:
        async with get_client() as client:
            artifacts = await client.read_latest_artifacts()
            return next(a.data for a in artifacts if a.key == key)

    import asyncio

    assert "no new data since version 1" in asyncio.run(latest_report())
    assert "- retrain: skipped: no new data since version 1" in asyncio.run(latest_report("nightly-report"))
    table = json.loads(asyncio.run(latest_report("predictions")))  # the night's rows, as a table artifact
    assert sorted(row["ticker"] for row in table) == list(config.source.tickers)
    assert {row["date"] for row in table} == {night} and {row["version"] for row in table} == {1}

    # The same unchanged data with a champion the monitor finds degraded: the run retrains, and says why.
    import flows.retrain

    real_monitor = flows.retrain.monitor

    def degraded_monitor(*args, **kwargs):
        found = real_monitor(*args, **kwargs)
        verdict = {"degraded": True, "reasons": ["below: planted by the test"]}
        return {**found, "summary": {**found["summary"], **verdict}}

    monkeypatch.setattr(flows.retrain, "monitor", degraded_monitor)
    try:
        retrained = retrain(config, str(tmp_path / "home"))
    except ModelRejected as rejected:
        retrained = rejected.summary
    assert retrained["verdict"] in ("promoted", "rejected") and retrained["version"] == 2
    assert retrained["decision"] == (
        "the data and config are unchanged since version 1 of updown, but updown/1 is DEGRADED "
        "(below: planted by the test): trains anyway"
    )
    assert f"- retrain: {retrained['decision']}" in asyncio.run(latest_report("nightly-report"))


def test_a_changed_model_config_is_not_unchanged(tmp_path):
    manifest = {"data_fingerprint": "abc", "config": tiny_config().model_dump(mode="json")}
    assert freshness.unchanged_since(manifest, "abc", tiny_config())
    assert not freshness.unchanged_since(manifest, "abd", tiny_config())
    assert not freshness.unchanged_since(manifest, "abc", tiny_config(model={"lstm_units": [4]}))


def test_publishing_settings_alone_do_not_count_as_a_change():
    manifest = {"data_fingerprint": "abc", "config": tiny_config().model_dump(mode="json")}
    assert freshness.unchanged_since(manifest, "abc", tiny_config(registry={"keep_versions": 3}))
