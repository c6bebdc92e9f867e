"""Walk-forward folds fanned out on a 2-worker local Dask cluster give the metrics of the in-process run."""

from __future__ import annotations

import pytest

from flows.common import with_task_runner
from flows.retrain import walk_forward
from models.dataset.build import build_walk_forward
from tests.helpers import sample_prices, tiny_config

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_dask_folds_equal_in_process_folds(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_TEMPORARY_DIRECTORY", str(tmp_path / "dask"))
    config = tiny_config(evaluation={"folds": 2}, training={"epochs": 1})
    folds = build_walk_forward(sample_prices(config), config, tmp_path / "dataset", {"kind": "sample"})
    here = with_task_runner(walk_forward, "thread")(folds, config, str(tmp_path / "here"))
    spread = with_task_runner(walk_forward, "dask", None, n_workers=2, threads_per_worker=1)(
        folds, config, str(tmp_path / "spread"), parallel=True
    )
    assert [r["fold"] for r in spread] == [r["fold"] for r in here] == [0, 1]
    for a, b in zip(here, spread, strict=True):
        assert a["metrics"] == b["metrics"], a["fold"]
        assert a["baselines"] == b["baselines"], a["fold"]
        assert a["training"]["history"] == b["training"]["history"]
        assert a["predictions"] != b["predictions"]  # each wrote its own files
