"""Assemble a run's bundle (model, stats, manifest, report, plots) and hand it to the registry.

Publication order (`release`): add the version with its smoke-test state `pending` (no alias moves),
run the serving smoke test in a fresh process when the gate passed and record its result in the
manifest, then promote by compare-and-set under the registry lock, then apply retention.

The candidate was judged against the champion in place when it was evaluated. If another run moved
the champion since, the promotion is refused by the registry, the candidate is judged again against
the new champion (`rejudge`), and the move is tried again; so `champion` only ever moves to a version
that was compared with the version it replaces, and never backwards under overlapping runs. A
failed smoke test, or a lost comparison, turns the version into a rejected one whose gate reasons
say why; `champion` stays where it was. A publisher killed during its smoke test leaves the state
`pending`, which the registry refuses to promote or alias (unless forced).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.registry import BundleRef, ChampionMoved, Registry, report
from models.registry.smoke import smoke_test

# Compares the candidate with another champion (or None): returns the new evaluation record.
Rejudge = Callable[[int | None], dict]


def release(
    registry: Registry,
    name: str,
    files: Mapping[str, Path],
    manifest: dict,
    *,
    smoke: Callable[[BundleRef], dict] | None,
    expected_champion: int | None,
    rejudge: Rejudge | None,
    render: Callable[[dict], str] | None = None,
) -> BundleRef:
    """Add the version, smoke-test it, and promote it by compare-and-set.

    Args:
        registry: Where to publish.
        name: Model name.
        files: Bundle file name -> path (everything but the manifest).
        manifest: The manifest; its `gate.verdict` says whether to try promoting.
        smoke: Runs the serving smoke test on the new version, returning `{"passed", "reason", ...}`;
            None publishes without one (`smoke_test.state` is `not_run`).
        expected_champion: The champion the candidate was compared with (None: there was none).
        rejudge: Given the champion now in place, the candidate's new evaluation (`gate`, `champion`);
            None refuses to promote over a champion that moved.
        render: Renders report.md from a manifest (to keep it in step with amended verdicts).

    Returns:
        The new version.
    """
    promote = manifest["gate"]["verdict"] == "promoted"
    state = "pending" if promote and smoke is not None else "not_run"
    bundle = registry.add_version(name, files, {**manifest, "smoke_test": {"state": state}})
    if promote and smoke is not None:
        result = smoke(bundle)
        record = {"state": "passed" if result["passed"] else "failed", **result}
        if result["passed"]:
            registry.amend(name, bundle.version, {"smoke_test": record})
        else:
            promote = False
            reason = f"serving smoke test failed in a fresh process: {result['reason']}"
            _amend_rejected(registry, bundle, [reason], {"smoke_test": record}, render)
    expected = expected_champion
    while promote:
        try:
            registry.promote(name, bundle.version, expected_champion=expected)
            break
        except ChampionMoved as moved:
            expected = moved.current
            if rejudge is None:
                reason = f"{moved}; nothing here can compare it with the new champion"
                _amend_rejected(registry, bundle, [reason], {}, render)
                break
            evaluation = rejudge(expected)
            changes = {"champion": evaluation["champion"], "gate": evaluation["gate"]}
            if evaluation["gate"]["verdict"] != "promoted":
                note = f"{moved}: judged again against {_name(expected)} and rejected"
                gate = {**evaluation["gate"], "reasons": [*evaluation["gate"]["reasons"], note]}
                _amend_rejected(registry, bundle, [], {**changes, "gate": gate}, render)
                break
            registry.amend(name, bundle.version, changes, _render(registry, bundle, changes, render))
    return bundle


def _name(version: int | None) -> str:
    return "no champion" if version is None else f"v{version}"


def _render(registry: Registry, bundle: BundleRef, changes: dict, render) -> str | None:
    return None if render is None else render({**registry.manifest(bundle), **changes})


def _amend_rejected(registry: Registry, bundle: BundleRef, reasons: list[str], changes: dict, render) -> None:
    stored = registry.manifest(bundle)
    gate = dict(changes.get("gate") or stored["gate"])
    gate |= {"verdict": "rejected", "promoted": False, "reasons": [*gate.get("reasons", []), *reasons]}
    changes = {**changes, "gate": gate}
    registry.amend(bundle.model, bundle.version, changes, _render(registry, bundle, changes, render))


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
    rejudge: Rejudge | None = None,
) -> tuple[BundleRef, dict]:
    """Publish the run as a new version; a promoted one that passes the smoke test moves the aliases.

    Args:
        registry: Where to publish.
        config: The run's configuration (model name, and recorded in the manifest).
        dataset: The dataset the published model was trained on (walk-forward: the last fold's).
        training: `TrainResult.as_dict()` of the published model.
        evaluation: `evaluate_run(...)` or `evaluate_walk_forward(...)` (metrics, baselines, gate).
        source: `sources.describe(config.source)`.
        flow_run_id: Recorded in the manifest.
        work_dir: Scratch folder for the report and plots.
        smoke_prices: Raw prices (see `models.registry.smoke.write_smoke_prices`) for the serving smoke
            test; None skips the test.
        keep: Retention: keep this many newest versions plus aliased ones; None keeps all.
        rejudge: Compares the candidate with a champion that moved since `evaluation` (see `release`).

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
    if evaluation.get("walk_forward") is not None:
        manifest["evaluation"] = report.evaluation_section(config, evaluation)
        manifest["diagnoses"] = evaluation.get("diagnoses", manifest["diagnoses"])
    curves = report.plot_curves(training["history"], work_dir / "curves.png", evaluation.get("walk_forward"))
    confusion = report.plot_confusion(evaluation["metrics"]["confusion"], work_dir / "confusion.png")
    (work_dir / "report.md").write_text(report.render_report(manifest))
    files = {
        "model.keras": Path(training["model_path"]),
        "stats.parquet": dataset.stats_path,
        "report.md": work_dir / "report.md",
        "curves.png": curves,
        "confusion.png": confusion,
    }
    if evaluation.get("baselines_file"):  # walk-forward: the published fold's fitted baselines
        files["baselines.json"] = Path(evaluation["baselines_file"])
    name = config.model.name
    bundle = release(
        registry,
        name,
        files,
        manifest,
        smoke=None if smoke_prices is None else lambda b: smoke_test(registry.url, str(b), smoke_prices),
        expected_champion=evaluation.get("champion_version"),
        rejudge=rejudge,
        render=report.render_report,
    )
    if keep is not None:
        registry.prune(name, keep=keep)
    return bundle, registry.manifest(bundle)
