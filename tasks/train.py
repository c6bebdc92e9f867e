"""Prefect tasks: guarded training and evaluation against baselines and the champion."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.registry import Registry, RegistryError


@task
def train_model(dataset: DatasetInfo, config: PipelineConfig, run_dir: str) -> dict:
    """Train the LSTM with preflight and live guards; returns the result record (paths, history)."""
    from models.training import trainer as training  # TensorFlow is imported only where something trains

    logger = get_run_logger()
    result = training.train(dataset, config, Path(run_dir) / "training", log=logger.info)
    logger.info("trained %d epochs at %.0f windows/s", result.epochs_run, result.windows_per_second)
    return result.as_dict()


@task
def evaluate(dataset: DatasetInfo, trained: dict, config: PipelineConfig, registry_root: str) -> dict:
    """Test metrics, baselines, the champion on the same windows, and the gate's verdict."""
    from models.training import evaluation

    registry = Registry(registry_root)
    try:
        champion = registry.resolve(f"{config.model.name}@champion")
    except RegistryError:
        champion = None
    fatal = [d for d in trained["diagnoses"] if d.get("fatal", True)]
    result = evaluation.evaluate_run(
        Path(dataset.path),
        Path(trained["model_path"]),
        config.gate,
        fatal,
        registry.local_path(champion) if champion else None,
        champion.version if champion else None,
    )
    logger = get_run_logger()
    for c in result["gate"]["comparisons"]:
        logger.info(
            "gate: balanced accuracy %.4f vs %s %.4f (needs %.4f): %s",
            c["ours"],
            c["against"],
            c["theirs"],
            c["needed"],
            "pass" if c["passed"] else "FAIL",
        )
    logger.info("gate verdict: %s", result["gate"]["verdict"])
    return result
