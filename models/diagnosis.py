"""Diagnoses: what went wrong in a run, in words a person can act on, with a stable code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Diagnosis:
    """One finding of a guard.

    Attributes:
        code: Stable identifier for automations, e.g. `loss-at-clip-floor`.
        message: What happened, in a sentence.
        suggestion: What to change.
        evidence: Numbers that back it (epoch, values, dates).
        fatal: Whether the run must not publish a usable model because of it.
    """

    code: str
    message: str
    suggestion: str
    evidence: dict[str, object] = field(default_factory=dict)
    fatal: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} Fix: {self.suggestion}"


class GuardFailure(RuntimeError):
    """Raised when a guard refuses to go on; carries the diagnoses."""

    def __init__(self, diagnoses: list[Diagnosis]):
        self.diagnoses = list(diagnoses)
        super().__init__("\n".join(str(d) for d in self.diagnoses))

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnoses]
