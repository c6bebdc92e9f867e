"""Run scratch: `<home>/runs/<flow-run-id>/` (dataset index, training logs, report drafts).

A run that completes leaves nothing behind: what it produced lives in the price store and the
registry. A run that fails keeps its scratch for inspection, for `retention_days`; every run removes
the scratch of failed runs older than that.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

RUNS = "runs"


def run_dir(home: str | Path, flow_run_id: object) -> Path:
    """The scratch folder of one run."""
    return Path(home) / RUNS / str(flow_run_id or "local")


def remove(folder: Path) -> None:
    """Delete one run's scratch (a completed run's)."""
    shutil.rmtree(folder, ignore_errors=True)


def prune(
    home: str | Path, retention_days: float, now: float | None = None, keep: Path | None = None
) -> list[Path]:
    """Delete the scratch of runs last written to more than `retention_days` ago; returns what went.

    Args:
        home: The data home.
        retention_days: How long a failed run's scratch is kept.
        now: The clock (epoch seconds), for tests.
        keep: A folder never removed (the calling run's own).
    """
    root = Path(home) / RUNS
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or (keep is not None and folder.resolve() == Path(keep).resolve()):
            continue
        if _last_written(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _last_written(folder: Path) -> float:
    """The newest modification time in the folder (the folder's own included)."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:
            continue
    return newest
