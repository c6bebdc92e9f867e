"""The download cache of object-store registries: verified bundle copies, shared and bounded.

A consumer of `s3://…` loads the files of a local copy. Copies live in one folder per machine
(default `$XDG_CACHE_HOME/updown-pipeline/registry`, else `~/.cache/updown-pipeline/registry`;
`PIPELINE_REGISTRY_CACHE_DIR` moves it), one sub-folder per bundle named by the sha256 of its
manifest.json. The manifest lists every file's sha256, so that name fixes the content: every
process and every registry instance reuses a copy, and a version whose manifest changed (a later
`reject`) gets a new one.

- Atomic: a copy is downloaded into `.tmp-*`, checked file by file, and renamed into place; a
  half-downloaded copy is never under a manifest digest, and a downloader that died leaves only a
  `.tmp-*` folder, removed by a later clean-up.
- Verified on reuse: every reuse re-checks the copy's manifest digest and each file's size and
  sha256; a copy that fails (altered, truncated) is discarded and downloaded again.
- Bounded: after each download the least recently used copies beyond `max_entries` or
  `max_bytes` are removed (`PIPELINE_REGISTRY_CACHE_MAX_ENTRIES`, default 8;
  `PIPELINE_REGISTRY_CACHE_MAX_BYTES`, default 2 GiB). The copy just used, and copies any process
  used in the last `grace_seconds` (another process may be loading one), are never removed, so one
  bundle larger than the byte bound is still served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from models.registry.bundle import (
    LOCK,
    MANIFEST,
    TMP_PREFIX,
    TRASH_PREFIX,
    RegistryError,
    inside,
    verify_folder,
)

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_ENTRIES = 8
GRACE_SECONDS = 300.0
STALE_DOWNLOAD_SECONDS = 3600.0
ENTRY_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/updown-pipeline/registry`, else `~/.cache/updown-pipeline/registry`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "updown-pipeline" / "registry"


@dataclass(frozen=True)
class CachedCopy:
    folder: Path
    files: dict[str, int]
    downloaded: bool  # False when an existing copy was reused (after re-checking it)


class BundleCache:
    """Verified local copies of bundles, keyed by their manifest's sha256, bounded by count and size."""

    def __init__(
        self,
        root: Path,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        grace_seconds: float = GRACE_SECONDS,
    ):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(
                f"cache bounds must be positive (max_entries {max_entries}, max_bytes {max_bytes})"
            )
        self.root = Path(root)
        self.max_entries, self.max_bytes, self.grace_seconds = max_entries, max_bytes, grace_seconds

    def fetch(
        self,
        raw_manifest: bytes,
        manifest: dict,
        label: str,
        download: Callable[[str, Path], None],
        reuse: bool = True,
    ) -> CachedCopy:
        """A verified copy of the bundle whose manifest is `raw_manifest` (parsed: `manifest`).

        Args:
            raw_manifest: The manifest's bytes as stored (their sha256 names the copy).
            manifest: The same manifest, parsed and checked by `check_manifest`.
            label: How errors name the bundle (`updown/7`).
            download: `download(name, target)` writes the bundle file `name` to `target` (a new
                file inside a fresh temporary folder).
            reuse: False downloads and checks the stored objects even when a copy is cached (a
                damaged cached copy is then replaced by the new one).

        Raises:
            RegistryError: a downloaded file does not match the manifest.
        """
        key = hashlib.sha256(raw_manifest).hexdigest()
        entry = self.root / key
        if entry.is_dir() and reuse:
            try:
                files = self._check(entry, key, manifest, label)
            except (RegistryError, OSError):
                self._discard(entry)  # altered or half-removed: fetch it again
            else:
                _touch(entry)
                return CachedCopy(entry, files, downloaded=False)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{key[:16]}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for name in manifest["files"]:
                download(name, inside(tmp, name))
            inside(tmp, MANIFEST).write_bytes(raw_manifest)
            files = verify_folder(tmp, manifest, label)
            try:
                os.rename(tmp, entry)
            except OSError:
                # A copy is already there (another process, or `reuse=False`): keep it if it is
                # intact, since a reader may be loading it; it holds the same bytes as ours.
                try:
                    files = self._check(entry, key, manifest, label)
                except (RegistryError, OSError):
                    self._discard(entry)
                    os.rename(tmp, entry)
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _touch(entry)
        self.clean(keep=entry)
        return CachedCopy(entry, files, downloaded=True)

    def _check(self, entry: Path, key: str, manifest: dict, label: str) -> dict[str, int]:
        with open(inside(entry, MANIFEST), "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != key:
                raise RegistryError(f"{label}: the cached copy's manifest differs from its name")
        return verify_folder(entry, manifest, label)

    def entries(self) -> list[tuple[Path, float, int]]:
        """(folder, last use, bytes) of every complete copy, most recently used first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if ENTRY_PATTERN.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
                    found.append((path, path.stat().st_mtime, size))
        return sorted(found, key=lambda e: e[1], reverse=True)

    def clean(self, keep: Path | None = None) -> list[Path]:
        """Remove copies beyond the bounds (least recently used first) and dead downloads.

        Returns:
            The copies removed.
        """
        removed = []
        now = time.time()
        with self._locked():
            kept, kept_bytes = 0, 0
            for path, used, size in self.entries():
                fits = kept < self.max_entries and kept_bytes + size <= self.max_bytes
                if fits or path == keep or now - used < self.grace_seconds:
                    kept, kept_bytes = kept + 1, kept_bytes + size
                    continue
                self._discard(path)
                removed.append(path)
            for path in self.root.iterdir():
                stale = path.name.startswith(TMP_PREFIX) and now - _mtime(path) > STALE_DOWNLOAD_SECONDS
                if stale or path.name.startswith(TRASH_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)
        return removed

    def _discard(self, entry: Path) -> None:
        """Rename out of the way first, so no reader ever finds a half-deleted copy under its name."""
        trash = self.root / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(entry, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _touch(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
