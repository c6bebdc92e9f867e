"""Small helpers shared by the flows: where the data lives, and quiet-by-default TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

from models.config import Settings


def resolve_home(home: str | None) -> str:
    """The data home: the explicit argument, else PIPELINE_HOME, else ./.pipeline; absolute."""
    return str(Path(home or Settings().home).expanduser().resolve())


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter unless the user asked for it (CLI entry points only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
