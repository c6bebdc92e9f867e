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
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*$")
REF_PATTERN = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9_\-]*)(?:@(?P<alias>[a-z][a-z0-9_\-]*)|/(?P<version>\d+))?$"
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


def is_local_url(url: str | Path) -> bool:
    """A plain path or a file:// URL (the registry then uses rename + flock, not an object store)."""
    text = str(url)
    return "://" not in text or text.startswith("file://")


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
    """A registry rooted at a local folder, or (see ObjectStoreRegistry) at any fsspec URL.

    `Registry("s3://bucket/prefix")` returns an ObjectStoreRegistry; a path or `file://` URL gives
    this local implementation.
    """

    def __new__(cls, root: str | Path = ".", **options: object) -> Registry:
        if cls is Registry and not is_local_url(root):
            return super().__new__(ObjectStoreRegistry)
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
            _write_json_atomic(tmp / MANIFEST, final)
            _fsync_dir(tmp)
            os.rename(tmp, folder / str(version))
            _fsync_dir(folder)
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
            _write_json_atomic(bundle.path / MANIFEST, manifest)
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
        """A verified `models.predictor.Predictor` for `ref` (imports Keras on first use)."""
        from models.predictor import load_predictor

        return load_predictor(self, ref)

    def _set_aliases(self, model: str, changes: dict[str, int]) -> dict[str, int]:
        table = {**self.aliases(model), **changes}
        _write_json_atomic(self.model_dir(model) / ALIASES, table)
        _fsync_dir(self.model_dir(model))
        return table

    @staticmethod
    def _clean_leftovers(folder: Path) -> None:
        """Remove what a killed publisher, pruner or alias writer left behind (caller holds the lock)."""
        for path in folder.iterdir():
            if path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(f".{ALIASES}.") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


class ObjectStoreRegistry(Registry):
    """The registry on any fsspec store (`s3://bucket/prefix`, `gs://...`, `memory://...`).

    Object stores have no rename and no flock, so:

    - a version is uploaded under `<model>/.tmp-*`, copied to `<model>/<version>/`, and its
      manifest.json is written last: a version is listed only once its manifest exists;
    - publishers take a lock object `<model>/.lock`, created with an exclusive (if-none-match)
      write, so one writer at a time allocates versions and rewrites `aliases.json` (one PUT:
      readers see the old table or the new one). A lock whose holder died (same host, pid gone)
      or that is older than `lock_ttl` seconds is broken;
    - consumers download a bundle into a local folder and verify the checksums of that copy,
      which is the copy they load.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        storage_options: Mapping[str, object] | None = None,
        lock_ttl: float = 900.0,
        lock_timeout: float = 300.0,
        cache_dir: Path | None = None,
    ):
        import fsspec

        self.url = str(root).rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.base = self.base.rstrip("/")
        self.root = self.url  # what messages and the CLI print
        self.lock_ttl, self.lock_timeout = lock_ttl, lock_timeout
        self._cache_dir = cache_dir
        self._copies: dict[tuple[str, str], Path] = {}

    # -- paths and reads ---------------------------------------------------------------------

    def _key(self, *parts: str | int) -> str:
        return "/".join([self.base, *(str(p) for p in parts)])

    def model_dir(self, model: str) -> str:  # type: ignore[override]
        return self._key(model)

    def _children(self, key: str) -> list[tuple[str, bool]]:
        """(name, is_directory) below `key`, read fresh (never from a listing cache)."""
        self.fs.invalidate_cache(key)
        try:
            entries = self.fs.ls(key, detail=True)
        except FileNotFoundError:
            return []
        return [(e["name"].rstrip("/").rsplit("/", 1)[-1], e["type"] == "directory") for e in entries]

    def _exists(self, key: str) -> bool:
        self.fs.invalidate_cache(key)
        return self.fs.exists(key)

    def models(self) -> list[str]:
        return sorted(n for n, is_dir in self._children(self.base) if is_dir and not n.startswith("."))

    def versions(self, model: str) -> list[int]:
        """Complete versions, ascending: those whose manifest.json exists."""
        names = [n for n, is_dir in self._children(self._key(model)) if is_dir and n.isdigit()]
        return sorted(int(n) for n in names if self._exists(self._key(model, n, MANIFEST)))

    def aliases(self, model: str) -> dict[str, int]:
        try:
            return json.loads(self.fs.cat_file(self._key(model, ALIASES)))
        except FileNotFoundError:
            return {}

    def _bundle_ref(self, model: str, version: int) -> BundleRef | None:
        if not self._exists(self._key(model, version, MANIFEST)):
            return None
        return BundleRef(model, version, None, f"{self.url}/{model}/{version}")

    def read_file(self, ref: str | BundleRef, name: str) -> bytes:
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        return self.fs.cat_file(self._key(bundle.model, bundle.version, name))

    def local_path(self, ref: str | BundleRef) -> Path:
        """Download the bundle (once per manifest) into a local folder and return it.

        The copy is keyed by the manifest's own digest, so a version rewritten by `reject` is
        fetched again; `verify` checks the files of this copy.
        """
        bundle = self.resolve(ref) if isinstance(ref, str) else ref
        raw = self.read_file(bundle, MANIFEST)
        key = (str(bundle), hashlib.sha256(raw).hexdigest())
        if key in self._copies:
            return self._copies[key]
        if self._cache_dir is None:
            import tempfile

            self._cache_dir = Path(tempfile.mkdtemp(prefix="registry-"))
        folder = Path(self._cache_dir) / bundle.model / f"{bundle.version}-{key[1][:16]}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in json.loads(raw)["files"]:
            try:
                self.fs.get_file(self._key(bundle.model, bundle.version, name), str(folder / name))
            except FileNotFoundError:
                continue  # verify reports the missing file by name
        (folder / MANIFEST).write_bytes(raw)
        self._copies[key] = folder
        return folder

    # -- the lock object ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        key = self._key(model, ".lock")
        owner = {
            "owner": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": time.time(),
        }
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.02
        while True:
            owner["acquired_at"] = time.time()
            try:
                with self.fs.open(key, "xb") as fh:  # exclusive create: if-none-match on S3
                    fh.write(json.dumps(owner).encode())
                break
            except FileExistsError:
                self._break_if_stale(key)
            if time.monotonic() > deadline:
                raise RegistryError(f"could not lock {model!r} within {self.lock_timeout:.0f} s ({key})")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            try:
                if json.loads(self.fs.cat_file(key)).get("owner") == owner["owner"]:
                    self.fs.rm_file(key)
            except FileNotFoundError:
                pass

    def _break_if_stale(self, key: str) -> None:
        """Remove a lock whose holder is gone: a dead pid on this host, or older than lock_ttl."""
        try:
            raw = self.fs.cat_file(key)
        except FileNotFoundError:
            return
        try:
            held = json.loads(raw)
        except ValueError:
            held = {}  # an empty or torn lock object: only its age can tell
        age = time.time() - float(held.get("acquired_at", 0))
        dead = held.get("host") == socket.gethostname() and not _pid_alive(int(held.get("pid", 0)))
        if dead or age > self.lock_ttl:
            # Re-read just before deleting, so a lock taken over in between is left alone.
            with contextlib.suppress(FileNotFoundError):
                if self.fs.cat_file(key) == raw:
                    self.fs.rm_file(key)

    # -- writes ------------------------------------------------------------------------------

    def add_version(self, model: str, files: Mapping[str, Path], manifest: dict) -> BundleRef:
        """Upload under a temporary prefix, copy into `<model>/<version>/`, manifest last."""
        if MANIFEST in files:
            raise ValueError(f"{MANIFEST} is written by the registry, not passed as a file")
        with self._locked(model):
            self._clean_leftovers_remote(model)
            taken = [int(n) for n, is_dir in self._children(self._key(model)) if is_dir and n.isdigit()]
            version = max(taken, default=0) + 1
            tmp = self._key(model, f"{TMP_PREFIX}{version}-{uuid.uuid4().hex}")
            listing = {}
            for name, source in files.items():
                self.fs.put_file(str(source), f"{tmp}/{name}")
                size = self.fs.info(f"{tmp}/{name}")["size"]
                if size != Path(source).stat().st_size:
                    raise RegistryError(f"upload of {name} to {tmp} is incomplete ({size} bytes)")
                listing[name] = {"sha256": sha256_file(Path(source)), "bytes": size}
            for name in files:
                self.fs.copy(f"{tmp}/{name}", self._key(model, version, name))
            final = {**manifest, "schema_version": SCHEMA_VERSION, "model": model, "version": version}
            final["files"] = listing
            self.fs.pipe_file(
                self._key(model, version, MANIFEST),
                json.dumps(final, indent=2, sort_keys=True, default=str).encode(),
            )
            self.fs.rm(tmp, recursive=True)
            return self._bundle_ref(model, version)

    def reject(self, model: str, version: int, reason: str, report: str | None = None) -> dict:
        with self._locked(model):
            if version in self.aliases(model).values():
                raise RegistryError(f"{model}/{version} is aliased; move the alias before rejecting it")
            manifest = self.manifest(f"{model}/{version}")
            gate = dict(manifest.get("gate") or {})
            gate["verdict"] = "rejected"
            gate["reasons"] = [*gate.get("reasons", []), reason]
            manifest["gate"] = gate
            if report is not None:
                data = report.encode()
                self.fs.pipe_file(self._key(model, version, "report.md"), data)
                manifest["files"]["report.md"] = {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                }
            payload = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
            self.fs.pipe_file(self._key(model, version, MANIFEST), payload)
            return manifest

    def prune(self, model: str, keep: int = 10) -> list[int]:
        """As Registry.prune; the manifest goes first, so a half-deleted version is never listed."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        with self._locked(model):
            versions = self.versions(model)
            kept = set(versions[-keep:]) | {int(v) for v in self.aliases(model).values()}
            removed = [v for v in versions if v not in kept]
            for v in removed:
                self.fs.rm_file(self._key(model, v, MANIFEST))
                self.fs.rm(self._key(model, v), recursive=True)
            return removed

    def _set_aliases(self, model: str, changes: dict[str, int]) -> dict[str, int]:
        table = {**self.aliases(model), **changes}
        # One PUT replaces the object whole; the lock keeps two writers from losing an update.
        self.fs.pipe_file(self._key(model, ALIASES), json.dumps(table, indent=2, sort_keys=True).encode())
        return table

    def _clean_leftovers_remote(self, model: str) -> None:
        """Temporary prefixes, and version prefixes without a manifest (caller holds the lock)."""
        for name, is_dir in self._children(self._key(model)):
            if not is_dir:
                continue
            incomplete = name.isdigit() and not self._exists(self._key(model, name, MANIFEST))
            if name.startswith((TMP_PREFIX, TRASH_PREFIX)) or incomplete:
                self.fs.rm(self._key(model, name), recursive=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
