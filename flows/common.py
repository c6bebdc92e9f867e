"""Small helpers shared by the flows: where the data lives, the task runner, quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prefect is imported only where a flow runs, not by the command-line parsers
    from prefect import Flow

from models.config import Settings


def resolve_home(home: str | None) -> str:
    """The data home: the explicit argument, else PIPELINE_HOME, else ./.pipeline; absolute."""
    return str(Path(home or Settings().home).expanduser().resolve())


def resolve_registry(home: str) -> str:
    """Where bundles are published: PIPELINE_REGISTRY_URL (a path or fsspec URL), else <home>/registry."""
    return Settings().registry_url or str(Path(home) / "registry")


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ start-up chatter unless the user asked for it (CLI entry points only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def with_task_runner(
    flow: Flow, kind: str = "thread", dask_address: str | None = None, **cluster: int
) -> Flow:
    """`flow` on Prefect's default thread pool, or on Dask: a local cluster, or the scheduler at an address.

    Prefect fixes a flow's task runner when it is decorated, so the choice is made per call here,
    which lets a deployment parameter pick it. `cluster` goes to the local cluster (n_workers, ...).
    """
    if kind == "thread":
        return flow
    if kind != "dask":
        raise ValueError(f"unknown task runner {kind!r}: use 'thread' or 'dask'")
    from prefect_dask import DaskTaskRunner  # dask is imported only by runs that ask for it

    if dask_address:
        return flow.with_options(task_runner=DaskTaskRunner(address=dask_address))
    # Processes, not threads: the per-ticker work is pandas code that holds the GIL.
    cluster_kwargs: dict[str, object] = {"processes": True, **cluster}
    api_url = current_api_url()
    if api_url:
        # Without it, each worker process of a run on Prefect's temporary API starts its own.
        cluster_kwargs["env"] = {"PREFECT_API_URL": api_url}
    return flow.with_options(task_runner=DaskTaskRunner(cluster_kwargs=cluster_kwargs))


def current_api_url() -> str | None:
    """The Prefect API this process reports to: the configured one, or the running flow's temporary one."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    context = FlowRunContext.get()
    if context is not None and context.client is not None:
        return str(context.client.api_url)
    return PREFECT_API_URL.value()
