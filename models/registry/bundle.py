"""What a published bundle is: its reference (`name/7`, `name@champion`), its files and checksums,
and the rules every registry applies before trusting one.

Shared by the local and the object-store registry, the download cache, the predictor and the CLI.

The manifest is data written by whoever can write to the registry, so nothing in it is used as a
path or trusted as a number before it passed `check_manifest`: file names are plain names (no
separator, no `..`, never absolute), checksums are 64 hex digits, sizes are integers, and the
manifest's own model and version must be the folder it sits in. `verify_folder` then checks that a
folder holds exactly the listed files (regular files, no symlinks, nothing unlisted) with their
sizes and sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
LOCK = ".lock"
# Beside the versions: what Prefect received of each (models/registry/deliveries.py).
DELIVERIES = "deliveries"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# Files a model's folder holds beside its versions, aliases.json and the lock: the live scorecard
# (models.monitoring.scorecard) and its plot. Written atomically under the model's lock.
MODEL_FILES = ("scorecard.parquet", "scorecard.png")
# Every bundle must list these; the predictor cannot work without them.
REQUIRED_FILES = ("model.keras", "stats.parquet")
MODEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,8}$")
# A plain file name: lowercase (no case-only collisions on macOS), dot-separated words that start
# with a letter or digit, so no '/', no '..', no leading dot, never absolute.
FILE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*(?:\.[a-z0-9][a-z0-9_\-]*)*$")
MAX_FILE_NAME = 100
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
REF_PATTERN = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9_\-]{0,63})(?:@(?P<alias>[a-z][a-z0-9_\-]{0,63})|/(?P<version>[1-9][0-9]{0,8}))?$"
)


class RegistryError(RuntimeError):
    """A reference that does not resolve, or a bundle that fails verification."""


@dataclass(frozen=True)
class BundleRef:
    """One version of a model: its folder on this machine (local registries) and its URL."""

    model: str
    version: int
    path: Path | None  # None in an object store: use Registry.local_path for a verified copy
    url: str = ""

    def __str__(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class Verification:
    """What `Registry.check` established about one bundle (what `show --verify` prints)."""

    bundle: BundleRef
    manifest: dict
    folder: Path  # the files that were checked and will be loaded: the bundle, or its downloaded copy
    files: dict[str, int]  # every file checked: name -> bytes
    source: str  # where the bundle lives (a folder or an object-store URL)
    downloaded: bool = False
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        total = sum(self.files.values())
        listing = ", ".join(f"{n} ({b:,} B)" for n, b in sorted(self.files.items()))
        out = [
            f"verified:   {self.bundle} at {self.source}",
            f"            manifest schema {self.manifest['schema_version']}, names "
            f"{self.manifest['model']}/{self.manifest['version']} = its folder",
            f"            {len(self.files)} files, {total:,} bytes, each sha256 and size as listed: {listing}",
            "            required files present (" + ", ".join(REQUIRED_FILES) + "); nothing unlisted; "
            "no symbolic links",
        ]
        if self.downloaded:
            out.append(f"            checked in the local copy that is loaded: {self.folder}")
        return out + [f"            {note}" for note in self.notes]


def is_local_url(url: str | Path) -> bool:
    """A plain path or a file:// URL (the registry then uses rename + flock, not an object store)."""
    text = str(url)
    return "://" not in text or text.startswith("file://")


def check_model_name(model: object) -> str:
    """Return `model` if it is a valid model name, else raise RegistryError (before any path is built)."""
    if not isinstance(model, str) or not MODEL_PATTERN.fullmatch(model):
        raise RegistryError(
            f"{model!r} is not a model name: use lowercase letters, digits, '_' and '-', starting with "
            "a letter or digit (at most 64 characters, no '/' or '..')"
        )
    return model


def check_version(version: object) -> int:
    """Return `version` if it is a positive integer (not a bool, not a string), else raise."""
    if type(version) is not int or version < 1:
        raise RegistryError(f"{version!r} is not a version number: versions are integers from 1")
    return version


def check_file_name(name: object, where: str = "bundle") -> str:
    """Return `name` if it is a plain bundle file name, else raise RegistryError naming it."""
    if (
        not isinstance(name, str)
        or len(name) > MAX_FILE_NAME
        or name == MANIFEST
        or not FILE_NAME_PATTERN.fullmatch(name)
    ):
        raise RegistryError(
            f"{where}: the manifest lists a file named {name!r}, which is not a plain file name "
            "(lowercase letters, digits, '_', '-' and single dots; no '/', no '..', no leading dot, "
            f"not {MANIFEST}); refusing the bundle"
        )
    return name


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, checked to stay directly inside `folder` (without following links)."""
    target = Path(os.path.abspath(folder / name))
    if target.parent != Path(os.path.abspath(folder)) or target.name != name:
        raise RegistryError(f"{name!r} would be written outside {folder}; refusing")
    return target


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"key {twice[0]!r} appears twice")
    return dict(pairs)


def parse_json_object(raw: bytes | str, where: str) -> dict:
    """A JSON object from `raw`; RegistryError naming `where` for invalid JSON or another type."""
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as err:
        raise RegistryError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{where} holds a JSON {json_type(value)}, not an object")
    return value


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type (null, boolean, number, string, array, object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def check_model_file(name: object) -> str:
    """Return `name` if it is one of MODEL_FILES, else raise RegistryError."""
    if name not in MODEL_FILES:
        raise RegistryError(f"{name!r} is not a model file; a model's folder holds {', '.join(MODEL_FILES)}")
    return str(name)


def check_manifest(manifest: dict, bundle: BundleRef) -> dict:
    """Check what verification relies on before anything is read, downloaded or written.

    The schema version is supported; the manifest names its own folder (model and version); `files`
    maps plain file names to `{"sha256": 64 hex digits, "bytes": int >= 0}` and lists every
    required file.

    Raises:
        RegistryError: naming the bundle and the first problem.
    """
    schema = manifest.get("schema_version")
    if type(schema) is not int or schema not in SUPPORTED_SCHEMA_VERSIONS:
        raise RegistryError(
            f"{bundle}: manifest schema_version {schema!r} is not supported "
            f"(this code reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    model, version = manifest.get("model"), manifest.get("version")
    if model != bundle.model or type(version) is not int or version != bundle.version:
        raise RegistryError(
            f"{bundle}: its manifest.json names model {model!r} version {version!r}, not the folder "
            f"{bundle} it sits in; refusing the bundle"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise RegistryError(f"{bundle}: manifest.json has no `files` table; refusing the bundle")
    for name in files:
        check_file_name(name, str(bundle))
    for name, entry in files.items():
        if not _entry_ok(entry):
            raise RegistryError(
                f"{bundle}: the manifest entry for {name} is not {{'sha256': 64 hex digits, 'bytes': "
                f"an integer}}: {entry!r}; refusing the bundle"
            )
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise RegistryError(
            f"{bundle}: its manifest does not list {', '.join(missing)}; every bundle lists "
            f"{' and '.join(REQUIRED_FILES)} with their checksums; refusing the bundle"
        )
    return manifest


def _entry_ok(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"sha256", "bytes"}
        and isinstance(entry["sha256"], str)
        and SHA256_PATTERN.fullmatch(entry["sha256"]) is not None
        and type(entry["bytes"]) is int
        and entry["bytes"] >= 0
    )


def verify_folder(folder: Path, manifest: dict, label: str) -> dict[str, int]:
    """Check that `folder` holds exactly the manifest's files plus manifest.json, each a regular
    file (no symlink) of the listed size and sha256. Returns name -> bytes of the files checked.

    Raises:
        RegistryError: naming the file: missing, unlisted, a link or not a regular file, altered.
    """
    if folder.is_symlink():
        raise RegistryError(f"{label}: its folder is a symbolic link; bundles are regular folders")
    listed = manifest["files"]
    try:
        present = {entry.name: entry for entry in os.scandir(folder)}
    except FileNotFoundError:
        raise RegistryError(f"{label}: the bundle's folder {folder} does not exist") from None
    for name, entry in sorted(present.items()):
        if entry.is_symlink():
            raise RegistryError(f"{label}: {name} is a symbolic link; bundles hold regular files only")
        if name != MANIFEST and name not in listed:
            raise RegistryError(
                f"{label}: {name} is in the bundle but not in its manifest; refusing to load "
                "(a bundle holds exactly the files its manifest lists)"
            )
        if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
            raise RegistryError(f"{label}: {name} is not a regular file; refusing to load")
    checked = {}
    for name, expected in listed.items():
        if name not in present:
            raise RegistryError(f"{label}: {name} is missing")
        path = inside(folder, name)
        size = path.stat().st_size
        actual = sha256_file(path)
        if actual != expected["sha256"] or size != expected["bytes"]:
            raise RegistryError(
                f"{label}: {name} does not match its manifest checksum "
                f"(expected sha256 {expected['sha256'][:12]}…, {expected['bytes']} bytes; found "
                f"{actual[:12]}…, {size} bytes); refusing to load"
            )
        checked[name] = size
    return checked


def parse_aliases(raw: bytes, where: str, repair: str) -> dict[str, int]:
    """The alias table in `raw` (aliases.json): alias names -> integer versions, nothing else.

    Raises:
        RegistryError: naming `where`, the first problem and the `repair` command.
    """
    try:
        value = parse_json_object(raw, where)
        return _ALIAS_TABLE.validate_python(value)
    except RegistryError as err:
        raise RegistryError(f"{err}; repair it with {repair}") from None
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"] if p != "[key]")
        got = first.get("input")
        raise RegistryError(
            f"{where}: alias {loc!r} is {json.dumps(got)}, not a version number "
            f'(aliases.json maps alias names to integer versions, e.g. {{"champion": 7}}); '
            f"repair it with {repair}"
            if "[key]" not in first["loc"]
            else f"{where}: {loc!r} is not an alias name (lowercase letters, digits, '_', '-'); "
            f"repair it with {repair}"
        ) from None


def salvage_aliases(raw: bytes | None) -> tuple[dict[str, int], list[str]]:
    """The valid entries of a damaged alias table and the names of those dropped (for repairs)."""
    if raw is None:
        return {}, []
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}, ["<the whole file: not JSON>"]
    if not isinstance(value, dict):
        return {}, [f"<the whole file: a JSON {json_type(value)}>"]
    kept, dropped = {}, []
    for alias, version in value.items():
        try:
            kept.update(_ALIAS_TABLE.validate_python({alias: version}))
        except ValidationError:
            dropped.append(str(alias))
    return kept, dropped


_ALIAS_TABLE = TypeAdapter(
    dict[
        Annotated[str, StringConstraints(pattern=ALIAS_PATTERN.pattern)],
        Annotated[int, Field(strict=True, ge=1)],
    ]
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (before the rename that publishes it survives a power loss)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, payload: object, tmp_dir: Path | None = None) -> None:
    """Replace `path` by a synced temporary file (in `tmp_dir`, default beside it) and a rename."""
    tmp = (tmp_dir or path.parent) / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
