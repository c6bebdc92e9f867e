"""The alias rules of the local registry, in-process (the CLI and subprocess tests reach the same
code, but not under mutation testing): what promote, set_alias, reject and prune accept, refuse and
leave behind, each refusal word for word."""

from __future__ import annotations

import json
import os

import pytest

from models.registry import Registry, RegistryError
from models.registry.bundle import ALIASES, MANIFEST
from models.registry.local import ChampionMoved, smoke_state
from tests.registry.publisher import bundle_files

MODEL = "updown"


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "registry")


def add(registry: Registry, tmp_path, tag: str, **manifest) -> int:
    meta = {"created_at": tag, "smoke_test": {"state": "passed"}, **manifest}
    return registry.add_version(MODEL, bundle_files(tmp_path / "src" / tag, tag), meta).version


def test_a_version_without_a_gate_record_or_verdict_is_promoted_like_a_promoted_one(registry, tmp_path):
    """Bundles from before the gate was recorded carry no `gate` (or no verdict): promotable."""
    first = add(registry, tmp_path, "a")
    assert registry.promote(MODEL, first) == {"champion": 1, "latest": 1}
    second = add(registry, tmp_path, "b", gate={"reasons": []})
    assert registry.promote(MODEL, second) == {"champion": 2, "latest": 2}


@pytest.mark.parametrize(
    ("state", "says"),
    [("failed", "failed"), ("pending", "never finished (the publisher stopped during it)")],
)
def test_a_version_whose_smoke_test_failed_or_never_finished_is_not_promoted(registry, tmp_path, state, says):
    add(registry, tmp_path, "a")
    registry.promote(MODEL, 1)
    bad = add(registry, tmp_path, "b", smoke_test={"state": state})
    with pytest.raises(RegistryError) as err:
        registry.promote(MODEL, bad)
    assert str(err.value) == f"updown/2: its serving smoke test {says}; refusing to promote it"
    assert registry.aliases(MODEL) == {"champion": 1, "latest": 1}


def test_a_compare_and_set_that_finds_another_champion_says_which(registry, tmp_path):
    for tag in "abc":
        registry.promote(MODEL, add(registry, tmp_path, tag))
    with pytest.raises(ChampionMoved) as err:
        registry.promote(MODEL, 2, expected_champion=1)
    assert str(err.value) == "updown: the champion moved from v1 to v3 since the candidate was compared"
    assert (err.value.model, err.value.expected, err.value.current) == (MODEL, 1, 3)
    with pytest.raises(ChampionMoved) as err:
        registry.promote(MODEL, 2, expected_champion=None)
    assert str(err.value) == "updown: the champion moved from none to v3 since the candidate was compared"
    assert registry.aliases(MODEL) == {"champion": 3, "latest": 3}


@pytest.mark.parametrize("alias", ["Champion", "1st", "a b", "", 7, None])
def test_an_invalid_alias_name_is_refused_before_anything_is_read(registry, tmp_path, alias):
    add(registry, tmp_path, "a")
    with pytest.raises(RegistryError) as err:
        registry.set_alias(MODEL, alias, 1)
    assert str(err.value) == (
        f"{alias!r} is not a valid alias name (lowercase letters, digits, '_', '-', starting with a letter)"
    )
    assert not (registry.model_dir(MODEL) / ALIASES).exists()


def test_set_alias_refuses_a_rejected_version_saying_how_to_force_it(registry, tmp_path):
    add(registry, tmp_path, "a", gate={"verdict": "rejected", "reasons": ["worse"]})
    with pytest.raises(RegistryError) as err:
        registry.set_alias(MODEL, "canary", 1)
    assert str(err.value) == "updown/1 was rejected; pass force to alias it anyway"
    assert registry.set_alias(MODEL, "canary", 1, force=True) == {"canary": 1}


def test_set_alias_repairs_a_damaged_table_keeping_its_valid_entries(registry, tmp_path):
    add(registry, tmp_path, "a")
    add(registry, tmp_path, "b")
    path = registry.model_dir(MODEL) / ALIASES
    path.write_text('{"champion": 1, "latest": "2", "canary": 2}')
    with pytest.raises(RegistryError, match="not a version number"):
        registry.promote(MODEL, 2)  # promotion never drops entries silently
    assert registry.set_alias(MODEL, "latest", 2) == {"champion": 1, "canary": 2, "latest": 2}
    assert json.loads(path.read_text()) == {"champion": 1, "canary": 2, "latest": 2}


def test_reject_of_a_version_whose_gate_has_no_reasons_records_the_one_reason(registry, tmp_path):
    add(registry, tmp_path, "a", gate={"verdict": "promoted"})
    add(registry, tmp_path, "b")  # no gate at all
    assert registry.reject(MODEL, 1, "smoke test failed")["gate"] == {
        "verdict": "rejected",
        "reasons": ["smoke test failed"],
    }
    assert registry.reject(MODEL, 2, "withdrawn")["gate"] == {"verdict": "rejected", "reasons": ["withdrawn"]}
    assert registry.verify(f"{MODEL}/1")["gate"]["reasons"] == ["smoke test failed"]


def test_a_reject_killed_before_its_manifest_rename_leaves_the_bundle_as_it_was(
    registry, tmp_path, monkeypatch
):
    """The new manifest is written beside the bundle, never inside it: a writer killed before the
    rename leaves the bundle exactly as it was (still verifiable), its temp file where the next
    locked write clears it."""
    add(registry, tmp_path, "a")
    bundle = registry.model_dir(MODEL) / "1"
    before = sorted(p.name for p in bundle.iterdir())
    real_replace = os.replace

    def killed(src, dst, *args, **kwargs):
        if str(dst).endswith(MANIFEST):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        registry.reject(MODEL, 1, "withdrawn")
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in bundle.iterdir()) == before
    assert "gate" not in registry.verify(f"{MODEL}/1")  # the manifest as it was
    add(registry, tmp_path, "b")  # the next locked write clears the killed writer's temp file
    assert not list(registry.model_dir(MODEL).glob(".*.tmp"))
    assert registry.reject(MODEL, 1, "withdrawn")["gate"]["verdict"] == "rejected"


def test_prune_keeps_ten_versions_by_default(registry, tmp_path):
    for i in range(12):
        add(registry, tmp_path, f"v{i}")
    assert registry.prune(MODEL) == [1, 2]
    assert registry.versions(MODEL) == list(range(3, 13))


def test_a_version_whose_deletion_fails_midway_is_still_out_of_the_listing(registry, tmp_path, monkeypatch):
    """prune renames a version out of the listing before deleting it: a deletion that fails (an I/O
    error, a file held open elsewhere) leaves a trash folder, never a half-deleted listed version."""
    for tag in "abc":
        add(registry, tmp_path, tag)

    def refuse(*args, **kwargs):
        raise PermissionError("busy")

    monkeypatch.setattr(os, "unlink", refuse)
    assert registry.prune(MODEL, keep=1) == [1, 2]
    monkeypatch.undo()
    assert registry.versions(MODEL) == [3]
    registry.verify(f"{MODEL}/3")


def test_set_alias_refuses_a_version_that_never_passed_its_smoke_test_saying_why(registry, tmp_path):
    add(registry, tmp_path, "a", smoke_test={"state": "not_run"})
    with pytest.raises(RegistryError) as err:
        registry.set_alias(MODEL, "canary", 1)
    assert str(err.value) == (
        "updown/1 never passed the serving smoke test (it was not run (publishing asked for no smoke "
        "test)); pass force to alias it anyway"
    )
    assert registry.set_alias(MODEL, "canary", 1, force=True) == {"canary": 1}


@pytest.mark.parametrize(
    ("record", "state"),
    [
        ({"smoke_test": {"state": "passed"}}, "passed"),
        ({"smoke_test": {"state": "pending"}}, "pending"),
        ({"smoke_test": {"state": "not_run"}}, "not_run"),
        ({"smoke_test": {"state": "exploded"}}, "unknown"),  # a state this version does not know
        ({"smoke_test": {}}, "unknown"),
        ({"smoke_test": None}, "unknown"),
        ({}, "unknown"),  # a bundle from before smoke tests were recorded
    ],
)
def test_the_smoke_state_of_a_manifest(record, state):
    assert smoke_state(record) == state


def test_a_bundle_from_before_smoke_tests_needs_force_to_be_aliased(registry, tmp_path):
    version = registry.add_version(
        MODEL, bundle_files(tmp_path / "old", "old"), {"created_at": "old"}
    ).version
    with pytest.raises(RegistryError) as err:
        registry.set_alias(MODEL, "champion", version)
    assert str(err.value) == (
        "updown/1 never passed the serving smoke test (it has no record (a bundle from before smoke "
        "tests were recorded)); pass force to alias it anyway"
    )


@pytest.mark.parametrize("ref", [None, 7, b"updown@champion"])
def test_a_reference_that_is_not_text_is_refused_like_a_malformed_one(registry, tmp_path, ref):
    add(registry, tmp_path, "a")
    with pytest.raises(RegistryError) as err:
        registry.resolve(ref)
    assert str(err.value) == f"{ref!r} is not a model reference: use name@champion, name@latest or name/7"


def test_a_bundle_without_its_required_files_is_refused_naming_the_model(registry, tmp_path):
    files = bundle_files(tmp_path / "src", "a")
    del files["stats.parquet"]
    with pytest.raises(RegistryError) as err:
        registry.add_version(MODEL, files, {"created_at": "a"})
    assert str(err.value) == "publishing updown: a bundle needs stats.parquet"
    assert registry.versions(MODEL) == []
