"""The live scorecard, built night by night on the growing sample market (the clock is driven by the
store's last session): matured predictions with their realized labels and the gate's baselines,
backfill, append-only writes, and crash safety."""

from __future__ import annotations

import datetime as dt
import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.monitoring import nightly, scorecard
from models.monitoring import predictions as files
from models.monitoring.sessions import load_champion, session_rows
from models.prices import calendar, sample
from models.registry.doctor import doctor
from tests.helpers import TRAINED_UNTIL

ROOT = Path(__file__).resolve().parents[2]
NIGHTS = calendar.sessions("XNYS", TRAINED_UNTIL, dt.date(2024, 7, 11))  # 2024-06-28 .. 2024-07-11
CLASSES = np.array(["down", "range_bound", "up"])


@functools.cache
def closes(ticker: str, end: dt.date) -> pd.Series:
    frame = sample.generate(ticker, end, start=dt.date(2024, 1, 2))
    return frame.set_index("date")["adj_close"]


def expected_label(ticker: str, day: pd.Timestamp, theta: float, end: dt.date) -> tuple[str, float]:
    """The label computed here from the raw prices, independently of the package."""
    c = closes(ticker, end)
    at = c.index.get_loc(day)
    r = c.iloc[at + 5] / c.iloc[at] - 1
    return ("up" if r > theta else "down" if r < -theta else "range_bound"), r


def test_a_scorecard_built_night_by_night(night):
    theta = night.registry.manifest("updown/1")["labels"]["scale"]
    added = []
    for day in NIGHTS:
        night.store(day.date())
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, day.date())
        record = nightly.score_night(
            night.registry, night.home, night.config, night.tickers, day.date(), backfill=False
        )
        added.append(record["added"])
    # A night's predictions mature 5 sessions later, 8 tickers at a time; the first five nights score none.
    assert added == [0] * 5 + [8] * (len(NIGHTS) - 5)
    card = scorecard.read(night.registry, "updown")
    assert len(card) == 8 * (len(NIGHTS) - 5) and not card.duplicated(["version", "ticker", "date"]).any()
    assert set(card["origin"]) == {"nightly"} and set(card["version"]) == {1}
    assert sorted(card["date"].unique()) == list(NIGHTS[: len(NIGHTS) - 5])
    for row in card.itertuples():
        label, r = expected_label(row.ticker, row.date, theta, NIGHTS[-1].date())
        assert (row.realized, row.forward_return) == (label, pytest.approx(r, rel=1e-12)), row
        assert row.label_date == NIGHTS[NIGHTS.get_loc(row.date) + 5]
        assert row.recorded_on == row.label_date  # scored on the night its label matured
        # Persistence calls the label known on the day: the one whose horizon ended that day.
        previous = closes(row.ticker, NIGHTS[-1].date())
        at = previous.index.get_loc(row.date)
        known = previous.iloc[at] / previous.iloc[at - 5] - 1
        assert row.baseline_persistence == (
            "up" if known > theta else "down" if known < -theta else "range_bound"
        )
    # The probabilities are the night's file's, the call its argmax.
    served = files.read_all(night.home, "updown")
    merged = card.merge(served, on=["ticker", "date"], suffixes=("", "_served"))
    assert len(merged) == len(card)
    np.testing.assert_array_equal(merged["p_up"], merged["p_up_served"])
    assert (merged["predicted"] == merged["label"]).all()
    fitted = load_champion(night.registry, "updown").baselines
    assert (card["baseline_majority"] == fitted["baselines"]["majority"]["class"]).all()
    assert (card["direction_baseline"] == fitted["direction_baseline"]).all()
    prior = np.asarray(fitted["baselines"]["class_prior"]["prior"])
    np.testing.assert_allclose(
        card["baseline_class_prior"], prior[[list(CLASSES).index(r) for r in card["realized"]]]
    )

    # Rerunning the last night adds nothing and leaves the file byte for byte.
    path = night.home / "registry" / "updown" / "scorecard.parquet"
    before = path.read_bytes()
    again = nightly.score_night(
        night.registry, night.home, night.config, night.tickers, NIGHTS[-1].date(), backfill=False
    )
    assert again["added"] == 0 and path.read_bytes() == before


def test_backfill_scores_a_champion_from_its_first_day(night):
    """A champion without nightly files (fresh, rolled back to): every matured session after its
    training end is predicted with the frozen model and scored, once."""
    end = dt.date(2024, 9, 30)
    night.store(end)
    record = nightly.score_night(night.registry, night.home, night.config, night.tickers, end)
    sessions = calendar.sessions("XNYS", dt.date(2024, 7, 1), end)
    matured = sessions[: len(sessions) - 5]  # labels up to 2024-09-30 at most
    assert record["backfill"] == record["added"] == 8 * len(matured) and record["nightly"] == 0
    card = scorecard.read(night.registry, "updown")
    assert sorted(card["date"].unique()) == list(matured) and set(card["origin"]) == {"backfill"}

    # The consumer's predictor on the stored prices gives the same probabilities.
    predictor = night.registry.load_predictor("updown@champion")
    stored = nightly.stored_prices(night.config.source, night.home, night.tickers, end)
    frames = files.price_frame(stored)
    consumer = predictor.predict(pd.concat(frames.values(), ignore_index=True))
    both = card.merge(consumer, on=["ticker", "date"], suffixes=("", "_consumer"))
    assert len(both) == len(card)
    np.testing.assert_allclose(both["p_up"], both["p_up_consumer"], atol=1e-6)

    # A night whose file was missing is filled by backfill; served nights stay `nightly`; nothing twice.
    later = dt.date(2024, 10, 10)  # labels of 2024-10-03 and before have matured
    for day in (dt.date(2024, 10, 1), dt.date(2024, 10, 3)):  # the pipeline did not run on 2024-10-02
        night.store(day)
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, day)
    night.store(later)
    record = nightly.score_night(night.registry, night.home, night.config, night.tickers, later)
    card = scorecard.read(night.registry, "updown")
    assert not card.duplicated(["version", "ticker", "date"]).any()
    new = card.loc[card["date"] > pd.Timestamp(end)]
    origins = new.groupby("date")["origin"].first()
    assert (
        origins[pd.Timestamp("2024-10-02")] == "backfill" and origins[pd.Timestamp("2024-10-01")] == "nightly"
    )
    # Matured since: 2024-09-24 .. 2024-09-30 (before the nightly runs began) and 2024-10-02 have no
    # file -> backfill; 2024-10-01 and 2024-10-03 were served -> nightly.
    assert record["nightly"] == 8 * 2 and record["backfill"] == 8 * (5 + 1)


def test_the_scorecard_is_append_only(night):
    night.store(dt.date(2024, 8, 30))
    nightly.score_night(night.registry, night.home, night.config, night.tickers, dt.date(2024, 8, 15))
    first = scorecard.read(night.registry, "updown")
    nightly.score_night(night.registry, night.home, night.config, night.tickers, dt.date(2024, 8, 30))
    second = scorecard.read(night.registry, "updown")
    assert len(second) > len(first)
    kept = second.merge(first, on=["version", "ticker", "date"], suffixes=("", "_first"))
    assert len(kept) == len(first)
    for column in ("realized", "predicted", "p_up", "recorded_on", "baseline_linear"):
        assert (kept[column] == kept[f"{column}_first"]).all(), column
    # Offered again, rows already there are not added (and the file is not rewritten).
    table, added = scorecard.merge(second, first.assign(realized="down"))
    assert added == 0 and table.num_rows == len(second)


def test_two_writers_at_once_lose_no_row(night):
    night.store(dt.date(2024, 8, 30))
    nightly.score_night(night.registry, night.home, night.config, night.tickers, dt.date(2024, 8, 30))
    card = scorecard.read(night.registry, "updown")
    (night.home / "registry" / "updown" / "scorecard.parquet").unlink()
    halves = [card.iloc[::2], card.iloc[1::2]]
    threads = [threading.Thread(target=scorecard.append, args=(night.registry, "updown", h)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(scorecard.read(night.registry, "updown")) == len(card)


KILLER = """
import os, signal, sys, datetime as dt
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from models.config import PipelineConfig
from models.monitoring import nightly
from models.registry import local

real = os.replace
def replace(src, dst):
    if str(dst).endswith("scorecard.parquet"):
        os.kill(os.getpid(), signal.SIGKILL)  # the new scorecard is written and synced: die before the rename
    return real(src, dst)
local.os.replace = replace
home = Path(sys.argv[2])
config = PipelineConfig.model_validate_json(sys.argv[3])
nightly.score_night(local.Registry(home / "registry"), home, config, list(config.source.tickers),
                    dt.date.fromisoformat(sys.argv[4]), backfill=False)
"""


def test_a_writer_killed_mid_night_leaves_the_previous_scorecard_and_the_next_run_completes(night):
    for day in NIGHTS[:3]:
        night.store(day.date())
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, day.date())
    night.store(NIGHTS[7].date())
    nightly.score_night(
        night.registry, night.home, night.config, night.tickers, NIGHTS[6].date(), backfill=False
    )
    path = night.home / "registry" / "updown" / "scorecard.parquet"
    before = path.read_bytes()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            str(ROOT),
            str(night.home),
            night.config.model_dump_json(),
            str(NIGHTS[7].date()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == -9, done.stderr
    assert path.read_bytes() == before  # the previous scorecard, whole
    found = doctor(night.registry, "updown")
    assert [(f.problem, f.subject.startswith("updown/.scorecard.parquet.")) for f in found.findings] == [
        ("leftover", True)
    ]
    # The night run again records its rows once; doctor --fix removes the dead writer's file.
    record = nightly.score_night(
        night.registry, night.home, night.config, night.tickers, NIGHTS[7].date(), backfill=False
    )
    assert record["added"] == 8 and record["total"] == 24
    assert not doctor(night.registry, "updown", fix=True).left
    assert doctor(night.registry, "updown").findings == []


def test_a_failure_between_steps_then_a_rerun_counts_each_row_once(night, monkeypatch):
    for day in NIGHTS[:2]:
        night.store(day.date())
        nightly.predict_night(night.registry, night.home, night.config, night.tickers, day.date())
    last = NIGHTS[6].date()
    night.store(last)
    nightly.score_night(night.registry, night.home, night.config, night.tickers, last)

    def broken(*args, **kwargs):
        raise RuntimeError("the summary step died")

    with monkeypatch.context() as patched:
        patched.setattr(nightly.summary, "summarize", broken)
        with pytest.raises(RuntimeError, match="summary step died"):
            nightly.summarize_night(night.registry, night.config, last)
    assert not (night.home / "registry" / "updown" / "scorecard.png").exists()
    card = night.home / "registry" / "updown" / "scorecard.parquet"
    before = card.read_bytes()
    again = nightly.score_night(night.registry, night.home, night.config, night.tickers, last)
    assert again["added"] == 0 and card.read_bytes() == before
    found = nightly.summarize_night(night.registry, night.config, last)
    png = (night.home / "registry" / "updown" / "scorecard.png").read_bytes()
    assert found["scored_total"] == len(scorecard.read(night.registry, "updown"))
    # The same night summarized again: the same plot, byte for byte.
    nightly.summarize_night(night.registry, night.config, last)
    assert (night.home / "registry" / "updown" / "scorecard.png").read_bytes() == png


def test_realized_labels_never_span_a_missing_session(night):
    """As in training: a label whose horizon would reach across a gap never matures."""
    night.store(dt.date(2024, 8, 30))
    champion = load_champion(night.registry, "updown")
    prices = nightly.stored_prices(night.config.source, night.home, night.tickers, dt.date(2024, 8, 30))
    gap = pd.Timestamp("2024-08-12")
    holey = {
        t: type(p)(**{f: getattr(p, f)[p.date != gap] for f in p.__dataclass_fields__})
        for t, p in prices.items()
    }
    rows = session_rows(holey, champion)
    before_gap = (rows.dates >= np.datetime64("2024-08-05")) & (rows.dates < np.datetime64(gap))
    assert (rows.realized[before_gap] == -1).all()  # their 5 sessions ahead cross 2024-08-12
    assert (rows.realized[rows.dates == np.datetime64("2024-08-02")] >= 0).all()
