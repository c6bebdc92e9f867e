"""The promotion gate: the rules a trained model must pass before it may become the champion."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.config import GateConfig


@dataclass
class Verdict:
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promoted" if self.promoted else "rejected"

    def as_dict(self) -> dict:
        return {"verdict": self.label, **asdict(self)}


def gate(
    metrics: dict,
    baseline_metrics: dict[str, dict],
    gate_config: GateConfig,
    fatal_diagnoses: list[dict],
    champion: dict | None = None,
) -> Verdict:
    """Promote only a model with no fatal diagnosis that beats every baseline's balanced accuracy by
    the margin, is at least as accurate as always predicting the majority class, and does not lose to
    the current champion beyond the tolerance."""
    reasons: list[str] = []
    comparisons: list[dict] = []
    for d in fatal_diagnoses:
        reasons.append(f"guard '{d['code']}': {d['message']}")
    ours = metrics["balanced_accuracy"]
    for name, base in baseline_metrics.items():
        needed = base["balanced_accuracy"] + gate_config.margin
        ok = ours >= needed
        comparisons.append(
            {
                "against": name,
                "theirs": base["balanced_accuracy"],
                "needed": needed,
                "ours": ours,
                "passed": ok,
            }
        )
        if not ok:
            reasons.append(
                f"balanced accuracy {ours:.4f} does not beat the {name} baseline "
                f"{base['balanced_accuracy']:.4f} by the margin {gate_config.margin} (needs {needed:.4f})"
            )
    majority = baseline_metrics.get("majority")
    if majority is not None and metrics["accuracy"] < majority["accuracy"]:
        reasons.append(
            f"accuracy {metrics['accuracy']:.4f} is below always predicting the majority class "
            f"({majority['accuracy']:.4f})"
        )
    if champion is not None:
        needed = champion["balanced_accuracy"] - gate_config.champion_tolerance
        ok = ours >= needed
        comparisons.append(
            {
                "against": f"champion v{champion['version']}",
                "theirs": champion["balanced_accuracy"],
                "needed": needed,
                "ours": ours,
                "passed": ok,
            }
        )
        if not ok:
            reasons.append(
                f"balanced accuracy {ours:.4f} loses to champion v{champion['version']} "
                f"({champion['balanced_accuracy']:.4f}) by more than {gate_config.champion_tolerance}"
            )
    return Verdict(promoted=not reasons, reasons=reasons, comparisons=comparisons)
