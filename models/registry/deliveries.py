"""Delivery records: whether Prefect received each published version's event and artifacts.

The registry is the source of truth; Prefect's view (the `model.published` / `model.rejected` event and
the `retrain-report`, `retrain-metrics` and `model-bundle` artifacts) is a copy that an API outage can
leave behind. Each version's record says which of them reached the API, so a later run re-delivers
what did not (tasks/publish.py) and `python -m models deliveries` lists what is pending.

Records live beside the versions, not inside them (a bundle holds exactly the files its manifest
lists): `<registry>/<model>/deliveries/<version>.json`, each written whole (a rename locally, one PUT
in an object store), so a reader sees the old record or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from models.registry.bundle import DELIVERIES, RegistryError, fsync_dir, write_json_atomic
from models.registry.local import Registry

FOLDER = DELIVERIES
RECORD_VERSION = 1
# What a version's publication shows Prefect, in the order it is delivered: the artifacts first, so
# an automation reacting to the event finds them. `model-bundle` links the champion, so only a
# promoted version delivers it.
PROMOTED_ITEMS = ("retrain-report", "retrain-metrics", "model-bundle", "event")
REJECTED_ITEMS = ("retrain-report", "retrain-metrics", "event")


def items_for(verdict: str) -> tuple[str, ...]:
    """What a version with this gate verdict delivers."""
    return PROMOTED_ITEMS if verdict == "promoted" else REJECTED_ITEMS


def event_name(verdict: str) -> str:
    return "model.published" if verdict == "promoted" else "model.rejected"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_record(model: str, version: int, verdict: str, flow_run_id: str | None) -> dict:
    """A record with every item pending, written before the first delivery is attempted."""
    return {
        "record_version": RECORD_VERSION,
        "model": model,
        "version": version,
        "verdict": verdict,
        "published_by": flow_run_id,
        "items": {
            name: {"delivered": False, "attempts": 0, "error": None, "note": None, "at": None, "by": None}
            for name in items_for(verdict)
        },
    }


def mark(
    record: dict, item: str, error: str | None, flow_run_id: str | None, note: str | None = None
) -> dict:
    """The record with one attempt at `item` counted: delivered when `error` is None.

    `note` says why a delivered item needed nothing sent (e.g. a `model-bundle` link superseded by a
    newer champion's).
    """
    entry = dict(record["items"][item])
    entry["attempts"] = int(entry.get("attempts", 0)) + 1
    entry["delivered"] = error is None
    entry["error"] = None if error is None else error.splitlines()[0][:300]
    entry["note"] = note
    entry["at"] = _now()
    entry["by"] = flow_run_id
    return {**record, "items": {**record["items"], item: entry}}


def pending(record: dict | None, verdict: str) -> list[str]:
    """Items not yet delivered, in delivery order; every item when there is no record."""
    if record is None:
        return list(items_for(verdict))
    delivered = {n for n, e in record.get("items", {}).items() if e.get("delivered")}
    return [n for n in items_for(verdict) if n not in delivered]


def _location(registry: Registry, model: str, version: int) -> Path | str:
    folder = registry.model_dir(model)
    if isinstance(folder, Path):
        return folder / FOLDER / f"{int(version)}.json"
    return f"{folder}/{FOLDER}/{int(version)}.json"  # an object-store key


def read(registry: Registry, model: str, version: int) -> dict | None:
    """The version's record, or None when it has none (published before records, or lost in a crash)."""
    where = _location(registry, model, version)
    try:
        raw = where.read_bytes() if isinstance(where, Path) else registry.fs.cat_file(where)
    except FileNotFoundError:
        return None
    return json.loads(raw)


def write(registry: Registry, model: str, version: int, record: dict) -> None:
    """Replace the version's record whole (atomically)."""
    where = _location(registry, model, version)
    if isinstance(where, Path):
        where.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(where, record)
        fsync_dir(where.parent)
    else:
        payload = json.dumps(record, indent=2, sort_keys=True).encode()
        registry.fs.pipe_file(where, payload)  # one PUT: the old object or the new one


def prune(registry: Registry, model: str) -> list[int]:
    """Remove the records of versions retention deleted; returns their versions."""
    listed = set(registry.versions(model))
    folder = registry.model_dir(model)
    if isinstance(folder, Path):
        names = [p.name for p in (folder / FOLDER).glob("*.json")]
    else:
        try:
            names = [e.rsplit("/", 1)[-1] for e in registry.fs.ls(f"{folder}/{FOLDER}", detail=False)]
        except FileNotFoundError:
            names = []
    newest = max(listed, default=0)
    gone = sorted(
        int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit() and int(n[:-5]) not in listed
    )
    gone = [v for v in gone if v < newest]  # a version newer than every listed one is being written
    for version in gone:
        where = _location(registry, model, version)
        if isinstance(where, Path):
            where.unlink(missing_ok=True)
        else:
            registry.fs.rm_file(where)
    return gone


@dataclass(frozen=True)
class VersionDeliveries:
    """One version's delivery state, for `python -m models deliveries` and the re-delivery."""

    model: str
    version: int
    verdict: str
    record: dict | None
    pending: tuple[str, ...]

    def summary(self) -> str:
        if self.verdict.startswith("unreadable"):
            return f"{self.model}/{self.version}: {self.verdict}"
        if self.record is None:
            state = "no record: " + ", ".join(self.pending) + " pending"
        elif not self.pending:
            state = "all delivered"
        else:
            errors = {n: self.record["items"].get(n, {}).get("error") for n in self.pending}
            state = "; ".join(f"{n} pending" + (f" ({e})" if e else "") for n, e in errors.items())
        return f"{self.model}/{self.version} ({self.verdict}): {state}"


def status(registry: Registry, model: str) -> list[VersionDeliveries]:
    """Every listed version of `model`, oldest first, with what Prefect has not received."""
    rows = []
    for version in registry.versions(model):
        try:
            verdict = registry.manifest(f"{model}/{version}").get("gate", {}).get("verdict", "promoted")
        except (RegistryError, ValueError, OSError) as err:  # shown, never delivered: nothing to show
            rows.append(VersionDeliveries(model, version, f"unreadable: {err}", None, ()))
            continue
        record = read(registry, model, version)
        rows.append(VersionDeliveries(model, version, verdict, record, tuple(pending(record, verdict))))
    return rows
