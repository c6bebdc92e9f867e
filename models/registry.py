"""The model registry: versioned bundles, aliases, and the consumer API.

Layout under the registry root:

    <model>/<version>/      model.keras, stats.parquet, report.md, curves.png, confusion.png,
                            manifest.json (sha256 and size of every other file; written last)
    <model>/aliases.json    {"latest": 8, "champion": 7}

A bundle is written into `<model>/.tmp-*` and renamed into place, so a listed version is always
complete; `aliases.json` is replaced atomically under a lock, so two publishers never lose an update
and every alias points at a complete bundle. Consumers resolve `name@champion`, `name@latest` or
`name/7`, the checksums are verified, and the model is loaded with `safe_mode=True`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
REF_PATTERN = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9_\-]*)(?:@(?P<alias>[a-z][a-z0-9_\-]*)|/(?P<version>\d+))?$"
)


class RegistryError(RuntimeError):
    """A reference that does not resolve, or a bundle that fails verification."""


@dataclass(frozen=True)
class BundleRef:
    model: str
    version: int
    path: Path

    def __str__(self) -> str:
        return f"{self.model}/{self.version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """A registry rooted at a local folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def model_dir(self, model: str) -> Path:
        return self.root / model

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        folder = self.model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def models(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, model: str) -> list[int]:
        """Complete versions, ascending (a half-written `.tmp-*` folder is never listed)."""
        folder = self.model_dir(model)
        if not folder.exists():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MANIFEST).exists())

    def aliases(self, model: str) -> dict[str, int]:
        path = self.model_dir(model) / ALIASES
        return json.loads(path.read_text()) if path.exists() else {}

    def resolve(self, ref: str) -> BundleRef:
        """`name@alias`, `name/7`, or `name` (= `name@champion`) to a bundle."""
        match = REF_PATTERN.fullmatch(ref.strip())
        if not match:
            raise RegistryError(f"{ref!r} is not a model reference: use name@champion, name@latest or name/7")
        model = match["model"]
        if match["version"]:
            version = int(match["version"])
        else:
            alias = match["alias"] or "champion"
            table = self.aliases(model)
            if alias not in table:
                known = ", ".join(sorted(table)) or "none"
                raise RegistryError(f"model {model!r} has no alias {alias!r} (aliases: {known})")
            version = int(table[alias])
        path = self.model_dir(model) / str(version)
        if not (path / MANIFEST).exists():
            raise RegistryError(f"{model}/{version} does not exist (versions: {self.versions(model)})")
        return BundleRef(model, version, path)

    def manifest(self, ref: str | BundleRef) -> dict:
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        return json.loads((bundle.path / MANIFEST).read_text())

    def verify(self, ref: str | BundleRef) -> dict:
        """Check the schema version and every file's sha256 and size; return the manifest."""
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        manifest = self.manifest(bundle)
        schema = manifest.get("schema_version")
        if schema not in SUPPORTED_SCHEMA_VERSIONS:
            raise RegistryError(
                f"{bundle}: manifest schema_version {schema!r} is not supported "
                f"(this code reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        for name, expected in manifest["files"].items():
            path = bundle.path / name
            if not path.exists():
                raise RegistryError(f"{bundle}: {name} is missing")
            actual = sha256_file(path)
            if actual != expected["sha256"] or path.stat().st_size != expected["bytes"]:
                raise RegistryError(
                    f"{bundle}: {name} does not match its manifest checksum "
                    f"(expected sha256 {expected['sha256'][:12]}…, found {actual[:12]}…); refusing to load"
                )
        return manifest

    def publish(self, model: str, files: Mapping[str, Path], manifest: dict, promote: bool) -> BundleRef:
        """Copy `files` into a new version, manifest last, rename into place, move aliases.

        With `promote` both `latest` and `champion` move to the new version; otherwise (a rejected
        model) the version is kept for inspection and no alias points at it.
        """
        with self._locked(model):
            folder = self.model_dir(model)
            for stale in folder.glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
            version = max(taken, default=0) + 1
            tmp = folder / f".tmp-{version}-{uuid.uuid4().hex}"
            tmp.mkdir()
            listing = {}
            for name, source in files.items():
                target = tmp / name
                shutil.copyfile(source, target)
                listing[name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
            final = {
                **manifest,
                "schema_version": SCHEMA_VERSION,
                "model": model,
                "version": version,
                "files": listing,
            }
            _write_json_atomic(tmp / MANIFEST, final)
            _fsync_dir(tmp)
            os.rename(tmp, folder / str(version))
            _fsync_dir(folder)
            if promote:
                self._set_aliases(model, {"latest": version, "champion": version})
            return BundleRef(model, version, folder / str(version))

    def set_alias(self, model: str, alias: str, version: int) -> None:
        """Point `alias` at an existing version (e.g. roll the champion back)."""
        self.resolve(f"{model}/{version}")
        with self._locked(model):
            self._set_aliases(model, {alias: version})

    def _set_aliases(self, model: str, changes: dict[str, int]) -> None:
        table = {**self.aliases(model), **changes}
        _write_json_atomic(self.model_dir(model) / ALIASES, table)
