"""Errors a run ends with, carrying what a caller needs to report them."""

from __future__ import annotations


class ModelRejected(RuntimeError):
    """The trained model was published as a rejected version; no alias moved."""

    def __init__(self, summary: dict):
        self.summary = summary
        reasons = "; ".join(summary.get("reasons", [])) or "no reason recorded"
        super().__init__(
            f"{summary['model']}/{summary['version']} was REJECTED and not promoted: {reasons} "
            f"(bundle kept for inspection at {summary['path']})"
        )
