"""Fixtures of the monitoring tests: a copy of the session's champion and a home whose store holds
the sample market up to a given night."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from models.config import PipelineConfig
from models.registry import Registry
from tests.helpers import store_sample


class Night:
    """A data home and registry with the session's champion, whose store grows night by night."""

    def __init__(self, root: Path, champion_registry: Path, **source):
        self.home = root / ".pipeline"  # as in the README
        self.home.mkdir(parents=True)
        shutil.copytree(champion_registry, self.home / "registry")
        self.registry = Registry(self.home / "registry")
        trained = PipelineConfig.model_validate(self.registry.manifest("updown@champion")["config"])
        self.config = trained.model_copy(
            update={"source": trained.source.model_copy(update={"end": None, **source})}
        )

    @property
    def tickers(self) -> list[str]:
        return list(self.config.source.tickers)

    def store(self, night: dt.date) -> None:
        """The market grows to `night`: what the night's ingest does."""
        store_sample(self.home, self.config.source, night)


@pytest.fixture
def night(tmp_path, champion_registry):
    return Night(tmp_path, champion_registry)
