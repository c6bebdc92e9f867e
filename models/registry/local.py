"""The model registry: versioned bundles, aliases, retention, and the consumer API.

Layout under the registry root (a folder, or any fsspec URL such as s3://bucket/prefix):

    <model>/<version>/      model.keras, stats.parquet, report.md, curves.png, confusion.png,
                            manifest.json (sha256 and size of every other file; written last)
    <model>/aliases.json    {"latest": 8, "champion": 7}

Publishing is two steps so a caller can check a version before it goes live: `add_version` writes
the bundle into `<model>/.tmp-*` and renames it into place (a listed version is always complete),
then `promote` moves `champion` and `latest` by replacing `aliases.json` atomically. Writers hold a
lock (flock locally, a lock object in an object store), so two publishers get distinct versions and
never lose an alias update; leftovers of a killed writer are removed by the next one. `prune` keeps
the newest K versions plus every aliased one. Consumers resolve `name@champion`, `name@latest` or
`name/7`; loading verifies every checksum and uses `safe_mode=True`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from models.registry.bundle import (
    ALIAS_PATTERN,
    ALIASES,
    MANIFEST,
    REF_PATTERN,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    TMP_PREFIX,
    TRASH_PREFIX,
    BundleRef,
    RegistryError,
    fsync_dir,
    is_local_url,
    sha256_file,
    write_json_atomic,
)


class Registry:
    """A registry rooted at a local folder, or (see ObjectStoreRegistry) at any fsspec URL.

    `Registry("s3://bucket/prefix")` returns an ObjectStoreRegistry; a path or `file://` URL gives
    this local implementation.
    """

    # The implementation for fsspec URLs; ObjectStoreRegistry registers itself (see __init_subclass__).
    _remote: type[Registry] | None = None

    def __init_subclass__(cls, *, remote: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if remote:
            Registry._remote = cls

    def __new__(cls, root: str | Path = ".", **options: object) -> Registry:
        if cls is Registry and not is_local_url(root):
            if Registry._remote is None:  # models.registry imports it; only a partial import lacks it
                raise RegistryError(f"no object-store registry is available for {root}")
            return super().__new__(Registry._remote)
        return super().__new__(cls)

    def __init__(self, root: str | Path):
        text = str(root)
        self.root = Path(text.removeprefix("file://"))
        self.url = str(self.root)

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
        """`name@alias`, `name/7`, or `name` (= `name@champion`) to a complete bundle.

        Raises:
            RegistryError: naming the aliases or versions that do exist.
        """
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
        bundle = self._bundle_ref(model, version)
        if bundle is None:
            raise RegistryError(f"{model}/{version} does not exist (versions: {self.versions(model)})")
        return bundle

    def _bundle_ref(self, model: str, version: int) -> BundleRef | None:
        path = self.model_dir(model) / str(version)
        if not (path / MANIFEST).exists():
            return None
        return BundleRef(model, version, path, path.resolve().as_uri())

    def read_file(self, ref: str | BundleRef, name: str) -> bytes:
        """The raw bytes of one file of a bundle (not verified: see `verify`)."""
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        return (bundle.path / name).read_bytes()

    def local_path(self, ref: str | BundleRef) -> Path:
        """A folder on this machine holding the bundle's files (the bundle itself, locally)."""
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        return bundle.path

    def manifest(self, ref: str | BundleRef) -> dict:
        """The bundle's manifest.json, parsed (not verified: see `verify`)."""
        return json.loads(self.read_file(ref, MANIFEST))

    def verify(self, ref: str | BundleRef) -> dict:
        """Check the schema version and every file's sha256 and size; return the manifest.

        In an object store the files are checked after download, in the copy that will be loaded.

        Raises:
            RegistryError: an unknown schema_version (listing the supported ones), or a missing or
                altered file (naming it).
        """
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        manifest = self.manifest(bundle)
        schema = manifest.get("schema_version")
        if schema not in SUPPORTED_SCHEMA_VERSIONS:
            raise RegistryError(
                f"{bundle}: manifest schema_version {schema!r} is not supported "
                f"(this code reads {list(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        folder = self.local_path(bundle)
        for name, expected in manifest["files"].items():
            path = folder / name
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
        """Add a new version and, when `promote` is true, move `latest` and `champion` to it.

        A caller that wants to check the bundle before it goes live (the serving smoke test) calls
        `add_version` and `promote` separately instead.
        """
        bundle = self.add_version(model, files, manifest)
        if promote:
            self.promote(model, bundle.version)
        return bundle

    def add_version(self, model: str, files: Mapping[str, Path], manifest: dict) -> BundleRef:
        """Copy `files` into a new version folder, manifest last, and rename it into place.

        No alias moves: the version is listed and resolvable as `model/N`, but no consumer of
        `model@champion` sees it until `promote`. Leftovers of a publisher that died (temporary
        folders, half-removed versions, alias temp files) are removed first.

        Args:
            model: Registry name of the model.
            files: Bundle file name -> source path (everything except manifest.json).
            manifest: The manifest fields; schema_version, model, version and files are set here.

        Returns:
            The new version.
        """
        if MANIFEST in files:
            raise ValueError(f"{MANIFEST} is written by the registry, not passed as a file")
        with self._locked(model):
            folder = self.model_dir(model)
            self._clean_leftovers(folder)
            taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
            version = max(taken, default=0) + 1
            tmp = folder / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex}"
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
            # The manifest is the completeness marker: written (and synced) after every file.
            write_json_atomic(tmp / MANIFEST, final)
            fsync_dir(tmp)
            os.rename(tmp, folder / str(version))
            fsync_dir(folder)
            return self._bundle_ref(model, version)

    def promote(self, model: str, version: int) -> dict[str, int]:
        """Make `version` the champion (and `latest`, unless a newer version already is).

        The bundle is verified first; a version whose gate verdict is not `promoted` is refused.

        Returns:
            The alias table after the change.
        """
        manifest = self.verify(f"{model}/{version}")
        verdict = manifest.get("gate", {}).get("verdict", "promoted")
        if verdict != "promoted":
            raise RegistryError(f"{model}/{version} was {verdict}; refusing to promote it")
        with self._locked(model):
            current = self.aliases(model)
            # Two runs promoting out of order must not move `latest` backwards.
            latest = max(version, int(current.get("latest", 0)))
            return self._set_aliases(model, {"champion": version, "latest": latest})

    def reject(self, model: str, version: int, reason: str, report: str | None = None) -> dict:
        """Mark an unaliased version rejected after the fact (e.g. its serving smoke test failed).

        The gate verdict becomes `rejected` and `reason` is appended to the gate reasons; `report`
        replaces report.md. The files and manifest are replaced one by one (atomically each), so a
        crash in between leaves a checksum mismatch on a version no alias points at, which
        `verify` refuses to load.

        Returns:
            The new manifest.
        """
        with self._locked(model):
            if version in self.aliases(model).values():
                raise RegistryError(f"{model}/{version} is aliased; move the alias before rejecting it")
            bundle = self.resolve(f"{model}/{version}")
            manifest = json.loads((bundle.path / MANIFEST).read_text())
            gate = dict(manifest.get("gate") or {})
            gate["verdict"] = "rejected"
            gate["reasons"] = [*gate.get("reasons", []), reason]
            manifest["gate"] = gate
            if report is not None:
                target = bundle.path / "report.md"
                tmp = bundle.path / f".report.md.{uuid.uuid4().hex}.tmp"
                tmp.write_text(report)
                os.replace(tmp, target)
                manifest["files"]["report.md"] = {
                    "sha256": sha256_file(target),
                    "bytes": target.stat().st_size,
                }
            write_json_atomic(bundle.path / MANIFEST, manifest)
            return manifest

    def prune(self, model: str, keep: int = 10) -> list[int]:
        """Delete all but the newest `keep` versions, never one an alias points at.

        The newest version always stays, so version numbers are never reused. A version is first
        renamed out of the listing, then deleted, so a crash never leaves a half-deleted version
        listed.

        Returns:
            The versions removed, ascending.
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        with self._locked(model):
            folder = self.model_dir(model)
            versions = self.versions(model)
            kept = set(versions[-keep:]) | {int(v) for v in self.aliases(model).values()}
            removed = [v for v in versions if v not in kept]
            for v in removed:
                trash = folder / f"{TRASH_PREFIX}{v}-{uuid.uuid4().hex}"
                os.rename(folder / str(v), trash)
                shutil.rmtree(trash, ignore_errors=True)
            return removed

    def set_alias(self, model: str, alias: str, version: int, *, force: bool = False) -> dict[str, int]:
        """Point `alias` at an existing, verified version (e.g. roll the champion back).

        A rejected version is refused unless `force` is set.
        """
        if not ALIAS_PATTERN.fullmatch(alias):
            raise RegistryError(f"{alias!r} is not a valid alias name")
        manifest = self.verify(f"{model}/{version}")
        verdict = manifest.get("gate", {}).get("verdict", "promoted")
        if verdict != "promoted" and not force:
            raise RegistryError(f"{model}/{version} was {verdict}; pass force to alias it anyway")
        with self._locked(model):
            return self._set_aliases(model, {alias: version})

    def load_predictor(self, ref: str):
        """A verified `models.registry.predictor.Predictor` for `ref` (imports Keras on first use).

        Resolves `ref`, verifies the bundle's checksums, and loads its model (safe_mode) and stats
        from the verified folder (in an object store, the downloaded copy).

        Raises:
            RegistryError: the reference does not resolve, the schema_version is unknown, or a file
                does not match its sha256 in the manifest.
        """
        from models.registry.predictor import Predictor

        bundle = self.resolve(ref)
        manifest = self.verify(bundle)
        return Predictor.from_folder(bundle, manifest, self.local_path(bundle))

    def _set_aliases(self, model: str, changes: dict[str, int]) -> dict[str, int]:
        table = {**self.aliases(model), **changes}
        write_json_atomic(self.model_dir(model) / ALIASES, table)
        fsync_dir(self.model_dir(model))
        return table

    @staticmethod
    def _clean_leftovers(folder: Path) -> None:
        """Remove what a killed publisher, pruner or alias writer left behind (caller holds the lock)."""
        for path in folder.iterdir():
            if path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(f".{ALIASES}.") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def load_predictor(registry: Registry | str | Path, ref: str):
    """`Registry(registry).load_predictor(ref)`: a registry object, or its root (a folder or URL)."""
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    return reg.load_predictor(ref)
