"""The registry on an object store (any fsspec URL: s3://, gs://, memory://)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from models.registry.bundle import (
    ALIASES,
    DELIVERIES,
    LOCK,
    MANIFEST,
    MODEL_FILES,
    MODEL_PATTERN,
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
    parse_json_object,
    sha256_file,
)
from models.registry.cache import BundleCache, default_cache_dir
from models.registry.local import Registry


class ObjectStoreRegistry(Registry, remote=True):
    """The registry on any fsspec store (`s3://bucket/prefix`, `gs://...`, `memory://...`).

    Object stores have no rename and no flock, so:

    - a version is uploaded under `<model>/.tmp-*`, copied to `<model>/<version>/`, and its
      manifest.json is written last: a version is listed only once its manifest exists;
    - publishers take a lock object `<model>/.lock`, created with an exclusive (if-none-match)
      write, so one writer at a time allocates versions and rewrites `aliases.json` (one PUT:
      readers see the old table or the new one). A lock whose holder died (same host, pid gone)
      or that is older than `lock_ttl` seconds is broken;
    - consumers check the bundle's manifest and its listing remotely (nothing unlisted, nothing
      missing, sizes as listed) before anything is downloaded, then load a verified local copy
      from the shared, bounded download cache (models.registry.cache), reused across loads and
      processes.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        storage_options: Mapping[str, object] | None = None,
        lock_ttl: float = 900.0,
        lock_timeout: float = 300.0,
        cache_dir: Path | None = None,
        cache_max_entries: int | None = None,
        cache_max_bytes: int | None = None,
    ):
        import fsspec

        from models.config import Settings

        self.url = str(root).rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.base = self.base.rstrip("/")
        self.root = self.url  # what messages and the CLI print
        self.lock_ttl, self.lock_timeout = lock_ttl, lock_timeout
        settings = Settings()  # PIPELINE_REGISTRY_CACHE_* read now, where a registry is opened
        self.cache = BundleCache(
            Path(cache_dir or settings.registry_cache_dir or default_cache_dir()),
            max_entries=cache_max_entries or settings.registry_cache_max_entries,
            max_bytes=cache_max_bytes or settings.registry_cache_max_bytes,
        )

    # -- paths and reads ---------------------------------------------------------------------

    def _key(self, *parts: str | int) -> str:
        return "/".join([self.base, *(str(p) for p in parts)])

    def _mkey(self, model: str, *parts: str | int) -> str:
        """The key of `parts` under a model, the model name checked first."""
        return self._key(check_model_name(model), *parts)

    def model_dir(self, model: str) -> str:  # type: ignore[override]
        return self._mkey(model)

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
        return sorted(n for n, is_dir in self._children(self.base) if is_dir and MODEL_PATTERN.fullmatch(n))

    def versions(self, model: str) -> list[int]:
        """Complete versions, ascending: those whose manifest.json exists."""
        names = [
            n for n, is_dir in self._children(self._mkey(model)) if is_dir and VERSION_PATTERN.fullmatch(n)
        ]
        return sorted(int(n) for n in names if self._exists(self._mkey(model, n, MANIFEST)))

    def _aliases_location(self, model: str) -> str:
        return f"{self.url}/{check_model_name(model)}/{ALIASES}"

    def _aliases_raw(self, model: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._mkey(model, ALIASES))
        except FileNotFoundError:
            return None

    def read_model_file(self, model: str, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._mkey(model, check_model_file(name)))
        except FileNotFoundError:
            return None

    def write_model_file(self, model: str, name: str, data: bytes) -> str:
        """Replace a model file with one PUT: readers see the old object or the new one (as aliases.json)."""
        self.fs.pipe_file(self._mkey(model, check_model_file(name)), data)
        return self.model_file_url(model, name)

    def model_file_url(self, model: str, name: str) -> str:
        return f"{self.url}/{check_model_name(model)}/{check_model_file(name)}"

    def _bundle_ref(self, model: str, version: int) -> BundleRef | None:
        if not self._exists(self._mkey(model, check_version(version), MANIFEST)):
            return None
        return BundleRef(model, version, None, f"{self.url}/{model}/{version}")

    def read_file(self, ref: str | BundleRef, name: str) -> bytes:
        bundle = self._ref(ref)
        if name != MANIFEST:
            check_file_name(name, str(bundle))
        return self.fs.cat_file(self._mkey(bundle.model, bundle.version, name))

    def _listing(self, bundle: BundleRef) -> dict[str, int]:
        """Every object under the version's prefix: name relative to it -> size."""
        prefix = self._mkey(bundle.model, bundle.version)
        self.fs.invalidate_cache(prefix)
        found = self.fs.find(prefix, detail=True)
        return {path[len(prefix) + 1 :]: int(info.get("size") or 0) for path, info in found.items()}

    def check(self, ref: str | BundleRef, *, fresh: bool = True) -> Verification:
        """Verify remotely what can be (manifest, listing, sizes), then a local copy file by file.

        Nothing is downloaded or written before the manifest and the listing passed: a manifest
        naming `../x` or `/abs` is refused before any byte lands on this machine.

        Args:
            fresh: True (verify, promote, `show --verify`, doctor) downloads the stored objects
                and checks them, refreshing the cached copy; False (`load_predictor`,
                `local_path`) may reuse a cached copy after re-checking it, which is what gets
                loaded (see models.registry.cache).
        """
        bundle = self._ref(ref)
        label = str(bundle)
        raw = self.read_file(bundle, MANIFEST)
        manifest = check_manifest(parse_json_object(raw, f"{bundle}: {MANIFEST}"), bundle)
        listed = manifest["files"]
        present = self._listing(bundle)
        for name in sorted(present):
            if name != MANIFEST and name not in listed:
                raise RegistryError(
                    f"{label}: {name} is in the bundle but not in its manifest; refusing to load "
                    "(a bundle holds exactly the files its manifest lists)"
                )
        for name, entry in listed.items():
            if name not in present:
                raise RegistryError(f"{label}: {name} is missing")
            if present[name] != entry["bytes"]:
                raise RegistryError(
                    f"{label}: {name} does not match its manifest checksum (expected "
                    f"{entry['bytes']} bytes, found {present[name]} bytes); refusing to load"
                )

        def download(name: str, target: Path) -> None:
            # "xb": a new file only, never through a link that might already sit there.
            with self.fs.open(self._mkey(bundle.model, bundle.version, name), "rb") as src:
                with open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)

        copy = self.cache.fetch(raw, manifest, label, download, reuse=not fresh)
        note = "downloaded into" if copy.downloaded else "reused (re-checked) from"
        return Verification(
            bundle,
            manifest,
            copy.folder,
            copy.files,
            source=bundle.url,
            downloaded=True,
            notes=[f"copy {note} the download cache {self.cache.root}"],
        )

    def local_path(self, ref: str | BundleRef) -> Path:
        """A verified local copy of the bundle, from the shared download cache (see `check`)."""
        return self.check(ref, fresh=False).folder

    def load_predictor(self, ref: str):
        """As Registry.load_predictor, loading a verified copy from the download cache."""
        from models.registry.predictor import Predictor

        verified = self.check(self.resolve(ref), fresh=False)
        return Predictor.from_folder(verified.bundle, verified.manifest, verified.folder)

    # -- the lock object ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        key = self._mkey(model, LOCK)
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
        check_model_name(model)
        self._check_files(model, files)
        with self._locked(model):
            self._clean_leftovers_remote(model)
            taken = [
                int(n)
                for n, is_dir in self._children(self._mkey(model))
                if is_dir and VERSION_PATTERN.fullmatch(n)
            ]
            version = max(taken, default=0) + 1
            tmp = self._mkey(model, f"{TMP_PREFIX}{version}-{uuid.uuid4().hex}")
            listing = {}
            for name, source in files.items():
                self.fs.put_file(str(source), f"{tmp}/{name}")
                size = self.fs.info(f"{tmp}/{name}")["size"]
                if size != Path(source).stat().st_size:
                    raise RegistryError(f"upload of {name} to {tmp} is incomplete ({size} bytes)")
                listing[name] = {"sha256": sha256_file(Path(source)), "bytes": size}
            for name in files:
                self.fs.copy(f"{tmp}/{name}", self._mkey(model, version, name))
            final = {**manifest, "schema_version": SCHEMA_VERSION, "model": model, "version": version}
            final["files"] = listing
            self.fs.pipe_file(
                self._mkey(model, version, MANIFEST),
                json.dumps(final, indent=2, sort_keys=True, default=str).encode(),
            )
            self.fs.rm(tmp, recursive=True)
            return self._bundle_ref(model, version)

    def reject(self, model: str, version: int, reason: str, report: str | None = None) -> dict:
        check_model_name(model)
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
                self.fs.pipe_file(self._mkey(model, version, "report.md"), data)
                manifest["files"]["report.md"] = {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                }
            payload = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
            self.fs.pipe_file(self._mkey(model, version, MANIFEST), payload)
            return manifest

    def _replace_file(self, model: str, version: int, name: str, data: bytes) -> None:
        self.fs.pipe_file(self._key(model, version, name), data)

    def prune(self, model: str, keep: int = 10) -> list[int]:
        """As Registry.prune; the manifest goes first, so a half-deleted version is never listed."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.require_model(model)
        with self._locked(model):
            versions = self.versions(model)
            kept = set(versions[-keep:]) | set(self.aliases(model).values())
            removed = [v for v in versions if v not in kept]
            for v in removed:
                self.fs.rm_file(self._mkey(model, v, MANIFEST))
                self.fs.rm(self._mkey(model, v), recursive=True)
            return removed

    def _write_aliases(self, model: str, table: dict[str, int]) -> None:
        # One PUT replaces the object whole; the lock keeps two writers from losing an update.
        self.fs.pipe_file(self._mkey(model, ALIASES), json.dumps(table, indent=2, sort_keys=True).encode())

    def _scan(self, model: str) -> tuple[list[str], list[str]]:
        """(leftovers of killed writers, unexpected entries) under the model's prefix."""
        leftovers, strays = [], []
        for name, is_dir in sorted(self._children(self._mkey(model))):
            if self._is_leftover_remote(model, name, is_dir):
                leftovers.append(name)
            elif not (is_dir and (VERSION_PATTERN.fullmatch(name) or name == DELIVERIES)) and (
                is_dir or name not in (ALIASES, LOCK, *MODEL_FILES)
            ):
                strays.append(name)
        return leftovers, strays

    def _is_leftover_remote(self, model: str, name: str, is_dir: bool) -> bool:
        if not is_dir:
            return False
        incomplete = VERSION_PATTERN.fullmatch(name) and not self._exists(self._mkey(model, name, MANIFEST))
        return bool(name.startswith((TMP_PREFIX, TRASH_PREFIX)) or incomplete)

    def _remove_leftovers(self, model: str) -> None:
        self._clean_leftovers_remote(model)

    def _clean_leftovers_remote(self, model: str) -> None:
        """Temporary prefixes, and version prefixes without a manifest (caller holds the lock)."""
        for name, is_dir in self._children(self._mkey(model)):
            if self._is_leftover_remote(model, name, is_dir):
                self.fs.rm(self._mkey(model, name), recursive=True)


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
