"""The promotion gate: the rules a trained model must pass before it may become the champion.

Both gates are pure functions of numbers computed elsewhere (models.training.evaluation), and return
a Verdict that records every rule with the numbers it compared, so each rule can be checked at its
boundary and a report can show why.

- `holdout_gate` (evaluation.scheme holdout): point estimates on one test split, with margins.
- `walk_forward_gate` (the default): pooled out-of-sample predictions of every fold, judged with
  one-sided bootstrap bounds against every baseline, fold by fold, and against the champion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.config import GateConfig


@dataclass
class Verdict:
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    rules: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promoted" if self.promoted else "rejected"

    def as_dict(self) -> dict:
        return {"verdict": self.label, **asdict(self)}


def holdout_gate(
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


def _rule(rule: str, passed: bool, message: str, criterion: bool = True, **numbers: object) -> dict:
    return {"rule": rule, "criterion": criterion, "passed": bool(passed), "message": message, **numbers}


def walk_forward_gate(
    evidence: dict,
    gate_config: GateConfig,
    fatal_diagnoses: list[dict],
    champion: dict | None = None,
) -> Verdict:
    """Promote only when every criterion holds:

    - `no-fatal-diagnosis`: no fold's training raised a fatal diagnosis;
    - `beats-baseline` (one per baseline): the one-sided lower bound of (model - baseline) pooled
      balanced accuracy is above `min_effect`;
    - `fold-consistency`: the model's balanced accuracy is above its fold's strongest baseline in
      at least `min_fold_share` of the folds;
    - `direction-skill`: recorded always; a criterion only with `require_direction_skill` (lower
      bound of sign accuracy minus the train-majority direction's above zero);
    - `champion`: the one-sided upper bound of (model - champion) on their common out-of-sample
      windows is at least -`champion_tolerance`; a champion that cannot be compared is a failure only
      when it is not older than this model (`champion["blocks"]`).

    Args:
        evidence: `evaluation.walk_forward_evidence(...)`: `baselines` {name: {balanced_accuracy,
            difference: {estimate, lower, upper}}}, `model` {balanced_accuracy}, `folds` [{fold,
            difference, strongest}], `direction` {difference: {...}, windows}.
        gate_config: The thresholds.
        fatal_diagnoses: Fatal diagnoses of any fold (each with `code`, `message`, `fold`).
        champion: `evaluation.champion_comparison(...)`, or None without a champion.
    """
    rules: list[dict] = []
    rules.append(
        _rule(
            "no-fatal-diagnosis",
            not fatal_diagnoses,
            "; ".join(
                f"fold {d.get('fold', '?')}: guard '{d['code']}': {d['message']}" for d in fatal_diagnoses
            )
            or "no fold raised a fatal diagnosis",
            codes=[d["code"] for d in fatal_diagnoses],
        )
    )
    ours = evidence["model"]["balanced_accuracy"]
    for name, base in evidence["baselines"].items():
        diff = base["difference"]
        passed = diff["lower"] > gate_config.min_effect
        rules.append(
            _rule(
                "beats-baseline",
                passed,
                f"balanced accuracy {ours:.4f} vs {name} {base['balanced_accuracy']:.4f}: difference "
                f"{diff['estimate']:+.4f}, {diff['confidence']:.0%} lower bound {diff['lower']:+.4f} "
                + ("is above" if passed else "is not above")
                + f" the minimum effect {gate_config.min_effect}",
                against=name,
                ours=ours,
                theirs=base["balanced_accuracy"],
                difference=diff["estimate"],
                lower=diff["lower"],
                threshold=gate_config.min_effect,
                confidence=diff["confidence"],
            )
        )
    folds = evidence["folds"]
    wins = sum(1 for f in folds if f["difference"] > 0)
    share = wins / len(folds) if folds else 0.0
    rules.append(
        _rule(
            "fold-consistency",
            share >= gate_config.min_fold_share and bool(folds),
            f"beats its fold's strongest baseline in {wins} of {len(folds)} folds ({share:.0%}; "
            f"needs {gate_config.min_fold_share:.0%})",
            wins=wins,
            folds=len(folds),
            share=share,
            threshold=gate_config.min_fold_share,
        )
    )
    direction = evidence["direction"]["difference"]
    skilled = direction["windows"] > 0 and direction["lower"] > 0
    rules.append(
        _rule(
            "direction-skill",
            skilled,
            f"sign accuracy on {direction['windows']} up/down calls that moved beyond the threshold: "
            f"{direction['model']:.4f} vs {direction_baseline_name(direction['baseline_class'])} "
            f"{direction['baseline']:.4f}, "
            f"difference {direction['estimate']:+.4f}, lower bound {direction['lower']:+.4f}"
            if direction["windows"]
            else "the model made no up/down call on a window that moved beyond the threshold",
            criterion=gate_config.require_direction_skill,
            estimate=direction["estimate"],
            lower=direction["lower"],
            threshold=0.0,
        )
    )
    if champion is not None:
        rules.append(_champion_rule(champion, gate_config))
    reasons = [r["message"] for r in rules if r["criterion"] and not r["passed"]]
    return Verdict(promoted=not reasons, reasons=reasons, rules=rules)


def _champion_rule(champion: dict, gate_config: GateConfig) -> dict:
    name = f"champion v{champion['version']}"
    if not champion.get("compared"):
        return _rule(
            "champion",
            not champion.get("blocks", False),
            f"{name}: {champion['reason']}",
            criterion=champion.get("blocks", False),
            against=name,
        )
    diff = champion["difference"]
    passed = diff["upper"] >= -gate_config.champion_tolerance
    return _rule(
        "champion",
        passed,
        f"on {champion['windows']} common out-of-sample windows ({champion['sessions']} sessions from "
        f"{champion['from']}): balanced accuracy {champion['ours']:.4f} vs {name} "
        f"{champion['balanced_accuracy']:.4f}, difference {diff['estimate']:+.4f}, upper bound "
        f"{diff['upper']:+.4f} "
        + ("is not below" if passed else "is below")
        + f" -{gate_config.champion_tolerance}",
        against=name,
        ours=champion["ours"],
        theirs=champion["balanced_accuracy"],
        difference=diff["estimate"],
        upper=diff["upper"],
        threshold=-gate_config.champion_tolerance,
        confidence=diff["confidence"],
    )


def direction_baseline_name(baseline_class: str) -> str:
    """How to name the direction baseline: one class for every fold, or each fold's own majority."""
    if "/" in baseline_class:
        return f"each fold's train-majority direction ({baseline_class})"
    return f"always '{baseline_class}'"
