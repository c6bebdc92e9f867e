"""The registry on an S3-compatible server (moto's server mode on 127.0.0.1, spoken to over HTTP by
s3fs exactly as a real bucket would be): round trip, tamper refusal, concurrent publishers from two
processes, SIGKILL at each publish step, retention."""

from __future__ import annotations

import json
import shutil
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


def plant_files(registry: Registry, version: int, planted: dict[str, bytes]) -> None:
    """Rewrite a version's manifest to list `planted` (name -> bytes) with correct checksums, and
    put the objects next to it, as anyone with write access to the bucket could."""
    import hashlib

    prefix = f"{registry.base}/updown/{version}"
    manifest_ = json.loads(registry.fs.cat_file(f"{prefix}/manifest.json"))
    for name, data in planted.items():
        manifest_["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        registry.fs.pipe_file(f"{prefix}/{name}", data)
    registry.fs.pipe_file(f"{prefix}/manifest.json", json.dumps(manifest_).encode())


def cache_files(registry: ObjectStoreRegistry) -> list[Path]:
    root = registry.cache.root
    return sorted(p for p in root.rglob("*") if p.name != ".lock") if root.exists() else []


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/../../x"])
def test_a_manifest_cannot_write_outside_the_download_cache(url, tmp_path, name):
    """A manifest entry `../../x` or `/abs/path` with a correct sha256 used to be written outside the
    cache folder on every consumer: now the bundle is refused before a byte is written."""
    registry = Registry(url, cache_dir=tmp_path / "cache")
    publish(registry, tmp_path, "a")
    target = (tmp_path / "abs" / "path") if name.startswith("/") else None
    planted = name.replace("/abs/path", str(target)) if target else name
    plant_files(registry, 1, {planted: b"owned"})
    registry.cache.clean()
    before = cache_files(registry)
    consumer = Registry(url, cache_dir=tmp_path / "cache")
    with pytest.raises(
        RegistryError, match=r"updown/1: the manifest lists a file named .* not a plain file name"
    ):
        consumer.load_predictor("updown@champion")
    with pytest.raises(RegistryError, match="not a plain file name"):
        consumer.verify("updown/1")
    assert cache_files(consumer) == before  # nothing downloaded, nothing written
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert target is None or not target.exists()


def test_memory_store_refuses_a_traversal_too(tmp_path):
    url = f"memory://registry-{uuid.uuid4().hex[:8]}"
    registry = Registry(url, cache_dir=tmp_path / "cache")
    publish(registry, tmp_path, "a")
    plant_files(registry, 1, {"../../../x": b"owned"})
    with pytest.raises(RegistryError, match="not a plain file name"):
        Registry(url, cache_dir=tmp_path / "cache").load_predictor("updown@champion")
    assert not (tmp_path / "x").exists()


def test_an_object_store_bundle_must_list_everything_it_holds(url, tmp_path):
    registry = Registry(url, cache_dir=tmp_path / "cache")
    publish(registry, tmp_path, "a")
    prefix = f"{registry.base}/updown/1"
    registry.fs.pipe_file(f"{prefix}/extra.bin", b"x")
    with pytest.raises(RegistryError, match="updown/1: extra.bin is in the bundle but not in its manifest"):
        Registry(url, cache_dir=tmp_path / "cache").verify("updown/1")
    registry.fs.rm_file(f"{prefix}/extra.bin")
    manifest_ = json.loads(registry.fs.cat_file(f"{prefix}/manifest.json"))
    registry.fs.pipe_file(f"{prefix}/manifest.json", json.dumps({**manifest_, "files": {}}).encode())
    with pytest.raises(RegistryError, match="does not list model.keras, stats.parquet"):
        Registry(url, cache_dir=tmp_path / "cache").load_predictor("updown/1")


def test_the_download_cache_is_reused_across_instances_and_processes(url, tmp_path):
    cache = tmp_path / "cache"
    registry = Registry(url, cache_dir=cache)
    publish(registry, tmp_path, "a")
    shutil.rmtree(cache)  # publishing verified, so cached, the bundle
    first = Registry(url, cache_dir=cache).check("updown@champion", fresh=False)
    assert first.notes == [f"copy downloaded into the download cache {cache}"]
    inode = (first.folder / "model.keras").stat().st_ino
    again = Registry(url, cache_dir=cache).check("updown@champion", fresh=False)
    assert again.folder == first.folder and again.notes[0].startswith("copy reused (re-checked)")
    assert (again.folder / "model.keras").stat().st_ino == inode  # not downloaded again
    code = (
        "import sys; from models.registry import Registry; "
        "v = Registry(sys.argv[1]).check('updown@champion', fresh=False); print(v.folder); print(v.notes[0])"
    )
    env = {**__import__("os").environ, "PIPELINE_REGISTRY_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    folder, note = done.stdout.strip().splitlines()
    assert Path(folder) == first.folder and note.startswith("copy reused")
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [first.folder.name]


def test_a_damaged_cached_copy_is_never_loaded(url, tmp_path):
    cache = tmp_path / "cache"
    registry = Registry(url, cache_dir=cache)
    publish(registry, tmp_path, "a")
    folder = registry.local_path("updown@champion")
    original = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(b"truncated")
    again = Registry(url, cache_dir=cache).check("updown@champion", fresh=False)
    assert again.notes[0].startswith("copy downloaded")  # the damaged copy was replaced
    assert (again.folder / "model.keras").read_bytes() == original
    # A download that died halfway leaves only a temporary folder, which is never used.
    half = cache / f".tmp-{again.folder.name[:16]}-dead"
    half.mkdir()
    (half / "model.keras").write_bytes(b"half")
    assert Registry(url, cache_dir=cache).local_path("updown@champion") == again.folder


def test_a_download_that_fails_leaves_no_copy(url, tmp_path, monkeypatch):
    registry = Registry(url, cache_dir=tmp_path / "cache")
    publish(registry, tmp_path, "a")
    shutil.rmtree(tmp_path / "cache")
    consumer = Registry(url, cache_dir=tmp_path / "cache")
    real_open = consumer.fs.open

    def failing_open(path, mode="rb", **kwargs):
        if str(path).endswith("stats.parquet"):
            raise ConnectionError("connection reset")
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(consumer.fs, "open", failing_open)
    before = cache_files(consumer)
    with pytest.raises(ConnectionError):
        consumer.local_path("updown@champion")
    assert cache_files(consumer) == before


def test_the_download_cache_stays_within_its_bounds(url, tmp_path):
    cache = tmp_path / "cache"
    registry = Registry(url, cache_dir=cache)
    for i in range(4):
        publish(registry, tmp_path, f"v{i}")
    consumer = Registry(url, cache_dir=cache, cache_max_entries=2)
    consumer.cache.grace_seconds = 0  # no other process here could be loading a copy
    consumer.cache.clean()
    folders = [consumer.local_path(f"updown/{v}") for v in (1, 2, 3, 4)]
    left = [path for path, _, _ in consumer.cache.entries()]
    assert left == [folders[3], folders[2]]  # the two most recently used
    one_bundle = consumer.cache.entries()[0][2]
    small = Registry(url, cache_dir=cache, cache_max_bytes=one_bundle + 1)
    small.cache.grace_seconds = 0
    assert small.local_path("updown/1") and [p for p, _, _ in small.cache.entries()] == [folders[0]]
    # A bundle larger than the bound is still served (the copy just used is never removed).
    tiny = Registry(url, cache_dir=cache, cache_max_bytes=10)
    tiny.cache.grace_seconds = 0
    assert tiny.local_path("updown/2") == folders[1] and len(tiny.cache.entries()) == 1


# -- the lock object: respected while its holder may be alive, broken when it cannot be ----------


def place_lock(registry, content: bytes) -> str:
    from models.registry.bundle import LOCK

    key = registry._mkey("updown", LOCK)
    registry.fs.pipe_file(key, content)
    return key


def held_by(host: str, pid: int, age_s: float) -> bytes:
    import time

    return json.dumps(
        {"owner": "someone", "host": host, "pid": pid, "acquired_at": time.time() - age_s}
    ).encode()


def test_a_fresh_lock_of_a_live_holder_is_waited_for_then_refused(url, tmp_path):
    import os
    import socket

    registry = Registry(url, lock_ttl=60, lock_timeout=0.3)
    for holder in (held_by("another-host", 1, age_s=1), held_by(socket.gethostname(), os.getpid(), age_s=1)):
        key = place_lock(registry, holder)
        with pytest.raises(RegistryError, match=r"could not lock 'updown' within 0 s"):
            publish(registry, tmp_path, "a")
        assert registry.fs.cat_file(key) == holder  # left alone
    assert registry.versions("updown") == []


@pytest.mark.parametrize(
    "holder",
    [
        pytest.param(held_by("another-host", 1, age_s=61), id="older-than-ttl"),
        pytest.param(b'{"owner": "someone", "host": "another-h', id="torn"),
        pytest.param(b"", id="empty"),
        pytest.param("dead-pid", id="dead-pid-on-this-host"),
    ],
)
def test_a_lock_whose_holder_is_gone_is_broken(url, tmp_path, holder):
    import socket

    if holder == "dead-pid":
        done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        holder = held_by(socket.gethostname(), int(done.stdout), age_s=1)  # a pid that just exited
    registry = Registry(url, lock_ttl=60, lock_timeout=5)
    key = place_lock(registry, holder)
    assert publish(registry, tmp_path, "a") == 1
    assert not registry.fs.exists(key)  # our own lock went too, once released
    assert registry.aliases("updown") == {"champion": 1, "latest": 1}


def test_a_lock_is_broken_by_age_only_past_the_ttl(url):
    registry = Registry(url, lock_ttl=60, lock_timeout=5)
    young = place_lock(registry, held_by("another-host", 1, age_s=50))
    registry._break_if_stale(young)
    assert registry.fs.exists(young)
    place_lock(registry, held_by("another-host", 1, age_s=70))
    registry._break_if_stale(young)
    assert not registry.fs.exists(young)
    registry._break_if_stale(young)  # already gone: nothing to do, no error
