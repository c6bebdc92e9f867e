"""The registry's storage contract, with small stand-in files (no TensorFlow): references, schema
and checksum refusal, retention, concurrent publishers, and SIGKILL at every publish step."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import Registry, RegistryError
from models.registry.bundle import ALIASES, MANIFEST, SUPPORTED_SCHEMA_VERSIONS
from tests.registry.publisher import STEPS, bundle_files, manifest

PUBLISHER = Path(__file__).with_name("publisher.py")
REPO = Path(__file__).resolve().parents[2]


def publish(registry: Registry, tmp_path: Path, tag: str, verdict: str = "promoted") -> int:
    files = bundle_files(tmp_path / "src" / tag, tag)
    meta = {
        **manifest(tag),
        "gate": {"verdict": verdict, "reasons": [] if verdict == "promoted" else ["bad"]},
    }
    return registry.publish("updown", files, meta, promote=verdict == "promoted").version


def run_publisher(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PUBLISHER), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def assert_readable(registry: Registry) -> None:
    """Every alias resolves to a complete, verified bundle; every listed version verifies."""
    table = json.loads((registry.model_dir("updown") / ALIASES).read_text())
    for alias in table:
        registry.verify(f"updown@{alias}")
    for version in registry.versions("updown"):
        registry.verify(f"updown/{version}")


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "registry")


def test_resolve_aliases_versions_and_bare_names(registry, tmp_path):
    for tag in ("a", "b", "c"):
        publish(registry, tmp_path, tag)
    publish(registry, tmp_path, "d", verdict="rejected")
    registry.set_alias("updown", "champion", 2)
    assert registry.resolve("updown@champion").version == 2
    assert registry.resolve("updown@latest").version == 3
    assert registry.resolve("updown").version == 2  # a bare name means the champion
    assert registry.resolve("updown/4").version == 4  # rejected, yet addressable by number
    assert registry.resolve("updown/4").path == registry.root / "updown" / "4"


BAD_REFS = {
    "updown@nightly": "has no alias 'nightly' (aliases: champion, latest)",
    "updown/99": "updown/99 does not exist (versions: [1])",
    "other@champion": "model 'other' has no alias 'champion' (aliases: none)",
    "UpDown@champion": "is not a model reference",
    "updown@": "is not a model reference",
    "updown/x": "is not a model reference",
    "updown/../1": "is not a model reference",
    "": "is not a model reference",
}


@pytest.mark.parametrize("ref", list(BAD_REFS))
def test_bad_references_are_refused_with_what_exists(registry, tmp_path, ref):
    publish(registry, tmp_path, "a")
    with pytest.raises(RegistryError, match=re.escape(BAD_REFS[ref])):
        registry.resolve(ref)


@pytest.mark.parametrize("name", ["model.keras", "stats.parquet", "report.md"])
def test_a_flipped_byte_is_refused_naming_the_file(registry, tmp_path, name):
    publish(registry, tmp_path, "a")
    path = registry.root / "updown" / "1" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=rf"updown/1: {name} does not match its manifest checksum"):
        registry.verify("updown@champion")


def test_a_missing_file_is_refused(registry, tmp_path):
    publish(registry, tmp_path, "a")
    (registry.root / "updown" / "1" / "stats.parquet").unlink()
    with pytest.raises(RegistryError, match="stats.parquet is missing"):
        registry.verify("updown/1")


def test_an_unknown_schema_version_is_refused_listing_the_supported_ones(registry, tmp_path):
    publish(registry, tmp_path, "a")
    path = registry.root / "updown" / "1" / MANIFEST
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))
    with pytest.raises(RegistryError, match=r"schema_version 99 is not supported \(this code reads \[1\]\)"):
        registry.verify("updown@champion")
    assert SUPPORTED_SCHEMA_VERSIONS == (1,)


def test_publish_without_promotion_moves_no_alias_then_promote_does(registry, tmp_path):
    publish(registry, tmp_path, "a")
    bundle = registry.add_version("updown", bundle_files(tmp_path / "b", "b"), manifest("b"))
    assert bundle.version == 2 and registry.aliases("updown") == {"champion": 1, "latest": 1}
    assert registry.promote("updown", 2) == {"champion": 2, "latest": 2}


def test_a_rejected_version_cannot_be_promoted_or_aliased_without_force(registry, tmp_path):
    publish(registry, tmp_path, "a")
    publish(registry, tmp_path, "b", verdict="rejected")
    with pytest.raises(RegistryError, match="updown/2 was rejected; refusing to promote"):
        registry.promote("updown", 2)
    with pytest.raises(RegistryError, match="pass force"):
        registry.set_alias("updown", "champion", 2)
    assert registry.set_alias("updown", "canary", 2, force=True)["canary"] == 2


def test_reject_after_the_fact_keeps_the_bundle_verifiable(registry, tmp_path):
    publish(registry, tmp_path, "a")
    bundle = registry.add_version("updown", bundle_files(tmp_path / "b", "b"), manifest("b"))
    stored = registry.reject("updown", bundle.version, "smoke test failed", report="# rejected\n")
    assert stored["gate"] == {"verdict": "rejected", "reasons": ["smoke test failed"]}
    assert registry.verify("updown/2")["gate"]["verdict"] == "rejected"
    assert (bundle.path / "report.md").read_text() == "# rejected\n"
    with pytest.raises(RegistryError, match="is aliased"):
        registry.reject("updown", 1, "no")


def test_retention_keeps_the_newest_k_plus_aliased_versions(registry, tmp_path):
    for i in range(14):
        publish(registry, tmp_path, f"v{i}", verdict="rejected" if i == 13 else "promoted")
    registry.set_alias("updown", "champion", 2)  # a rollback: an old version stays live
    registry.set_alias("updown", "canary", 4)
    removed = registry.prune("updown", keep=10)
    assert removed == [1, 3]
    assert registry.versions("updown") == [2, *range(4, 15)]
    assert registry.aliases("updown") == {"champion": 2, "latest": 13, "canary": 4}
    assert_readable(registry)
    assert not [p for p in registry.model_dir("updown").iterdir() if p.name.startswith(".trash-")]
    # The newest version (here a rejected one) always stays, so numbers are never reused.
    assert registry.prune("updown", keep=1) == [*range(5, 13)]
    assert registry.versions("updown") == [2, 4, 13, 14]
    assert publish(registry, tmp_path, "next") == 15
    with pytest.raises(ValueError, match="at least 1"):
        registry.prune("updown", keep=0)


def test_two_processes_publishing_at_once_get_distinct_versions(registry):
    registry.root.mkdir(parents=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(PUBLISHER), "publish", str(registry.root), "15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    got = [json.loads(out) for out, _ in outputs]
    assert sorted(got[0] + got[1]) == list(range(1, 31))  # distinct, none lost
    table = json.loads((registry.model_dir("updown") / ALIASES).read_text())
    assert table["latest"] == 30 and table["champion"] in (got[0][-1], got[1][-1])
    assert_readable(registry)


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_publish_step_leaves_the_registry_readable(registry, tmp_path, step):
    publish(registry, tmp_path, "first")
    done = run_publisher("crash", str(registry.root), step)
    assert done.returncode == -signal.SIGKILL, done.stderr

    folder = registry.model_dir("updown")
    landed = step in ("after-rename", "mid-alias", "after-alias")
    assert registry.versions("updown") == ([1, 2] if landed else [1])  # never a half-written one
    assert_readable(registry)
    expected = {"champion": 2, "latest": 2} if step == "after-alias" else {"champion": 1, "latest": 1}
    assert registry.aliases("updown") == expected
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    if step in ("mid-copy", "after-copy", "mid-manifest", "before-rename", "mid-alias"):
        assert leftovers, "the crash should have left something behind to clean up"

    after = publish(registry, tmp_path, "next")
    assert after == (3 if landed else 2)
    assert registry.aliases("updown") == {"champion": after, "latest": after}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []
    assert_readable(registry)


def test_cli_lists_shows_and_rolls_back(registry, tmp_path):
    for tag in ("a", "b"):
        publish(registry, tmp_path, tag)
    publish(registry, tmp_path, "c", verdict="rejected")

    def cli(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PIPELINE_HOME": str(registry.root.parent)}
        return subprocess.run(
            [sys.executable, "-m", "models", *args], capture_output=True, text=True, cwd=REPO, env=env
        )

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == 'updown  aliases {"champion": 2, "latest": 2}'
    assert "rejected" in lines[3] and lines[2].rstrip().endswith("champion latest")

    shown = cli("show", "updown@champion", "--verify")
    assert shown.returncode == 0 and "updown/2  (promoted)" in shown.stdout and "verified" in shown.stdout

    rolled = cli("alias", "set", "updown", "champion", "1", "--registry", str(registry.root))
    assert rolled.returncode == 0, rolled.stderr
    assert registry.aliases("updown") == {"champion": 1, "latest": 2}

    refused = cli("alias", "set", "updown", "champion", "3")
    assert refused.returncode == 1 and "was rejected" in refused.stderr
    missing = cli("show", "updown@nightly")
    assert missing.returncode == 1 and "has no alias 'nightly'" in missing.stderr
    assert cli("--help").returncode == 0 and "python -m models predict" in cli("--help").stdout


# -- promotion: compare-and-set, and the serving smoke test's state --------------------------------


def release_scored(registry: Registry, tmp_path: Path, tag: str, score: float, expected, log: list):
    """Release a stand-in version judged by `score` against the champion it is compared with."""
    from models.registry.publication import release

    def judge(against):
        theirs = -1.0 if against is None else registry.manifest(f"updown/{against}")["score"]
        ok = score >= theirs
        return {
            "gate": {"verdict": "promoted" if ok else "rejected", "reasons": [] if ok else ["lost"]},
            "champion": {"version": against},
        }

    def rejudge(current):
        log.append(current)
        return judge(current)

    meta = {**manifest(tag, score), "gate": judge(expected)["gate"]}
    return release(
        registry,
        "updown",
        bundle_files(tmp_path / "src" / tag, tag),
        meta,
        smoke=lambda bundle: {"passed": True, "reason": None},
        expected_champion=expected,
        rejudge=rejudge,
    )


def test_a_candidate_compared_with_an_old_champion_is_compared_again_and_cannot_move_it_back(
    registry, tmp_path
):
    """Run A compares with v1 and is slow; run B promotes a better v2 meanwhile. A must not win."""
    log: list = []
    release_scored(registry, tmp_path, "v1", 0.5, None, log)
    release_scored(registry, tmp_path, "b", 0.9, 1, log)  # B: compared with v1, promoted
    assert registry.aliases("updown")["champion"] == 2
    a = release_scored(registry, tmp_path, "a", 0.7, 1, log)  # A was compared with v1 only
    assert log == [2]  # the champion had moved: A was judged again, against v2
    stored = registry.manifest(a)
    assert stored["gate"]["verdict"] == "rejected"
    assert "champion moved from v1 to v2" in stored["gate"]["reasons"][-1]
    assert registry.aliases("updown") == {"champion": 2, "latest": 2}
    better = release_scored(registry, tmp_path, "c", 0.95, 1, log)  # beats v2 too: promoted
    assert registry.aliases("updown")["champion"] == better.version and log == [2, 2]


def test_promote_with_an_expected_champion_is_a_compare_and_set(registry, tmp_path):
    from models.registry import ChampionMoved

    publish(registry, tmp_path, "a")
    bundle = registry.add_version("updown", bundle_files(tmp_path / "b", "b"), manifest("b"))
    with pytest.raises(ChampionMoved, match="moved from none to v1") as moved:
        registry.promote("updown", bundle.version, expected_champion=None)
    assert moved.value.current == 1 and registry.aliases("updown")["champion"] == 1
    assert registry.promote("updown", bundle.version, expected_champion=1)["champion"] == 2


def test_overlapping_publishers_never_move_the_champion_to_an_uncompared_version(registry):
    registry.root.mkdir(parents=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(PUBLISHER), "judged", str(registry.root), "8", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    events = [e for out, _ in outputs for e in json.loads(out)]
    promoted = [e for e in events if e["verdict"] == "promoted"]
    scores = {e["version"]: e["score"] for e in events}
    # Compare-and-set: each champion is replaced at most once, by a version compared with it and at
    # least as good, so the promotions form one chain from the first champion to the last.
    replaced = [e["replaced"] for e in promoted]
    assert len(replaced) == len(set(replaced)), replaced
    for e in promoted:
        assert e["replaced"] is None or e["score"] >= scores[e["replaced"]], e
    chain, current = [], None
    successor = {e["replaced"]: e["version"] for e in promoted}
    while current in successor:
        current = successor[current]
        chain.append(current)
    assert sorted(chain) == sorted(e["version"] for e in promoted)
    assert registry.aliases("updown")["champion"] == chain[-1]
    assert scores[chain[-1]] == max(scores[v] for v in chain)
    assert_readable(registry)


def test_a_version_killed_in_its_smoke_test_is_visibly_not_promotable(registry, tmp_path):
    publish(registry, tmp_path, "first")
    done = run_publisher("smoke-kill", str(registry.root))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert registry.versions("updown") == [1, 2]
    assert registry.manifest("updown/2")["smoke_test"] == {"state": "pending"}
    assert registry.aliases("updown") == {"champion": 1, "latest": 1}
    with pytest.raises(RegistryError, match="smoke test never finished"):
        registry.promote("updown", 2)
    with pytest.raises(RegistryError, match="never passed the serving smoke test"):
        registry.set_alias("updown", "champion", 2)
    listing = subprocess.run(
        [sys.executable, "-m", "models", "list", "--registry", str(registry.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    line = next(x for x in listing.stdout.splitlines() if x.strip().startswith("2 "))
    assert "smoke pending" in line, listing.stdout
    assert registry.set_alias("updown", "champion", 2, force=True)["champion"] == 2


@pytest.mark.parametrize("state", ["failed", "not_run", None])
def test_alias_set_refuses_a_version_that_never_passed_the_smoke_test(registry, tmp_path, state):
    publish(registry, tmp_path, "a")
    meta = manifest("b")
    meta["smoke_test"] = {"state": state} if state else None
    if state is None:
        del meta["smoke_test"]
    registry.add_version("updown", bundle_files(tmp_path / "b", "b"), meta)
    with pytest.raises(RegistryError, match="never passed the serving smoke test"):
        registry.set_alias("updown", "canary", 2)
    assert registry.set_alias("updown", "canary", 2, force=True)["canary"] == 2


def test_latest_never_moves_backwards_when_an_older_version_is_promoted(registry, tmp_path):
    """Two runs promoting out of order (or a rollback by promotion): champion follows, latest stays."""
    for tag in ("v1", "v2", "v3"):
        registry.add_version("updown", bundle_files(tmp_path / "src" / tag, tag), manifest(tag))
    assert registry.promote("updown", 3) == {"champion": 3, "latest": 3}
    assert registry.promote("updown", 2) == {"champion": 2, "latest": 3}
    assert registry.promote("updown", 1) == {"champion": 1, "latest": 3}
    assert registry.promote("updown", 3) == {"champion": 3, "latest": 3}
    # A newer latest that no longer verifies is not kept: latest comes back to the champion.
    (registry.model_dir("updown") / "3" / "report.md").write_bytes(b"damaged")
    assert registry.promote("updown", 2) == {"champion": 2, "latest": 2}


def test_latest_does_not_stay_on_a_newer_version_the_gate_rejected(registry, tmp_path):
    publish(registry, tmp_path, "v1")
    publish(registry, tmp_path, "v2", verdict="rejected")
    registry.set_alias("updown", "latest", 2, force=True)  # forced by hand onto a rejected version
    legacy = {k: v for k, v in manifest("v3").items() if k != "gate"}
    registry.add_version("updown", bundle_files(tmp_path / "src" / "v3", "v3"), legacy)
    registry.set_alias("updown", "latest", 3, force=True)
    assert registry.promote("updown", 1) == {"champion": 1, "latest": 3}  # no gate section: promotable
    registry.set_alias("updown", "latest", 2, force=True)
    assert registry.promote("updown", 1) == {"champion": 1, "latest": 1}


def test_a_version_without_a_gate_section_is_aliased_like_a_promoted_one(registry, tmp_path):
    """Bundles published before the gate existed carry no `gate`: they are not refused for it."""
    meta = {**manifest("old"), "smoke_test": {"state": "passed"}}
    meta.pop("gate", None)
    registry.add_version("updown", bundle_files(tmp_path / "src" / "old", "old"), meta)
    assert registry.set_alias("updown", "canary", 1) == {"canary": 1}


def test_reject_keeps_the_gates_earlier_reasons(registry, tmp_path):
    publish(registry, tmp_path, "a")
    version = publish(registry, tmp_path, "b", verdict="rejected")
    stored = registry.reject("updown", version, "smoke test failed")
    assert stored["gate"]["reasons"] == ["bad", "smoke test failed"]
    assert registry.verify(f"updown/{version}")["gate"]["reasons"] == ["bad", "smoke test failed"]
