"""Assemble a run's bundle (model, stats, manifest, report, plots) and hand it to the registry."""

from __future__ import annotations

import json
from pathlib import Path

from models import report
from models.config import PipelineConfig
from models.dataset import DatasetInfo
from models.registry import BundleRef, Registry


def publish_run(
    registry: Registry,
    config: PipelineConfig,
    dataset: DatasetInfo,
    training: dict,
    evaluation: dict,
    source: dict,
    flow_run_id: str | None,
    work_dir: Path,
) -> tuple[BundleRef, dict]:
    """Publish the run as a new version; promoted versions move `latest` and `champion`."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = report.build_manifest(
        config=config,
        dataset=dataset,
        source=source,
        training={k: v for k, v in training.items() if k not in ("diagnoses", "model_path")},
        metrics=evaluation["metrics"],
        baselines=evaluation["baselines"],
        champion=evaluation["champion"],
        verdict=evaluation["gate"],
        diagnoses=training.get("diagnoses", []),
        flow_run_id=flow_run_id,
    )
    manifest["model"] = config.model.name
    curves = report.plot_curves(training["history"], work_dir / "curves.png")
    confusion = report.plot_confusion(evaluation["metrics"]["confusion"], work_dir / "confusion.png")
    (work_dir / "report.md").write_text(report.render_report(manifest))
    files = {
        "model.keras": Path(training["model_path"]),
        "stats.parquet": dataset.stats_path,
        "report.md": work_dir / "report.md",
        "curves.png": curves,
        "confusion.png": confusion,
    }
    promote = evaluation["gate"]["verdict"] == "promoted"
    bundle = registry.publish(config.model.name, files, manifest, promote=promote)
    return bundle, json.loads((bundle.path / "manifest.json").read_text())
