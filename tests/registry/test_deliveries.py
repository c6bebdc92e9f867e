"""Delivery records: per version, outside the bundle, written whole, in a folder and an object store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import ObjectStoreRegistry, Registry, deliveries
from tests.registry.publisher import bundle_files, manifest

REPO = Path(__file__).resolve().parents[2]


def add(registry: Registry, tmp_path: Path, tag: str, verdict: str = "promoted") -> int:
    meta = {**manifest(tag), "gate": {"verdict": verdict, "reasons": [] if verdict == "promoted" else ["x"]}}
    return registry.publish(
        "updown", bundle_files(tmp_path / "src" / tag, tag), meta, verdict == "promoted"
    ).version


@pytest.fixture(params=["folder", "object-store"])
def registry(request, tmp_path) -> Registry:
    if request.param == "folder":
        return Registry(tmp_path / "registry")
    return ObjectStoreRegistry(f"memory://deliveries-{tmp_path.name}")


def test_a_new_record_has_every_item_pending_and_rejected_versions_link_no_bundle():
    promoted = deliveries.new_record("updown", 3, "promoted", "run-1")
    assert deliveries.pending(promoted, "promoted") == [
        "retrain-report",
        "retrain-metrics",
        "model-bundle",
        "event",
    ]
    rejected = deliveries.new_record("updown", 4, "rejected", "run-1")
    assert deliveries.pending(rejected, "rejected") == ["retrain-report", "retrain-metrics", "event"]
    assert deliveries.event_name("promoted") == "model.published"
    assert deliveries.event_name("rejected") == "model.rejected"
    # No record at all (published before records existed, or a crash before the first write): all pending.
    assert deliveries.pending(None, "promoted") == list(deliveries.PROMOTED_ITEMS)


def test_marking_counts_attempts_and_keeps_one_line_of_the_error():
    record = deliveries.new_record("updown", 1, "promoted", "run-1")
    record = deliveries.mark(record, "event", "API unreachable: ConnectError\ntraceback...", "run-1")
    entry = record["items"]["event"]
    assert (entry["delivered"], entry["attempts"], entry["error"]) == (
        False,
        1,
        "API unreachable: ConnectError",
    )
    record = deliveries.mark(record, "event", None, "run-2")
    entry = record["items"]["event"]
    assert (entry["delivered"], entry["attempts"], entry["error"], entry["by"]) == (True, 2, None, "run-2")
    assert deliveries.pending(record, "promoted") == ["retrain-report", "retrain-metrics", "model-bundle"]


def test_records_live_beside_the_versions_and_leave_bundles_verifiable(registry, tmp_path):
    version = add(registry, tmp_path, "a")
    assert deliveries.read(registry, "updown", version) is None
    record = deliveries.mark(deliveries.new_record("updown", version, "promoted", "r"), "event", None, "r")
    deliveries.write(registry, "updown", version, record)
    assert deliveries.read(registry, "updown", version) == record
    # The bundle holds exactly its manifest's files, and a record never looks like a version.
    registry.verify(f"updown/{version}")
    assert registry.versions("updown") == [version]
    assert registry.models() == ["updown"]
    if isinstance(registry, ObjectStoreRegistry):
        assert registry.fs.exists(f"{registry.model_dir('updown')}/deliveries/{version}.json")
    else:
        folder = registry.model_dir("updown")
        assert (folder / "deliveries" / f"{version}.json").exists()
        assert not list((folder / "deliveries").glob(".*"))  # no temporary file left behind
        listed = json.loads((folder / str(version) / "manifest.json").read_text())["files"]
        assert {p.name for p in (folder / str(version)).iterdir()} == {*listed, "manifest.json"}


def test_status_lists_what_each_version_still_owes_prefect(registry, tmp_path):
    first, second = add(registry, tmp_path, "a"), add(registry, tmp_path, "b", verdict="rejected")
    record = deliveries.new_record("updown", first, "promoted", "r")
    for item in deliveries.PROMOTED_ITEMS:
        record = deliveries.mark(record, item, None, "r")
    deliveries.write(registry, "updown", first, record)
    rows = {row.version: row for row in deliveries.status(registry, "updown")}
    assert rows[first].pending == () and rows[first].summary() == "updown/1 (promoted): all delivered"
    assert rows[second].pending == ("retrain-report", "retrain-metrics", "event")
    assert rows[second].summary().startswith("updown/2 (rejected): no record")


def test_records_of_pruned_versions_go_with_them(registry, tmp_path):
    versions = [add(registry, tmp_path, tag) for tag in "abc"]
    for version in versions:
        deliveries.write(
            registry, "updown", version, deliveries.new_record("updown", version, "promoted", "r")
        )
    registry.prune("updown", keep=1)
    assert deliveries.prune(registry, "updown") == [1, 2]
    assert (
        deliveries.read(registry, "updown", 1) is None and deliveries.read(registry, "updown", 3) is not None
    )


def test_the_cli_lists_pending_deliveries(tmp_path):
    registry = Registry(tmp_path / "registry")
    add(registry, tmp_path, "a")
    done = subprocess.run(
        [sys.executable, "-m", "models", "deliveries", "updown", "--registry", str(registry.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "updown/1 (promoted): no record: retrain-report, retrain-metrics, model-bundle, event pending",
        "1 of 1 versions not fully delivered: the next retrain run delivers them",
    ]


def test_doctor_takes_the_records_folder_for_part_of_the_registry(registry, tmp_path):
    from models.registry.doctor import doctor

    version = add(registry, tmp_path, "a")
    deliveries.write(registry, "updown", version, deliveries.new_record("updown", version, "promoted", "r"))
    report = doctor(registry, "updown", fix=False)
    assert report.findings == [], [f.line() for f in report.findings]
