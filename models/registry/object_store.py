"""The registry on an object store (any fsspec URL: s3://, gs://, memory://)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from models.registry.bundle import (
    ALIASES,
    MANIFEST,
    SCHEMA_VERSION,
    TMP_PREFIX,
    TRASH_PREFIX,
    BundleRef,
    RegistryError,
    sha256_file,
)
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
