"""The registry on an S3-compatible server (moto's server mode on 127.0.0.1, spoken to over HTTP by
s3fs exactly as a real bucket would be): round trip, tamper refusal, concurrent publishers from two
processes, SIGKILL at each publish step, retention."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from models.registry import ObjectStoreRegistry, Registry, RegistryError
from tests.registry.conftest import BUCKET
from tests.registry.publisher import OBJECT_STORE_STEPS, bundle_files, manifest

PUBLISHER = Path(__file__).with_name("publisher.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(s3_endpoint) -> str:
    return f"s3://{BUCKET}/registry-{uuid.uuid4().hex[:8]}"


def publish(registry: Registry, tmp_path: Path, tag: str, verdict: str = "promoted") -> int:
    files = bundle_files(tmp_path / "src" / tag, tag)
    meta = {
        **manifest(tag),
        "gate": {"verdict": verdict, "reasons": [] if verdict == "promoted" else ["bad"]},
    }
    return registry.publish("updown", files, meta, promote=verdict == "promoted").version


def assert_readable(url: str) -> None:
    registry = Registry(url)  # a fresh instance: nothing cached from the writer
    for alias in registry.aliases("updown"):
        registry.verify(f"updown@{alias}")
    for version in registry.versions("updown"):
        registry.verify(f"updown/{version}")


def test_round_trip_through_the_s3_server(url, tmp_path):
    registry = Registry(url)
    assert isinstance(registry, ObjectStoreRegistry)
    assert publish(registry, tmp_path, "a") == 1
    assert publish(registry, tmp_path, "b") == 2
    assert publish(registry, tmp_path, "c", verdict="rejected") == 3

    reader = Registry(url)
    assert reader.models() == ["updown"]
    assert reader.versions("updown") == [1, 2, 3]
    assert reader.aliases("updown") == {"champion": 2, "latest": 2}
    bundle = reader.resolve("updown@champion")
    assert (bundle.version, bundle.path, bundle.url) == (2, None, f"{url}/updown/2")
    manifest_ = reader.verify("updown@champion")
    local = reader.local_path(bundle)
    original = tmp_path / "src" / "b"
    for name in ("model.keras", "stats.parquet", "report.md"):
        assert (local / name).read_bytes() == (original / name).read_bytes()
    assert manifest_["files"]["model.keras"]["bytes"] == 200_000
    with pytest.raises(RegistryError, match="updown/3 was rejected"):
        reader.promote("updown", 3)
    reader.set_alias("updown", "champion", 1)
    assert Registry(url).resolve("updown").version == 1
    with pytest.raises(RegistryError, match=r"updown/9 does not exist \(versions: \[1, 2, 3\]\)"):
        reader.resolve("updown/9")
    # Nothing but bundles, the aliases and no lock object remain.
    names = {p.rsplit("/", 1)[-1] for p in reader.fs.ls(f"{url}/updown".removeprefix("s3://"))}
    assert names == {"1", "2", "3", "aliases.json"}


@pytest.mark.parametrize("name", ["model.keras", "stats.parquet"])
def test_a_tampered_object_is_refused_naming_the_file(url, tmp_path, name):
    registry = Registry(url)
    publish(registry, tmp_path, "a")
    key = f"{url}/updown/1/{name}".removeprefix("s3://")
    data = bytearray(registry.fs.cat_file(key))
    data[10] ^= 0x01
    registry.fs.pipe_file(key, bytes(data))
    with pytest.raises(RegistryError, match=rf"updown/1: {name} does not match its manifest checksum"):
        Registry(url).verify("updown@champion")


def test_retention_on_the_object_store(url, tmp_path):
    registry = Registry(url)
    for i in range(6):
        publish(registry, tmp_path, f"v{i}")
    registry.set_alias("updown", "champion", 1)
    assert registry.prune("updown", keep=3) == [2, 3]
    assert Registry(url).versions("updown") == [1, 4, 5, 6]
    assert publish(registry, tmp_path, "next") == 7
    assert_readable(url)


def test_two_processes_publishing_at_once_get_distinct_versions(url):
    procs = [
        subprocess.Popen(
            [sys.executable, str(PUBLISHER), "publish", url, "6"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    got = [json.loads(out) for out, _ in outputs]
    assert sorted(got[0] + got[1]) == list(range(1, 13))
    registry = Registry(url)
    assert registry.aliases("updown")["latest"] == 12
    assert registry.versions("updown") == list(range(1, 13))
    assert_readable(url)


@pytest.mark.parametrize("step", OBJECT_STORE_STEPS)
def test_sigkill_at_each_publish_step_leaves_the_bucket_readable(url, tmp_path, step):
    publish(Registry(url), tmp_path, "first")
    done = subprocess.run(
        [sys.executable, str(PUBLISHER), "crash", url, step],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]

    registry = Registry(url)
    landed = step in ("after-manifest", "after-alias")
    assert registry.versions("updown") == ([1, 2] if landed else [1])
    expected = {"champion": 2, "latest": 2} if step == "after-alias" else {"champion": 1, "latest": 1}
    assert registry.aliases("updown") == expected
    assert_readable(url)
    prefix = f"{url}/updown".removeprefix("s3://")
    assert ".lock" in {p.rsplit("/", 1)[-1] for p in registry.fs.ls(prefix)}  # the dead publisher's

    # The next publisher breaks the dead holder's lock and removes what it left.
    after = publish(registry, tmp_path, "next")
    assert after == (3 if landed else 2)
    assert registry.aliases("updown") == {"champion": after, "latest": after}
    registry.fs.invalidate_cache(prefix)
    left = {p.rsplit("/", 1)[-1] for p in registry.fs.ls(prefix)}
    assert left == {*(str(v) for v in registry.versions("updown")), "aliases.json"}
    assert_readable(url)


def test_any_fsspec_url_works_not_only_s3(tmp_path):
    url = f"memory://registry-{uuid.uuid4().hex[:8]}"
    registry = Registry(url)
    for i in range(4):
        publish(registry, tmp_path, f"v{i}")
    assert isinstance(registry, ObjectStoreRegistry)
    assert registry.prune("updown", keep=2) == [1, 2]
    assert (registry.versions("updown"), registry.aliases("updown")) == ([3, 4], {"champion": 4, "latest": 4})
    assert registry.verify("updown@champion")["version"] == 4
