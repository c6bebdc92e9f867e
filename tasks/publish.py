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
    )
    verdict = manifest["gate"]["verdict"]
    uri = bundle.url
    create_markdown_artifact(
        key="retrain-report",
        markdown=registry.read_file(bundle, "report.md").decode(),
        description=f"{bundle} {verdict}",
    )
    rows = [{"model": "this model", **_scores(manifest["metrics"])}]
    rows += [{"model": name, **_scores(b)} for name, b in manifest["baselines"].items()]
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
    return {
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


def _scores(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in ("accuracy", "balanced_accuracy") if k in metrics}
