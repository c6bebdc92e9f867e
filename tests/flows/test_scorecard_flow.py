"""`python -m flows.scorecard` (the scorecard/backfill deployment's flow) and `python -m models
scorecard`: a champion scored from its first day after training, printed, and idempotent."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models import cli as models_cli
from models.config import PipelineConfig
from models.prices import calendar
from models.registry import Registry
from tests.helpers import store_sample

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("prefect_api")


def scorecard_command(*args: str) -> list[str]:
    """`python -m flows.scorecard args` in a fresh process against the session's API; its stdout lines."""
    from prefect.settings import PREFECT_API_URL

    done = subprocess.run(
        [sys.executable, "-m", "flows.scorecard", *args],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_the_scorecard_command_backfills_prints_and_reruns_idempotently(champion_registry, tmp_path, capsys):
    home = tmp_path / ".pipeline"
    shutil.copytree(champion_registry, home / "registry")
    trained = PipelineConfig.model_validate(Registry(home / "registry").manifest("updown@champion")["config"])
    end = dt.date(2024, 9, 30)
    store_sample(home, trained.source.model_copy(update={"end": None}), end)  # the nightly's ingest
    sessions = calendar.sessions("XNYS", dt.date(2024, 7, 1), end)
    matured = len(sessions) - 5

    out = scorecard_command("--home", str(home), "--window", "40")
    rows = 8 * matured
    assert out[0] == f"scorecard: {rows} row(s) added (0 nightly, {rows} backfill), {rows} in all"
    assert out[2].startswith("# Scorecard: updown/1 — ")
    assert out[4].startswith(
        f"- window: the last 40 sessions with a matured label: 40 session(s), "
        f"{sessions[matured - 40].date()}..{sessions[matured - 1].date()}, 320 windows of 8 ticker(s)"
    )
    card = home / "registry" / "updown" / "scorecard.parquet"
    before = card.read_bytes()

    out = scorecard_command("--home", str(home), "--window", "40")  # the same night again
    assert out[0] == f"scorecard: 0 row(s) added (0 nightly, 0 backfill), {rows} in all"
    assert card.read_bytes() == before

    registry = ["--registry", str(home / "registry")]
    assert models_cli.main(["scorecard", "updown", "--window", "40", "--json", *registry]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sessions"], summary["windows"], summary["scored_total"]) == (40, 320, rows)
    assert summary["status"] == "judged" and summary["origins"] == {"backfill": 320}

    done = subprocess.run(
        [sys.executable, "-m", "flows.scorecard", "--home", str(home), "--window", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "window_sessions" in done.stderr, done.stderr  # before Prefect runs
