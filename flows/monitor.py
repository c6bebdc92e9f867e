"""The `monitor` subflow of the nightly run: predictions -> scorecard -> summary -> drift.

Run by `retrain` after ingest and before it decides whether to retrain, with the champion in place
(see models.monitoring).
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from models.config import PipelineConfig
from tasks.monitoring import drift_night, predict_night, score_night, summarize_night


@flow(name="monitor")
def monitor(
    config: PipelineConfig,
    home: str,
    registry_root: str,
    tickers: list[str],
    night: dt.date,
    left_out: dict[str, str] | None = None,
    force: bool = False,
) -> dict:
    """Predict the night with the champion, score what matured, summarize, and check drift."""
    predictions = predict_night(config, home, registry_root, tickers, night, left_out, force)
    scored = score_night(config, home, registry_root, tickers, night)
    summary = summarize_night(config, registry_root, night)
    drift = drift_night(config, home, registry_root, tickers, night)
    return {
        "night": night.isoformat(),
        "predictions": predictions,
        "scorecard": scored,
        "summary": summary,
        "drift": drift,
    }
