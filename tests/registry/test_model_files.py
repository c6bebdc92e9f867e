"""Per-model files beside the versions (the live scorecard): replaced whole under the model's lock,
on a local folder and on an S3 registry alike; doctor expects them and nothing else."""

from __future__ import annotations

import pandas as pd
import pytest

from models.config import CLASS_NAMES
from models.monitoring import scorecard
from models.registry import Registry, RegistryError
from models.registry.doctor import doctor


def card_row(ticker: str, day: str, realized: str = "down") -> dict:
    date = pd.Timestamp(day)
    return {
        "version": 1,
        "ticker": ticker,
        "date": date,
        "label_date": date + pd.Timedelta(days=7),
        "origin": "nightly",
        "recorded_on": date + pd.Timedelta(days=7),
        **{f"p_{c}": p for c, p in zip(CLASS_NAMES, (0.2, 0.3, 0.5), strict=True)},
        "predicted": "up",
        "realized": realized,
        "forward_return": -0.02,
        "max_abs_z": 1.5,
        "out_of_range": False,
        "direction_baseline": "up",
        **{f"baseline_{b}": "range_bound" for b in scorecard.RULE_BASELINES},
        "baseline_class_prior": 0.3,
    }


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path):
    if request.param == "local":
        return Registry(tmp_path / "registry")
    request.getfixturevalue("s3_endpoint")
    return Registry(f"s3://pipeline/model-files-{tmp_path.name}")


def test_the_scorecard_is_appended_whole_and_never_twice(registry):
    assert registry.read_model_file("updown", scorecard.SCORECARD) is None
    first = pd.DataFrame([card_row("AAA", "2024-07-01"), card_row("BBB", "2024-07-01")])
    assert scorecard.append(registry, "updown", first) == (2, 2)
    raw = registry.read_model_file("updown", scorecard.SCORECARD)
    # The same rows again (a night rerun), even with another realized label: nothing added or rewritten.
    assert scorecard.append(registry, "updown", first.assign(realized="up")) == (0, 2)
    assert registry.read_model_file("updown", scorecard.SCORECARD) == raw
    assert scorecard.append(registry, "updown", pd.DataFrame([card_row("AAA", "2024-07-02")])) == (1, 3)
    card = scorecard.read(registry, "updown")
    assert list(zip(card["ticker"], card["date"].dt.day, card["realized"], strict=True)) == [
        ("AAA", 1, "down"),
        ("BBB", 1, "down"),
        ("AAA", 2, "down"),
    ]
    assert registry.model_file_url("updown", scorecard.SCORECARD).endswith("/updown/scorecard.parquet")


def test_only_the_known_model_files_can_be_written(registry):
    with pytest.raises(RegistryError, match="'notes.txt' is not a model file"):
        registry.write_model_file("updown", "notes.txt", b"hi")
    with pytest.raises(RegistryError, match="is not a model file"):
        registry.write_model_file("updown", "../aliases.json", b"{}")


def test_doctor_expects_the_scorecard_files(champion_registry, tmp_path):
    import shutil

    shutil.copytree(champion_registry, tmp_path / "registry")
    registry = Registry(tmp_path / "registry")
    scorecard.append(registry, "updown", pd.DataFrame([card_row("AAA", "2024-07-01")]))
    registry.write_model_file("updown", "scorecard.png", b"\x89PNG")
    assert doctor(registry, "updown").findings == []
    (tmp_path / "registry" / "updown" / "scorecard.csv").write_text("x")
    assert [(f.subject, f.problem) for f in doctor(registry, "updown").findings] == [
        ("updown/scorecard.csv", "unexpected")
    ]
