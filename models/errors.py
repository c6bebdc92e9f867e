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


class RejectedBefore(RuntimeError):
    """This very data and configuration already gave a rejected version; nothing was trained."""

    def __init__(
        self, model: str, version: int, reasons: list[str], hint: str, quarantined: dict | None = None
    ):
        self.model, self.version, self.reasons = model, version, reasons
        self.quarantined = quarantined or {}  # ticker -> why ingest dropped it, this run
        because = "; ".join(reasons) or "no reason recorded"
        self.reason = (
            f"version {version} of {model} was rejected on exactly this data (same data, same config): "
            f"{because}"
        )
        super().__init__(f"{self.reason}. Nothing was trained; {hint}")


class IncompleteUniverse(RuntimeError):
    """Ingest quarantined tickers and the run must train on the whole universe (nothing trained)."""
