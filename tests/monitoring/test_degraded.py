"""`model.degraded`: fired on a market whose planted signal switches off after the champion's
training, and not on the same market with the signal on.

One champion (the session's, trained on the sample market up to TRAINED_UNTIL) is scored, by
backfill, on the half year after its training on a 96-ticker universe of the sample market: a window
of 60 sessions x 96 tickers holds enough evidence to tell the champion's edge from none (see
models.monitoring.summary). The two markets are identical up to TRAINED_UNTIL.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from models.monitoring import nightly, scorecard, summary
from models.monitoring.sessions import load_champion
from tasks import monitoring as monitoring_tasks
from tests.helpers import TRAINED_UNTIL, universe
from tests.monitoring.conftest import Night

NIGHT = dt.date(2024, 10, 15)
TICKERS = universe(96)


def scored(root, champion_registry, **source) -> tuple[Night, dict]:
    env = Night(root, champion_registry, tickers=TICKERS, start=dt.date(2024, 1, 2), **source)
    env.store(NIGHT)
    record = nightly.score_night(env.registry, env.home, env.config, env.tickers, NIGHT)
    assert record["backfill"] == record["added"] > 0
    return env, nightly.summarize_night(env.registry, env.config, NIGHT)


@pytest.fixture(scope="module")
def markets(champion_registry, tmp_path_factory):
    stays = scored(tmp_path_factory.mktemp("stays"), champion_registry)
    off = scored(tmp_path_factory.mktemp("off"), champion_registry, sample_signal_until=TRAINED_UNTIL)
    return {"stays": stays, "off": off}


def figures(summary: dict) -> str:
    strongest = summary["strongest_baseline"]
    diff = summary["baselines"][strongest]["difference"]
    return (
        f"champion {summary['champion']['balanced_accuracy']:.4f} vs {strongest} "
        f"{summary['baselines'][strongest]['balanced_accuracy']:.4f}: {diff['estimate']:+.4f} "
        f"[{diff['lower']:+.4f}, {diff['upper']:+.4f}], effective windows {summary['effective_windows']}, "
        f"edge {summary.get('edge')}, reasons {summary['reasons']}"
    )


def test_degraded_when_the_signal_switched_off_after_training(markets):
    _, summary = markets["off"]
    print("signal off:", figures(summary))
    assert summary["status"] == "judged" and summary["sessions"] == 60 and summary["tickers"] == 96
    assert summary["degraded"], figures(summary)


def test_not_degraded_while_the_signal_stays(markets):
    _, summary = markets["stays"]
    print("signal stays:", figures(summary))
    assert summary["status"] == "judged" and summary["sessions"] == 60 and summary["tickers"] == 96
    assert not summary["degraded"], figures(summary)
    assert summary["edge"]["judged"]  # healthy with enough evidence to say so, not merely unjudged


def test_the_nightly_task_emits_model_degraded_with_the_figures_only_when_degraded(markets, monkeypatch):
    events = []
    monkeypatch.setattr(monitoring_tasks, "emit_event", lambda **event: events.append(event))
    monkeypatch.setattr(monitoring_tasks, "create_markdown_artifact", lambda **artifact: None)
    monkeypatch.setattr(monitoring_tasks, "get_run_logger", lambda: logging.getLogger("test"))
    for name in ("stays", "off"):
        env, _ = markets[name]
        monitoring_tasks.summarize_night.fn(env.config, str(env.home / "registry"), NIGHT)
    assert [e["event"] for e in events] == ["model.degraded"]
    _, summary = markets["off"]
    event = events[0]
    assert event["resource"]["prefect.resource.id"] == "model.updown.1"
    payload = event["payload"]
    assert (payload["model"], payload["version"]) == ("updown", 1)
    assert payload["window"] == {
        "window_sessions": 60,
        "sessions": 60,
        "first": summary["first"],
        "last": summary["last"],
        "windows": 60 * 96,
        "tickers": 96,
    }
    figures = payload["figures"]
    assert figures["strongest_baseline"] == summary["strongest_baseline"]
    assert figures["difference"] == summary["baselines"][summary["strongest_baseline"]]["difference"]
    assert figures["champion"] == summary["champion"] and payload["reasons"] == summary["reasons"]
    assert payload["reasons"][0].startswith("edge lost: ")


def test_a_lost_edge_is_not_judged_on_a_window_too_small_to_show_it(markets):
    """The same switched-off market seen through 8 of its tickers: the lower bound is no longer above
    zero, but the window holds too little evidence to tell that from a healthy champion's noise, so
    `edge lost` is not judged (the summary says how much evidence is missing). On these 8 tickers the
    champion even falls below the volatility rule beyond the interval (measured: -0.0815, upper bound
    -0.0177), which `below` judges on any window."""
    env, _ = markets["off"]
    champion = load_champion(env.registry, "updown")
    card = scorecard.read(env.registry, "updown")
    few = card.loc[card["ticker"].isin(TICKERS[:8])]
    found = summary.summarize(few, champion, env.config.monitoring, env.config.gate, NIGHT)
    print("signal off, 8 tickers:", figures(found))
    assert found["status"] == "judged" and found["tickers"] == 8 and found["sessions"] == 60
    assert found["edge"]["lost"] and not found["edge"]["judged"]
    assert found["effective_windows"] < found["edge"]["required"]
    assert found["degraded"] and [r.split(":")[0] for r in found["reasons"]] == ["below"]
