"""Prefect tasks of the nightly monitoring: predictions, scorecard, summary and drift, with their
artifacts (`predictions`, `scorecard`, `nightly-report`) and events (`model.degraded`, `model.drifted`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger

from models.config import PipelineConfig
from models.monitoring import nightly, report
from models.monitoring.predictions import read_predictions
from models.registry import Registry


@task
def predict_night(
    config: PipelineConfig,
    home: str,
    registry_root: str,
    tickers: list[str],
    night: dt.date,
    left_out: dict[str, str] | None = None,
    force: bool = False,
) -> dict:
    """Write the night's predictions file with the champion in place; a table artifact of its rows."""
    record = nightly.predict_night(Registry(registry_root), Path(home), config, tickers, night, force=force)
    if left_out:
        record["missing"] = {**left_out, **(record.get("missing") or {})}
    get_run_logger().info(report.predictions_line(record))
    if record["status"] != "no_champion":
        frame = read_predictions(Path(home), config.model.name, night)
        rows = [
            {
                **{k: row[k] for k in ("ticker", "label", "version")},
                "date": str(pd.Timestamp(row["date"]).date()),
                **{k: round(float(row[k]), 4) for k in row.index if k.startswith("p_") or k == "max_abs_z"},
                "out_of_range": bool(row["out_of_range"]),
            }
            for _, row in frame.iterrows()
        ]
        create_table_artifact(
            key="predictions", table=rows, description=report.predictions_line(record)[:500]
        )
    return record


@task
def score_night(
    config: PipelineConfig,
    home: str,
    registry_root: str,
    tickers: list[str],
    night: dt.date,
    backfill: bool | None = None,
) -> dict:
    """Record every matured prediction in the scorecard (and backfill the champion's missing sessions)."""
    record = nightly.score_night(Registry(registry_root), Path(home), config, tickers, night, backfill)
    get_run_logger().info(report.scorecard_line(record))
    return record


@task
def summarize_night(config: PipelineConfig, registry_root: str, night: dt.date | None) -> dict:
    """The rolling summary (markdown artifact, scorecard.png); `model.degraded` when it has degraded."""
    summary = nightly.summarize_night(Registry(registry_root), config, night)
    line = report.summary_line(summary)
    logger = get_run_logger()
    (logger.warning if summary.get("degraded") else logger.info)(line)
    create_markdown_artifact(
        key="scorecard", markdown=report.scorecard_markdown(summary), description=line[:500]
    )
    if summary.get("degraded"):
        emit_event(
            event="model.degraded",
            resource=_resource(summary),
            payload=degraded_payload(summary),
        )
    return summary


def degraded_payload(summary: dict) -> dict:
    """What `model.degraded` carries: model, version, the window and the figures behind the verdict."""
    strongest = summary["strongest_baseline"]
    return {
        "model": summary["model"],
        "version": summary["version"],
        "window": {
            k: summary[k] for k in ("window_sessions", "sessions", "first", "last", "windows", "tickers")
        },
        "figures": {
            "champion": summary["champion"],
            "strongest_baseline": strongest,
            "baseline": {k: v for k, v in summary["baselines"][strongest].items() if k != "difference"},
            "difference": summary["baselines"][strongest]["difference"],
            "direction_skill": summary.get("direction_skill"),
            "effective_windows": summary["effective_windows"],
            "edge": summary.get("edge"),
        },
        "reasons": summary["reasons"],
        "scorecard": summary.get("scorecard"),
    }


def _resource(found: dict) -> dict:
    return {
        "prefect.resource.id": f"model.{found['model']}.{found['version']}",
        "prefect.resource.name": f"{found['model']}/{found['version']}",
    }


@task
def drift_night(
    config: PipelineConfig, home: str, registry_root: str, tickers: list[str], night: dt.date
) -> dict:
    """Per-feature drift against the champion's train bins; `model.drifted` over a threshold."""
    found = nightly.drift_night(Registry(registry_root), Path(home), config, tickers, night)
    logger = get_run_logger()
    if found.get("status") == "checked":
        logger.info(report.drift_line(found))
        if found["drifted"]:
            emit_event(
                event="model.drifted",
                resource=_resource(found),
                payload={
                    "model": found["model"],
                    "version": found["version"],
                    "sessions": found["sessions"],
                    "first": found["first"],
                    "last": found["last"],
                    "features": [e for e in found["features"] if e["drifted"]],
                    "thresholds": found["thresholds"],
                    "out_of_range": found["out_of_range"],
                },
            )
    return found


@task
def report_night(
    config: PipelineConfig,
    night: dt.date,
    predictions: dict,
    scored: dict,
    summary: dict,
    drift: dict,
    decision: str,
) -> str:
    """The nightly report (markdown artifact `nightly-report`): predictions, scorecard, drift, decision."""
    markdown = report.nightly_markdown(
        config.model.name, night.isoformat(), predictions, scored, summary, drift, decision
    )
    create_markdown_artifact(
        key="nightly-report", markdown=markdown, description=f"{night}: {decision}"[:500]
    )
    return markdown
