"""Assemble a run's bundle (model, stats, manifest, report, plots) and hand it to the registry.

Publication order: add the version (no alias moves), run the serving smoke test in a fresh process
when the gate passed, then promote, then apply retention. A failed smoke test turns the version
into a rejected one whose gate reasons say why; `champion` stays where it was.
"""

from __future__ import annotations

from pathlib import Path

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.registry import BundleRef, Registry, report
from models.registry.smoke import smoke_test


def publish_run(
    registry: Registry,
    config: PipelineConfig,
    dataset: DatasetInfo,
    training: dict,
    evaluation: dict,
    source: dict,
    flow_run_id: str | None,
    work_dir: Path,
    smoke_prices: Path | None = None,
    keep: int | None = None,
) -> tuple[BundleRef, dict]:
    """Publish the run as a new version; a promoted one that passes the smoke test moves the aliases.

    Args:
        registry: Where to publish.
        config: The run's configuration (model name, and recorded in the manifest).
        dataset: The built dataset (stats file, splits, class shares).
        training: `TrainResult.as_dict()` of the run.
        evaluation: `evaluation.evaluate_run(...)` of the run (metrics, baselines, gate).
        source: `sources.describe(config.source)`.
        flow_run_id: Recorded in the manifest.
        work_dir: Scratch folder for the report and plots.
        smoke_prices: Raw prices (see `models.registry.smoke.write_smoke_prices`) for the serving smoke
            test; None skips the test.
        keep: Retention: keep this many newest versions plus aliased ones; None keeps all.

    Returns:
        The new version and its manifest as stored.
    """
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
    name = config.model.name
    promote = evaluation["gate"]["verdict"] == "promoted"
    bundle = registry.add_version(name, files, manifest)
    if promote and smoke_prices is not None:
        result = smoke_test(registry.url, str(bundle), smoke_prices)
        if not result["passed"]:
            promote = False
            reason = f"serving smoke test failed in a fresh process: {result['reason']}"
            stored = registry.manifest(bundle)
            gate = {**stored["gate"], "verdict": "rejected", "reasons": [*stored["gate"]["reasons"], reason]}
            registry.reject(
                name, bundle.version, reason, report=report.render_report({**stored, "gate": gate})
            )
    if promote:
        registry.promote(name, bundle.version)
    if keep is not None:
        registry.prune(name, keep=keep)
    return bundle, registry.manifest(bundle)
