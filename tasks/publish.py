"""Prefect task: publish the bundle, show it to people (artifacts) and automations (events)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.prices import sources, store
from models.registry import Registry, smoke
from models.registry.publication import publish_run


@task
def publish(
    config: PipelineConfig,
    dataset: DatasetInfo,
    trained: dict,
    evaluation: dict,
    registry_root: str,
    run_dir: str,
    home: str | None = None,
) -> dict:
    """Write the bundle as a new version; promoted ones that pass the smoke test move the aliases."""
    registry = Registry(registry_root)
    smoke_prices = None
    if home is not None and config.registry.smoke_test:
        label = sources.source_label(config.source)
        prices = {t: store.read_prices(Path(home), t, source=label) for t in dataset.tickers}
        smoke_prices = smoke.write_smoke_prices(prices, Path(run_dir) / "publish" / "smoke_prices.parquet")
    bundle, manifest = publish_run(
        registry,
        config,
        dataset,
        trained,
        evaluation,
        sources.describe(config.source),
        str(flow_run.get_id()) if flow_run.get_id() else None,
        Path(run_dir) / "publish",
        smoke_prices=smoke_prices,
        keep=config.registry.keep_versions,
        rejudge=lambda version: _rejudge(registry, config, evaluation, version),
    )
    verdict = manifest["gate"]["verdict"]
    uri = bundle.url
    create_markdown_artifact(
        key="retrain-report",
        markdown=registry.read_file(bundle, "report.md").decode(),
        description=f"{bundle} {verdict}",
    )
    rows = [{"model": "this model", **_flat(_scores(manifest["metrics"]))}]
    rows += [{"model": name, **_flat(_scores(b))} for name, b in manifest["baselines"].items()]
    create_table_artifact(key="retrain-metrics", table=rows, description=f"{bundle} test metrics")
    create_link_artifact(key="model-bundle", link=uri, link_text=f"{bundle} ({verdict})")
    emit_event(
        event="model.published" if verdict == "promoted" else "model.rejected",
        resource={
            "prefect.resource.id": f"model.{bundle.model}.{bundle.version}",
            "prefect.resource.name": str(bundle),
            "url": uri,
        },
        payload={
            "model": bundle.model,
            "version": bundle.version,
            "verdict": verdict,
            "reasons": manifest["gate"]["reasons"],
        },
    )
    get_run_logger().info("published %s (%s) at %s", bundle, verdict, uri)
    summary = {
        "model": bundle.model,
        "version": bundle.version,
        "path": str(bundle.path) if bundle.path is not None else uri,
        "verdict": verdict,
        "reasons": manifest["gate"]["reasons"],
        "metrics": _scores(manifest["metrics"]),
        "baselines": {name: _scores(b) for name, b in manifest["baselines"].items()},
        "synthetic_data": manifest["synthetic_data"],
        "data": manifest.get("data") or {},
    }
    section = manifest.get("evaluation")
    if section:
        summary["evaluation"] = {
            "scheme": section["scheme"],
            "folds": section["folds"],
            "sample": section["sample"],
            "strongest_baseline": section["pooled"]["strongest_baseline"],
            "direction_skill": section["direction_skill"],
            "carried_by": section["carried_by"],
            "meaning": section["meaning"],
        }
    return summary


def _rejudge(registry: Registry, config: PipelineConfig, evaluation: dict, version: int | None) -> dict:
    """The candidate's evaluation against the champion now in place (it moved during this run)."""
    from models.training.evaluation import rejudge

    bundle = registry.local_path(f"{config.model.name}/{version}") if version is not None else None
    get_run_logger().warning("the champion moved to %s during this run: comparing again", version)
    return rejudge(evaluation, config, bundle, version)


def _scores(metrics: dict) -> dict:
    """Accuracy and balanced accuracy, and where present the interval and the model-minus-it bounds."""
    out = {k: round(float(metrics[k]), 4) for k in ("accuracy", "balanced_accuracy") if k in metrics}
    for key in ("interval", "difference"):
        if metrics.get(key):
            out[key] = {k: round(float(v), 4) for k, v in metrics[key].items()}
    return out


def _flat(scores: dict) -> dict:
    """Table-artifact cells: nested intervals become `interval_lower`, `difference_lower`, ..."""
    out = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            out |= {f"{key}_{k}": v for k, v in value.items() if k in ("lower", "upper", "estimate")}
        else:
            out[key] = value
    return out
