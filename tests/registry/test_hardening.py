"""What an attacker, a crash or a wrong setting can do to a local registry, and what it now does:
manifest file names, complete listings, symlinks, folder identity, model names, strict aliases,
alias repair on promotion, `doctor`, and files synced before the rename that publishes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import Registry, RegistryError
from models.registry.bundle import ALIASES, MANIFEST, sha256_file
from tests.registry.publisher import bundle_files, manifest

REPO = Path(__file__).resolve().parents[2]


def publish(registry: Registry, tmp_path: Path, tag: str, verdict: str = "promoted") -> int:
    files = bundle_files(tmp_path / "src" / tag, tag)
    meta = {**manifest(tag), "gate": {"verdict": verdict, "reasons": []}}
    return registry.publish("updown", files, meta, promote=verdict == "promoted").version


def cli(registry: Registry, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models", "--registry", str(registry.root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def assert_one_clear_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 1, one `error:` line naming the problem, no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def edit_manifest(registry: Registry, version: int, change) -> dict:
    path = registry.root / "updown" / str(version) / MANIFEST
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "registry")


# -- manifest file names ---------------------------------------------------------------------

UNSAFE_NAMES = ["../../x", "/abs/path", "a/b", "..", ".hidden", "model.keras/", "Model.keras", "x..y", ""]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_a_manifest_naming_an_unsafe_file_is_refused(registry, tmp_path, name):
    publish(registry, tmp_path, "a")
    payload = b"evil"
    digest = {"sha256": __import__("hashlib").sha256(payload).hexdigest(), "bytes": len(payload)}
    edit_manifest(registry, 1, lambda m: m["files"].update({name: digest}))
    with pytest.raises(RegistryError, match="which is not a plain file name"):
        registry.verify("updown/1")
    with pytest.raises(RegistryError, match="not a plain file name"):
        registry.read_file("updown/1", name)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "sub/model.keras", "manifest.json"])
def test_publishing_an_unsafe_file_name_is_refused_before_anything_is_written(registry, tmp_path, name):
    files = {**bundle_files(tmp_path / "src", "a"), name: tmp_path / "src" / "report.md"}
    with pytest.raises((RegistryError, ValueError), match="not a plain file name|written by the registry"):
        registry.add_version("updown", files, manifest("a"))
    assert not (registry.root / "updown").exists() or registry.versions("updown") == []


# -- complete listings -----------------------------------------------------------------------


def test_an_empty_file_list_is_not_verified(registry, tmp_path):
    """`"files": {}` used to verify, and the predictor loaded an unchecked model.keras."""
    publish(registry, tmp_path, "a")
    edit_manifest(registry, 1, lambda m: m.update(files={}))
    with pytest.raises(RegistryError, match="does not list model.keras, stats.parquet"):
        registry.verify("updown@champion")
    with pytest.raises(RegistryError, match="does not list model.keras"):
        registry.load_predictor("updown@champion")
    assert_one_clear_error(
        cli(registry, "show", "updown", "--verify"), "updown/1", "does not list model.keras"
    )


def test_an_unlisted_and_altered_model_is_not_verified(registry, tmp_path):
    """model.keras dropped from the list and a byte flipped: verify passed, predict hit BadZipFile."""
    publish(registry, tmp_path, "a")
    edit_manifest(registry, 1, lambda m: m["files"].pop("model.keras"))
    path = registry.root / "updown" / "1" / "model.keras"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="does not list model.keras"):
        registry.verify("updown/1")


def test_a_file_the_manifest_does_not_list_is_refused(registry, tmp_path):
    publish(registry, tmp_path, "a")
    (registry.root / "updown" / "1" / "extra.bin").write_bytes(b"x")
    with pytest.raises(RegistryError, match="updown/1: extra.bin is in the bundle but not in its manifest"):
        registry.verify("updown/1")
    (registry.root / "updown" / "1" / "extra.bin").unlink()
    (registry.root / "updown" / "1" / "sub").mkdir()
    with pytest.raises(RegistryError, match="sub is in the bundle but not in its manifest"):
        registry.verify("updown/1")


def test_a_manifest_for_another_folder_is_refused(registry, tmp_path):
    publish(registry, tmp_path, "a")
    publish(registry, tmp_path, "b")
    # A copy of version 1 under version 2's name: every checksum matches, the identity does not.
    first = registry.root / "updown" / "1"
    second = registry.root / "updown" / "2"
    for path in first.iterdir():
        (second / path.name).write_bytes(path.read_bytes())
    with pytest.raises(RegistryError, match="names model 'updown' version 1, not the folder updown/2"):
        registry.verify("updown/2")
    edit_manifest(registry, 1, lambda m: m.update(model="other"))
    with pytest.raises(RegistryError, match="names model 'other' version 1"):
        registry.verify("updown/1")


@pytest.mark.parametrize(
    "entry",
    [{"sha256": "abc", "bytes": 1}, {"sha256": "0" * 64, "bytes": "1"}, {"sha256": "0" * 64}, "x", None],
)
def test_a_malformed_file_entry_is_refused_with_its_name(registry, tmp_path, entry):
    publish(registry, tmp_path, "a")
    edit_manifest(registry, 1, lambda m: m["files"].update({"report.md": entry}))
    with pytest.raises(RegistryError, match="the manifest entry for report.md is not"):
        registry.verify("updown/1")


def test_an_unreadable_manifest_names_the_bundle(registry, tmp_path):
    publish(registry, tmp_path, "a")
    (registry.root / "updown" / "1" / MANIFEST).write_text('{"files": ')
    assert_one_clear_error(cli(registry, "show", "updown/1"), "updown/1: manifest.json is not valid JSON")


# -- symlinks --------------------------------------------------------------------------------


def test_a_symlinked_file_is_refused(registry, tmp_path):
    publish(registry, tmp_path, "a")
    folder = registry.root / "updown" / "1"
    outside = tmp_path / "outside.keras"
    outside.write_bytes((folder / "model.keras").read_bytes())  # identical bytes: only the link differs
    (folder / "model.keras").unlink()
    (folder / "model.keras").symlink_to(outside)
    with pytest.raises(RegistryError, match="updown/1: model.keras is a symbolic link"):
        registry.verify("updown/1")


def test_a_symlinked_version_folder_is_refused(registry, tmp_path):
    publish(registry, tmp_path, "a")
    publish(registry, tmp_path, "b")
    folder = registry.root / "updown"
    (folder / "2").rename(tmp_path / "elsewhere")
    (folder / "2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RegistryError, match="updown/2: its folder is a symbolic link"):
        registry.verify("updown/2")


# -- model names -----------------------------------------------------------------------------

BAD_MODELS = ["../../x", "../x", "/abs", "a/b", "UpDown", ".hidden", ""]


@pytest.mark.parametrize("model", BAD_MODELS)
def test_the_api_checks_a_model_name_before_touching_the_filesystem(registry, tmp_path, model):
    publish(registry, tmp_path, "a")
    before = sorted(p for p in tmp_path.rglob("*"))
    calls = [
        lambda: registry.prune(model, keep=1),
        lambda: registry.set_alias(model, "champion", 1),
        lambda: registry.aliases(model),
        lambda: registry.versions(model),
        lambda: registry.promote(model, 1),
        lambda: registry.reject(model, 1, "no"),
        lambda: registry.add_version(model, bundle_files(tmp_path / "src" / "a", "a"), manifest("a")),
    ]
    for call in calls:
        with pytest.raises(RegistryError, match="is not a model name"):
            call()
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "args",
    [
        ("prune", "../../x"),
        ("alias", "set", "../../x", "champion", "1"),
        ("list", "../../x"),
        ("doctor", "../../x"),
    ],
)
def test_the_cli_refuses_a_bad_model_name_and_creates_nothing(registry, tmp_path, args):
    publish(registry, tmp_path, "a")
    before = sorted(p for p in tmp_path.rglob("*"))
    assert_one_clear_error(cli(registry, *args), "'../../x' is not a model name")
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "x").exists()


def test_pruning_an_unknown_model_creates_nothing(registry, tmp_path):
    publish(registry, tmp_path, "a")
    assert_one_clear_error(cli(registry, "prune", "other"), "model 'other' is not in", "(models: updown)")
    assert not (registry.root / "other").exists()


# -- aliases.json ----------------------------------------------------------------------------

CORRUPT_ALIASES = {
    '{"champion": 1, "latest": ': "is not valid JSON: Expecting value: line 1 column 27",
    "[1]": "holds a JSON array, not an object",
    "null": "holds a JSON null, not an object",
    '{"champion": {}}': "alias 'champion' is {}, not a version number",
    '{"champion": [1]}': "alias 'champion' is [1], not a version number",
    '{"champion": null}': "alias 'champion' is null, not a version number",
    '{"champion": "1"}': "alias 'champion' is \"1\", not a version number",
    '{"champion": 1.9}': "alias 'champion' is 1.9, not a version number",
    '{"champion": 1.0}': "alias 'champion' is 1.0, not a version number",
    '{"champion": true}': "alias 'champion' is true, not a version number",
    '{"champion": 0}': "alias 'champion' is 0, not a version number",
    '{"champion": 1, "champion": 2}': "key 'champion' appears twice",
    '{"Champion": 1}': "'Champion' is not an alias name",
}


@pytest.mark.parametrize("content", list(CORRUPT_ALIASES))
def test_a_damaged_alias_table_is_refused_naming_the_file_and_the_repair(registry, tmp_path, content):
    publish(registry, tmp_path, "a")
    path = registry.root / "updown" / ALIASES
    path.write_text(content)
    with pytest.raises(RegistryError) as caught:
        registry.resolve("updown@champion")
    message = str(caught.value)
    assert message.startswith(str(path)) and CORRUPT_ALIASES[content] in message
    assert "doctor updown --fix" in message and "alias set updown champion <version>" in message
    assert_one_clear_error(cli(registry, "show", "updown"), str(path), CORRUPT_ALIASES[content])


def test_alias_set_repairs_a_damaged_table(registry, tmp_path):
    publish(registry, tmp_path, "a")
    publish(registry, tmp_path, "b")
    path = registry.root / "updown" / ALIASES
    path.write_text('{"champion": "1", "latest": 2, "canary": 1}')
    done = cli(registry, "alias", "set", "updown", "champion", "1")
    assert done.returncode == 0, done.stderr
    assert "alias 'champion' is \"1\"" in done.stderr and "rewriting it" in done.stderr
    assert registry.aliases("updown") == {"champion": 1, "latest": 2, "canary": 1}
    path.write_text("not json")
    assert cli(registry, "alias", "set", "updown", "champion", "2").returncode == 0
    assert registry.aliases("updown") == {"champion": 2}


def test_promotion_repairs_a_dangling_latest(registry, tmp_path):
    """A retrain printed PROMOTED and left `latest: 99`."""
    publish(registry, tmp_path, "a")
    (registry.root / "updown" / ALIASES).write_text('{"champion": 1, "latest": 99}')
    assert publish(registry, tmp_path, "b") == 2
    assert registry.aliases("updown") == {"champion": 2, "latest": 2}


def test_promotion_keeps_a_newer_latest_only_if_it_verifies(registry, tmp_path):
    for tag in ("a", "b", "c"):
        publish(registry, tmp_path, tag)
    assert registry.promote("updown", 2) == {"champion": 2, "latest": 3}  # out of order: kept
    (registry.root / "updown" / "3" / "report.md").write_text("tampered")
    assert registry.promote("updown", 2) == {"champion": 2, "latest": 2}  # 3 no longer verifies


# -- doctor ----------------------------------------------------------------------------------


def test_doctor_lists_problems_then_fixes_what_it_can(registry, tmp_path):
    for tag in ("a", "b", "c"):
        publish(registry, tmp_path, tag)
    folder = registry.root / "updown"
    (folder / ALIASES).write_text('{"champion": 99, "latest": 3, "canary": 7}')
    (folder / ".tmp-4-deadbeef").mkdir()
    (folder / ".aliases.json.0123.tmp").write_text("{}")
    (folder / "3" / "model.keras").write_bytes(b"flipped")
    (folder / "notes.txt").write_text("hi")

    done = cli(registry, "doctor")
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "updown/.aliases.json.0123.tmp: leftover: left by a writer that died (or one running now)",
        "updown/.tmp-4-deadbeef: leftover: left by a writer that died (or one running now)",
        "updown/notes.txt: unexpected: not a version, aliases.json, the lock or a scorecard file; left alone",
        "updown/3: unverifiable: model.keras does not match its manifest checksum (expected sha256 "
        + f"{sha256_file(tmp_path / 'src' / 'c' / 'model.keras')[:12]}…, 200000 bytes; found "
        + f"{__import__('hashlib').sha256(b'flipped').hexdigest()[:12]}…, 7 bytes); refusing to load",
        "updown@canary: dangling: points at updown/7: no such version",
        "updown@champion: dangling: points at updown/99: no such version",
        "updown@latest: dangling: points at updown/3: it does not verify (see above)",
    ]
    assert done.stderr.strip().endswith("7 problem(s), 5 fixable with --fix")
    assert json.loads((folder / ALIASES).read_text()) == {
        "champion": 99,
        "latest": 3,
        "canary": 7,
    }  # untouched

    fixed = cli(registry, "doctor", "updown", "--fix")
    assert fixed.returncode == 1, fixed.stderr  # version 3 and notes.txt stay for a person to look at
    assert (
        "updown@champion: fixed dangling: now 2, the newest version that verifies and was promoted"
        in fixed.stdout
    )
    assert "updown@canary: fixed dangling: removed" in fixed.stdout
    assert "updown/.tmp-4-deadbeef: fixed leftover: removed" in fixed.stdout
    assert "updown/3: unverifiable:" in fixed.stdout
    assert registry.aliases("updown") == {"champion": 2, "latest": 2}
    assert not (folder / ".tmp-4-deadbeef").exists() and not (folder / ".aliases.json.0123.tmp").exists()
    assert (folder / "3").is_dir() and (folder / "notes.txt").exists()
    assert "2 left" in fixed.stderr


def test_doctor_rewrites_a_table_that_is_not_json(registry, tmp_path):
    publish(registry, tmp_path, "a")
    publish(registry, tmp_path, "b", verdict="rejected")
    (registry.root / "updown" / ALIASES).write_text('{"champion": 1, "latest": ')
    done = cli(registry, "doctor", "--fix")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.startswith("updown/aliases.json: fixed invalid: rewritten with champion=1, latest=1")
    assert registry.aliases("updown") == {"champion": 1, "latest": 1}
    healthy = cli(registry, "doctor")
    assert (healthy.returncode, healthy.stdout) == (0, "")
    assert "1 model(s), 2 version(s) checked" in healthy.stderr and "no problems" in healthy.stderr


# -- durability ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name synced files")
def test_every_bundle_file_is_synced_before_the_rename(registry, tmp_path, monkeypatch):
    synced: list[str] = []
    renamed: list[tuple[str, list[str]]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def rename(src, dst, *args, **kwargs):
        renamed.append((str(src), list(synced)))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    publish(registry, tmp_path, "a")
    (tmp, synced_before), *_ = [
        (src, before) for src, before in renamed if Path(src).name.startswith(".tmp-")
    ]
    for name in ("model.keras", "stats.parquet", "report.md"):
        assert f"{tmp}/{name}" in synced_before, (name, synced_before)
    assert any(path.startswith(f"{tmp}/.{MANIFEST}.") for path in synced_before)  # then renamed
    assert tmp in synced_before  # the folder itself, so its entries survive too
