"""The gate's controls through the real retrain flow (walk-forward, block-bootstrap gate):

- `signal` (a planted, nonlinear, learnable signal) is PROMOTED, with the lower bound above zero;
- `noise` (a random walk) is REJECTED;
- `volatility` (volatility clustering, no direction) is REJECTED because the volatility-regime rule
  does as well as the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.retrain import retrain
from models.errors import ModelRejected
from models.registry import Registry
from tests.helpers import learning_config

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def run(variant: str, home: Path) -> dict:
    state = retrain(learning_config(variant), str(home), return_state=True)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ModelRejected), error
    return error.summary


def manifest(summary: dict) -> dict:
    return json.loads((Path(summary["path"]) / "manifest.json").read_text())


def test_signal_is_promoted_with_a_lower_bound_above_zero(tmp_path):
    summary = run("signal", tmp_path)
    assert summary["verdict"] == "promoted", summary["reasons"]
    section = manifest(summary)["evaluation"]
    strongest = section["pooled"]["strongest_baseline"]
    assert section["pooled"]["baselines"][strongest]["difference"]["lower"] > 0
    assert all(b["difference"]["lower"] > 0 for b in section["pooled"]["baselines"].values())
    assert set(section["pooled"]["baselines"]) == {
        "majority",
        "persistence",
        "class_prior",
        "volatility_regime",
        "linear",
    }
    assert len(section["fold_results"]) == 4 and "PROMOTED means" in section["meaning"]
    assert Registry(tmp_path / "registry").aliases("updown")["champion"] == summary["version"]


def test_noise_is_rejected(tmp_path):
    summary = run("noise", tmp_path)
    assert summary["verdict"] == "rejected"
    assert Registry(tmp_path / "registry").aliases("updown") == {}
    assert "REJECTED means" in manifest(summary)["evaluation"]["meaning"]


def test_volatility_is_rejected_because_the_volatility_rule_does_as_well(tmp_path):
    summary = run("volatility", tmp_path)
    assert summary["verdict"] == "rejected"
    rules = manifest(summary)["gate"]["rules"]
    (vol_rule,) = [r for r in rules if r["rule"] == "beats-baseline" and r["against"] == "volatility_regime"]
    assert not vol_rule["passed"] and vol_rule["lower"] <= 0
    assert any("volatility_regime" in r for r in summary["reasons"])
    # The model did learn something (how far prices move): it beats the rules that ignore volatility.
    (majority,) = [r for r in rules if r["rule"] == "beats-baseline" and r["against"] == "majority"]
    assert majority["passed"]
