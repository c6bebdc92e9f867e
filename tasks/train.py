"""Prefect tasks: guarded training and evaluation against baselines and the champion.

Holdout: `train_model` then `evaluate`. Walk-forward: one `train_fold` task per fold (submitted, so a
Dask task runner spreads them over workers), then `evaluate_folds` pools their predictions.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.registry import Registry, RegistryError


def current_champion(registry: Registry, name: str):
    """The champion's bundle, or None when there is none."""
    try:
        return registry.resolve(f"{name}@champion")
    except RegistryError:
        return None


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
    champion = current_champion(registry, config.model.name)
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


@task(task_run_name="fold-{fold}")
def train_fold(fold: int, dataset: DatasetInfo, config: PipelineConfig, run_dir: str) -> dict:
    """One walk-forward fold: audit, guarded training, out-of-sample predictions of model and baselines."""
    from models.training.folds import run_fold  # TensorFlow is imported only where something trains

    logger = get_run_logger()
    record = run_fold(dataset, config, Path(run_dir) / "folds" / f"fold-{fold}", log=logger.info)
    logger.info(
        "fold %d: test %s, balanced accuracy %.4f (strongest baseline %s)",
        fold,
        "..".join(record["splits"]["test"]),
        record["metrics"]["balanced_accuracy"],
        max(record["baselines"], key=lambda n: record["baselines"][n]["balanced_accuracy"]),
    )
    return record


@task
def evaluate_folds(
    records: list[dict], datasets: list[DatasetInfo], config: PipelineConfig, registry_root: str, run_dir: str
) -> dict:
    """Pool the folds' out-of-sample predictions, bootstrap the intervals, compare, and gate."""
    from models.training import evaluation

    registry = Registry(registry_root)
    champion = current_champion(registry, config.model.name)
    result = evaluation.evaluate_walk_forward(
        records,
        datasets,
        config,
        Path(run_dir) / "evaluation",
        registry.local_path(champion) if champion else None,
        champion.version if champion else None,
    )
    logger = get_run_logger()
    for rule in result["gate"]["rules"]:
        logger.info(
            "gate %s: %s%s",
            rule["rule"],
            "pass" if rule["passed"] else "FAIL",
            f" - {rule['message']}" if rule["criterion"] else f" (reported only) - {rule['message']}",
        )
    logger.info("gate verdict: %s", result["gate"]["verdict"])
    return result
