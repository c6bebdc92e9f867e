"""What Prefect is shown about each version, on the temporary API: delivered and recorded, an API outage
recorded as pending, and a later run delivering what the outage kept from Prefect."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

import tasks.publish as publishing
from models.registry import Registry, deliveries
from tests.registry.publisher import bundle_files

pytestmark = pytest.mark.usefixtures("prefect_api")


def add(registry: Registry, tmp_path: Path, tag: str, verdict: str = "promoted") -> int:
    files = bundle_files(tmp_path / "src" / tag, tag)
    files["report.md"].write_text(f"# report of {tag}\n")
    meta = {
        "created_at": tag,
        "gate": {"verdict": verdict, "reasons": [] if verdict == "promoted" else ["loses to majority"]},
        "metrics": {"accuracy": 0.51, "balanced_accuracy": 0.44},
        "baselines": {"majority": {"accuracy": 0.31, "balanced_accuracy": 0.33}},
        "smoke_test": {"state": "passed"},
    }
    return registry.publish("updown", files, meta, promote=verdict == "promoted").version


@flow
def deliver_in_a_run(root: str, version: int) -> dict:
    registry = Registry(root)
    return publishing.deliver(registry, registry.resolve(f"updown/{version}"), redelivery=False)


@flow
def redeliver_in_a_run(root: str) -> list[str]:
    return publishing.redeliver(root, "updown")


def flush_events() -> None:
    """Wait until the API has stored everything sent so far: a marker sent now becomes readable."""
    from prefect.events import Event

    marker = Event(event="test.flush", resource={"prefect.resource.id": f"test.flush.{uuid.uuid4()}"})
    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=[marker.model_dump(mode="json")])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = client.read_events(
                filter=EventFilter(resource=EventResourceFilter(id=[marker.resource.id])), limit=1
            )
            if found.events:
                return
            time.sleep(0.2)
    raise AssertionError("the API did not store a marker event within 60 s")


def events_of(registry: Registry, version: int) -> list:
    """The model events the API holds for this registry's `updown/<version>`."""
    flush_events()
    url = registry.resolve(f"updown/{version}").url
    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(prefix=["model."]),
                resource=EventResourceFilter(id=[f"model.updown.{version}"]),
            ),
            limit=50,
        )
    return [e for e in page.events if e.resource.get("url") == url]


def latest_artifact(key: str):
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return artifact


def test_a_publication_is_delivered_and_recorded(tmp_path):
    registry = Registry(tmp_path / "registry")
    version = add(registry, tmp_path, "a")
    assert deliver_in_a_run(str(registry.root), version) == {}
    record = deliveries.read(registry, "updown", version)
    assert all(record["items"][item]["delivered"] for item in deliveries.PROMOTED_ITEMS)
    (event,) = events_of(registry, version)
    assert event.event == "model.published"
    assert event.payload["version"] == version and event.payload["redelivery"] is False
    assert str(event.resource["url"]) == registry.resolve(f"updown/{version}").url
    assert {r.role for r in event.related} >= {"flow-run", "flow"}  # what emit_event would attach
    assert "report of a" in latest_artifact("retrain-report").data
    assert publishing._latest_bundle_link("updown") == registry.resolve("updown@champion").url


def test_an_outage_is_recorded_and_the_next_run_delivers_what_it_missed(tmp_path, monkeypatch):
    registry = Registry(tmp_path / "registry")
    version = add(registry, tmp_path, "b")

    def api_down(**kwargs):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(publishing, "create_markdown_artifact", api_down)
        failed = deliver_in_a_run(str(registry.root), version)
    assert failed["retrain-report"] == "API unreachable: ConnectError: [Errno 111] Connection refused"
    # Once the API is known to be unreachable, the rest is not attempted (each would wait out retries).
    assert {failed[i] for i in ("retrain-metrics", "model-bundle", "event")} == {
        f"not attempted: {failed['retrain-report']}"
    }
    record = deliveries.read(registry, "updown", version)
    assert record["items"]["retrain-report"]["attempts"] == 1
    assert deliveries.pending(record, "promoted") == list(deliveries.PROMOTED_ITEMS)
    assert events_of(registry, version) == []

    sent = redeliver_in_a_run(str(registry.root))
    assert sent == [f"updown/{version} {item}" for item in deliveries.PROMOTED_ITEMS]
    assert deliveries.pending(deliveries.read(registry, "updown", version), "promoted") == []
    (event,) = events_of(registry, version)
    assert event.event == "model.published" and event.payload["redelivery"] is True
    assert publishing._latest_bundle_link("updown") == registry.resolve("updown@champion").url
    assert redeliver_in_a_run(str(registry.root)) == []  # nothing twice


def test_a_former_champion_is_not_linked_and_the_link_follows_the_champion(tmp_path):
    registry = Registry(tmp_path / "registry")
    old = add(registry, tmp_path, "c")  # never delivered (no record): an outage, then a crash
    rejected = add(registry, tmp_path, "d", verdict="rejected")
    new = add(registry, tmp_path, "e")
    assert registry.aliases("updown")["champion"] == new
    redeliver_in_a_run(str(registry.root))
    record = deliveries.read(registry, "updown", old)
    assert record["items"]["model-bundle"]["note"] == f"superseded: updown/{new} is the champion now"
    assert [e.event for e in events_of(registry, rejected)] == ["model.rejected"]
    assert publishing._latest_bundle_link("updown") == registry.resolve(f"updown/{new}").url
    # A rollback moves the champion outside any run: the next run points the link at it.
    registry.set_alias("updown", "champion", old)
    redeliver_in_a_run(str(registry.root))
    assert publishing._latest_bundle_link("updown") == registry.resolve(f"updown/{old}").url


def test_a_version_whose_publisher_still_runs_is_left_to_it(tmp_path):
    registry = Registry(tmp_path / "registry")
    version = add(registry, tmp_path, "f")

    @flow
    def publisher_still_running() -> str:
        from prefect.runtime import flow_run

        run_id = str(flow_run.get_id())
        deliveries.write(
            registry, "updown", version, deliveries.new_record("updown", version, "promoted", run_id)
        )
        return redeliver_in_a_run(str(registry.root))

    assert publisher_still_running() == []
    assert events_of(registry, version) == []


def test_the_publish_lock_lets_one_holder_in_at_a_time():
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(publishing.PUBLISH_LOCK, 1)
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with publishing.publish_lock():
            start = time.monotonic()
            time.sleep(1.5)
            spans.append((start, time.monotonic()))

    try:
        threads = [threading.Thread(target=hold) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(publishing.PUBLISH_LOCK)
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert b_start >= a_end, f"the second holder entered at {b_start - a_start:.2f} s, before the first left"


def test_without_the_lock_on_the_api_a_shell_run_proceeds_and_a_deployed_run_stops(monkeypatch):
    with publishing.publish_lock():  # a run from a shell on an API without the limit: no lock, no error
        pass
    publishing.require_publish_lock()  # not deployed: nothing required
    monkeypatch.setattr(publishing.deployment, "get_id", lambda: "4f1b8f6c-0000-0000-0000-000000000000")
    with pytest.raises(
        RuntimeError, match=r"no global concurrency limit 'updown-registry-publish'.*make deploy"
    ):
        publishing.require_publish_lock()
