"""The model registry: versioned bundles, aliases, retention, and the consumer API.

Layout under the registry root (a folder, or any fsspec URL such as s3://bucket/prefix):

    <model>/<version>/      model.keras, stats.parquet, report.md, curves.png, confusion.png,
                            manifest.json (sha256 and size of every other file; written last)
    <model>/aliases.json    {"latest": 8, "champion": 7}
    <model>/scorecard.parquet, scorecard.png   the champion's live scorecard (models.monitoring)

Publishing is two steps so a caller can check a version before it goes live: `add_version` writes
the bundle into `<model>/.tmp-*` and renames it into place (a listed version is always complete),
then `promote` moves `champion` and `latest` by replacing `aliases.json` atomically. Writers hold a
lock (flock locally, a lock object in an object store), so two publishers get distinct versions and
never lose an alias update; leftovers of a killed writer are removed by the next one. `prune` keeps
the newest K versions plus every aliased one. Consumers resolve `name@champion`, `name@latest` or
`name/7`; loading verifies the bundle (see `check`) and uses `safe_mode=True`.

Model names, versions, alias names and file names are checked (models.registry.bundle) before any
path is built from them, and a manifest is checked before any of its file names is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from models.registry.bundle import (
    ALIAS_PATTERN,
    ALIASES,
    DELIVERIES,
    LOCK,
    MANIFEST,
    MODEL_FILES,
    MODEL_PATTERN,
    REF_PATTERN,
    REQUIRED_FILES,
    SCHEMA_VERSION,
    TMP_PREFIX,
    TRASH_PREFIX,
    VERSION_PATTERN,
    BundleRef,
    RegistryError,
    Verification,
    check_file_name,
    check_manifest,
    check_model_file,
    check_model_name,
    check_version,
    fsync_dir,
    fsync_file,
    is_local_url,
    parse_aliases,
    parse_json_object,
    salvage_aliases,
    sha256_file,
    verify_folder,
    write_json_atomic,
)

# The serving smoke test's state in a manifest (`smoke_test.state`), and how each reads in a message.
SMOKE_STATES = {
    "passed": "passed",
    "failed": "failed",
    "pending": "never finished (the publisher stopped during it)",
    "not_run": "was not run (publishing asked for no smoke test)",
    "unknown": "has no record (a bundle from before smoke tests were recorded)",
}
ANY_CHAMPION = object()  # `promote` without a compare-and-set


def smoke_state(manifest: dict) -> str:
    """`passed`, `failed`, `pending`, `not_run`, or `unknown` for a manifest without the record."""
    state = (manifest.get("smoke_test") or {}).get("state", "unknown")
    return state if state in SMOKE_STATES else "unknown"


class ChampionMoved(RegistryError):
    """The champion is no longer the version a candidate was compared with."""

    def __init__(self, model: str, expected: int | None, current: int | None):
        self.model, self.expected, self.current = model, expected, current
        super().__init__(
            f"{model}: the champion moved from {_version_name(expected)} to {_version_name(current)} "
            "since the candidate was compared"
        )


def _version_name(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


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
        return self.root / check_model_name(model)

    def repair_command(self, model: str) -> str:
        """The shell command that repairs `model`'s aliases (quoted in error messages)."""
        base = f"python -m models --registry {shlex.quote(str(self.url))}"
        return f"`{base} doctor {model} --fix` (or `{base} alias set {model} champion <version>`)"

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        folder = self.model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self, model: str) -> Iterator[None]:
        """Hold the model's publish lock (a read-modify-write of a model file holds it throughout)."""
        with self._locked(check_model_name(model)):
            yield

    def read_model_file(self, model: str, name: str) -> bytes | None:
        """The bytes of a model file (MODEL_FILES: the scorecard), or None when there is none."""
        try:
            return (self.model_dir(model) / check_model_file(name)).read_bytes()
        except FileNotFoundError:
            return None

    def write_model_file(self, model: str, name: str, data: bytes) -> str:
        """Replace a model file atomically (a synced temporary file, then a rename); returns its URL.

        Readers see the old file or the new one. Call it under `locked(model)` when the new content
        was derived from the old (an append), so two writers never lose each other's rows.
        """
        folder = self.model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / check_model_file(name)
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(folder)
        return target.resolve().as_uri()

    def model_file_url(self, model: str, name: str) -> str:
        """Where a model file lives (a file:// URL here, the object's URL in an object store)."""
        return (self.model_dir(model) / check_model_file(name)).resolve().as_uri()

    def models(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_PATTERN.fullmatch(p.name))

    def versions(self, model: str) -> list[int]:
        """Complete versions, ascending (a half-written `.tmp-*` folder is never listed)."""
        folder = self.model_dir(model)
        if not folder.exists():
            return []
        return sorted(
            int(p.name)
            for p in folder.iterdir()
            if VERSION_PATTERN.fullmatch(p.name) and (p / MANIFEST).exists()
        )

    def require_model(self, model: str) -> str:
        """`model`, checked to be a valid name of a model in this registry (else RegistryError)."""
        check_model_name(model)
        if model not in self.models():
            known = ", ".join(self.models()) or "none"
            raise RegistryError(f"model {model!r} is not in {self.url} (models: {known})")
        return model

    def _aliases_location(self, model: str) -> str:
        return str(self.model_dir(model) / ALIASES)

    def _aliases_raw(self, model: str) -> bytes | None:
        path = self.model_dir(model) / ALIASES
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def aliases(self, model: str) -> dict[str, int]:
        """The alias table: alias name -> version.

        Raises:
            RegistryError: aliases.json is not a JSON object of alias names to integer versions;
                the message names the file and the command that repairs it.
        """
        raw = self._aliases_raw(model)
        if raw is None:
            return {}
        return parse_aliases(raw, self._aliases_location(model), self.repair_command(model))

    def resolve(self, ref: str) -> BundleRef:
        """`name@alias`, `name/7`, or `name` (= `name@champion`) to a complete bundle.

        Raises:
            RegistryError: naming the aliases or versions that do exist.
        """
        match = REF_PATTERN.fullmatch(ref.strip()) if isinstance(ref, str) else None
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
            version = table[alias]
        bundle = self._bundle_ref(model, version)
        if bundle is None:
            raise RegistryError(f"{model}/{version} does not exist (versions: {self.versions(model)})")
        return bundle

    def _bundle_ref(self, model: str, version: int) -> BundleRef | None:
        path = self.model_dir(model) / str(check_version(version))
        if not (path / MANIFEST).exists():
            return None
        return BundleRef(model, version, path, path.resolve().as_uri())

    def _ref(self, ref: str | BundleRef) -> BundleRef:
        return self.resolve(ref) if isinstance(ref, str) else ref

    def read_file(self, ref: str | BundleRef, name: str) -> bytes:
        """The raw bytes of one file of a bundle (not verified: see `verify`)."""
        bundle = self._ref(ref)
        if name != MANIFEST:
            check_file_name(name, str(bundle))
        return (bundle.path / name).read_bytes()

    def local_path(self, ref: str | BundleRef) -> Path:
        """A folder on this machine holding the bundle's files (the bundle itself, locally)."""
        return self._ref(ref).path

    def manifest(self, ref: str | BundleRef) -> dict:
        """The bundle's manifest.json, parsed (not verified: see `verify`)."""
        bundle = self._ref(ref)
        return parse_json_object(self.read_file(bundle, MANIFEST), f"{bundle}: {MANIFEST}")

    def check(self, ref: str | BundleRef, *, fresh: bool = True) -> Verification:
        """Verify a bundle and say what was checked.

        The manifest is checked first (schema version, its own model and version equal to its
        folder, plain file names, the required files listed), then the folder: it holds exactly
        the listed files and manifest.json, regular files only (no symlinks), each with the listed
        size and sha256. In an object store the listing is checked remotely before anything is
        downloaded, and the files are checked in a local copy (`fresh`: downloaded now, not reused
        from the download cache; a local bundle is always checked in place).

        Raises:
            RegistryError: naming the bundle and the first problem.
        """
        bundle = self._ref(ref)
        if bundle.path.is_symlink():  # checked before its manifest is read through the link
            raise RegistryError(f"{bundle}: its folder is a symbolic link; bundles are regular folders")
        manifest = check_manifest(self.manifest(bundle), bundle)
        files = verify_folder(bundle.path, manifest, str(bundle))
        return Verification(bundle, manifest, bundle.path, files, source=str(bundle.path))

    def verify(self, ref: str | BundleRef) -> dict:
        """`check(ref)`, returning the verified manifest.

        Raises:
            RegistryError: an unknown schema_version (listing the supported ones), a manifest that
                names another folder or an unsafe file, or a missing, unlisted, linked or altered
                file (naming it).
        """
        return self.check(ref).manifest

    def publish(self, model: str, files: Mapping[str, Path], manifest: dict, promote: bool) -> BundleRef:
        """Add a new version and, when `promote` is true, move `latest` and `champion` to it.

        A caller that wants to check the bundle before it goes live (the serving smoke test) calls
        `add_version` and `promote` separately instead.
        """
        bundle = self.add_version(model, files, manifest)
        if promote:
            self.promote(model, bundle.version)
        return bundle

    @staticmethod
    def _check_files(model: str, files: Mapping[str, Path]) -> None:
        if MANIFEST in files:
            raise ValueError(f"{MANIFEST} is written by the registry, not passed as a file")
        for name in files:
            check_file_name(name, f"publishing {model}")
        missing = [name for name in REQUIRED_FILES if name not in files]
        if missing:
            raise RegistryError(f"publishing {model}: a bundle needs {', '.join(missing)}")

    def add_version(self, model: str, files: Mapping[str, Path], manifest: dict) -> BundleRef:
        """Copy `files` into a new version folder, manifest last, and rename it into place.

        No alias moves: the version is listed and resolvable as `model/N`, but no consumer of
        `model@champion` sees it until `promote`. Leftovers of a publisher that died (temporary
        folders, half-removed versions, alias temp files) are removed first. Every file and the
        folders are synced before the rename, so a power loss never leaves a listed version
        whose files are empty or short.

        Args:
            model: Registry name of the model.
            files: Bundle file name -> source path (everything except manifest.json); plain names,
                model.keras and stats.parquet among them.
            manifest: The manifest fields; schema_version, model, version and files are set here.

        Returns:
            The new version.
        """
        check_model_name(model)
        self._check_files(model, files)
        with self._locked(model):
            folder = self.model_dir(model)
            self._clean_leftovers(folder)
            taken = [int(p.name) for p in folder.iterdir() if VERSION_PATTERN.fullmatch(p.name)]
            version = max(taken, default=0) + 1
            tmp = folder / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex}"
            tmp.mkdir()
            listing = {}
            for name, source in files.items():
                target = tmp / name
                shutil.copyfile(source, target)
                fsync_file(target)
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

    def promote(
        self, model: str, version: int, *, expected_champion: int | None | object = ANY_CHAMPION
    ) -> dict[str, int]:
        """Make `version` the champion, and `latest` the newest promoted version that verifies.

        The bundle is verified first; a version whose gate verdict is not `promoted`, or whose serving
        smoke test failed or never finished, is refused. `latest` stays on a newer version only if
        that one still verifies and was promoted, so an alias left dangling (its version deleted or
        damaged) is repaired here. With `expected_champion` (a version, or None for "no champion
        yet") the move is a compare-and-set under the registry lock: when the champion is another
        version by then, ChampionMoved is raised and nothing changes, so the caller can compare its
        candidate with the new champion first.

        Returns:
            The alias table after the change.
        """
        manifest = self.verify(f"{check_model_name(model)}/{check_version(version)}")
        verdict = manifest.get("gate", {}).get("verdict", "promoted")
        if verdict != "promoted":
            raise RegistryError(f"{model}/{version} was {verdict}; refusing to promote it")
        smoke = smoke_state(manifest)
        if smoke in ("pending", "failed"):
            raise RegistryError(
                f"{model}/{version}: its serving smoke test {SMOKE_STATES[smoke]}; refusing to promote it"
            )
        with self._locked(model):
            current = self.aliases(model)
            champion = int(current["champion"]) if "champion" in current else None
            if expected_champion is not ANY_CHAMPION and champion != expected_champion:
                raise ChampionMoved(model, expected_champion, champion)
            # Two runs promoting out of order must not move `latest` backwards.
            latest = current.get("latest", version)
            if latest <= version or not self._promotable(model, latest):
                latest = version
            return self._set_aliases(model, {"champion": version, "latest": latest})

    def _promotable(self, model: str, version: int) -> bool:
        """Whether `version` exists, verifies and was promoted by its gate."""
        try:
            manifest = self.verify(f"{model}/{version}")
        except RegistryError:
            return False
        return manifest.get("gate", {}).get("verdict", "promoted") == "promoted"

    def amend(self, model: str, version: int, changes: dict, report: str | None = None) -> dict:
        """Update top-level manifest fields of an unaliased version (its smoke-test record, a gate
        verdict reached again against a new champion); `report` replaces report.md.

        Like `reject`, files are replaced one by one, each atomically, manifest last.

        Returns:
            The new manifest.
        """
        with self._locked(model):
            if version in self.aliases(model).values():
                raise RegistryError(f"{model}/{version} is aliased; its manifest is no longer amended")
            manifest = self.manifest(f"{model}/{version}")
            manifest.update(changes)
            if report is not None:
                data = report.encode()
                self._replace_file(model, version, "report.md", data)
                manifest["files"]["report.md"] = {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                }
            self._replace_file(
                model, version, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
            )
            return manifest

    def _replace_file(self, model: str, version: int, name: str, data: bytes) -> None:
        folder = self.model_dir(model) / str(version)
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)

    def reject(self, model: str, version: int, reason: str, report: str | None = None) -> dict:
        """Mark an unaliased version rejected after the fact (e.g. its serving smoke test failed).

        The gate verdict becomes `rejected` and `reason` is appended to the gate reasons; `report`
        replaces report.md. The files and manifest are replaced one by one (atomically each, from
        temporary files in the model folder, never inside the bundle), so a crash in between
        leaves a checksum mismatch on a version no alias points at, which `verify` refuses to load.

        Returns:
            The new manifest.
        """
        check_model_name(model)
        with self._locked(model):
            if version in self.aliases(model).values():
                raise RegistryError(f"{model}/{version} is aliased; move the alias before rejecting it")
            bundle = self.resolve(f"{model}/{version}")
            folder = self.model_dir(model)
            manifest = self.manifest(bundle)
            gate = dict(manifest.get("gate") or {})
            gate["verdict"] = "rejected"
            gate["reasons"] = [*gate.get("reasons", []), reason]
            manifest["gate"] = gate
            if report is not None:
                target = bundle.path / "report.md"
                tmp = folder / f".report.md.{uuid.uuid4().hex}.tmp"
                tmp.write_text(report)
                fsync_file(tmp)
                os.replace(tmp, target)
                manifest["files"]["report.md"] = {
                    "sha256": sha256_file(target),
                    "bytes": target.stat().st_size,
                }
            write_json_atomic(bundle.path / MANIFEST, manifest, tmp_dir=folder)
            fsync_dir(bundle.path)
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
        self.require_model(model)
        with self._locked(model):
            folder = self.model_dir(model)
            versions = self.versions(model)
            kept = set(versions[-keep:]) | set(self.aliases(model).values())
            removed = [v for v in versions if v not in kept]
            for v in removed:
                trash = folder / f"{TRASH_PREFIX}{v}-{uuid.uuid4().hex}"
                os.rename(folder / str(v), trash)
                shutil.rmtree(trash, ignore_errors=True)
            return removed

    def set_alias(self, model: str, alias: str, version: int, *, force: bool = False) -> dict[str, int]:
        """Point `alias` at an existing, verified version (e.g. roll the champion back).

        A rejected version, or one that never passed the serving smoke test, is refused unless
        `force` is set. A damaged aliases.json is repaired: its valid entries are kept, the others
        dropped, and `alias` set.
        """
        check_model_name(model)
        if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
            raise RegistryError(
                f"{alias!r} is not a valid alias name (lowercase letters, digits, '_', '-', starting "
                "with a letter)"
            )
        manifest = self.verify(f"{model}/{check_version(version)}")
        verdict = manifest.get("gate", {}).get("verdict", "promoted")
        if verdict != "promoted" and not force:
            raise RegistryError(f"{model}/{version} was {verdict}; pass force to alias it anyway")
        smoke = smoke_state(manifest)
        if smoke != "passed" and not force:
            raise RegistryError(
                f"{model}/{version} never passed the serving smoke test (it {SMOKE_STATES[smoke]}); "
                "pass force to alias it anyway"
            )
        with self._locked(model):
            return self._set_aliases(model, {alias: version}, salvage=True)

    def load_predictor(self, ref: str):
        """A verified `models.registry.predictor.Predictor` for `ref` (imports Keras on first use).

        Resolves `ref`, verifies the bundle (see `check`), and loads its model (safe_mode) and
        stats from the verified folder (in an object store, the verified local copy).

        Raises:
            RegistryError: the reference does not resolve, or the bundle fails verification.
        """
        from models.registry.predictor import Predictor

        verified = self.check(self.resolve(ref))
        return Predictor.from_folder(verified.bundle, verified.manifest, verified.folder)

    def _set_aliases(self, model: str, changes: dict[str, int], salvage: bool = False) -> dict[str, int]:
        """Write the alias table with `changes` applied (caller holds the lock).

        With `salvage`, a damaged table is replaced by its valid entries plus `changes`;
        otherwise a damaged table raises (nothing is dropped silently).
        """
        if salvage:
            try:
                current = self.aliases(model)
            except RegistryError:
                current, _ = salvage_aliases(self._aliases_raw(model))
        else:
            current = self.aliases(model)
        table = {**current, **changes}
        self._write_aliases(model, table)
        return table

    def _write_aliases(self, model: str, table: dict[str, int]) -> None:
        write_json_atomic(self.model_dir(model) / ALIASES, table)
        fsync_dir(self.model_dir(model))

    # -- what `doctor` inspects and repairs --------------------------------------------------

    def _scan(self, model: str) -> tuple[list[str], list[str]]:
        """(leftovers of killed writers, unexpected entries) in the model's folder."""
        leftovers, strays = [], []
        folder = self.model_dir(model)
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            name = path.name
            if _is_leftover(name):
                leftovers.append(name)
            elif VERSION_PATTERN.fullmatch(name) and path.is_dir() and not path.is_symlink():
                if not (path / MANIFEST).exists():
                    strays.append(name)
            elif name == DELIVERIES and path.is_dir() and not path.is_symlink():
                continue
            elif name in MODEL_FILES:
                if path.is_symlink() or not path.is_file():  # a scorecard is a regular file
                    strays.append(name)
            elif name not in (ALIASES, LOCK):
                strays.append(name)
        return leftovers, strays

    def _remove_leftovers(self, model: str) -> None:
        """Remove what killed writers left (caller holds the lock)."""
        self._clean_leftovers(self.model_dir(model))

    @staticmethod
    def _clean_leftovers(folder: Path) -> None:
        """Remove what a killed publisher, pruner or alias writer left behind (caller holds the lock)."""
        for path in folder.iterdir():
            if not _is_leftover(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _is_leftover(name: str) -> bool:
    """Temporary folders of publishers and pruners, and temporary files of atomic writes."""
    return name.startswith((TMP_PREFIX, TRASH_PREFIX)) or (name.startswith(".") and name.endswith(".tmp"))


def load_predictor(registry: Registry | str | Path, ref: str):
    """`Registry(registry).load_predictor(ref)`: a registry object, or its root (a folder or URL)."""
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    return reg.load_predictor(ref)
