"""What a published bundle is: its reference (`name/7`, `name@champion`), its files and checksums.

Shared by the local and the object-store registry, the predictor and the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
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


def write_json_atomic(path: Path, payload: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
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
