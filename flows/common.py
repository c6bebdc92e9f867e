"""Small helpers shared by the flows: where the data lives, the task runner, quiet TensorFlow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prefect is imported only where a flow runs, not by the command-line parsers
    from prefect import Flow

from models import runs
from models.config import Settings, SourceConfig
from models.errors import UsageError


def resolve_home(home: str | None) -> str:
    """The data home: the explicit argument, else PIPELINE_HOME, else ./.pipeline; absolute, writable.

    Created when missing. Raises UsageError, before anything is fetched, when it is a file or cannot
    be written (a read-only mount, a folder of someone else, /proc).
    """
    path = Path(home or Settings().home).expanduser().resolve()
    named = f"the data home {path}" + ("" if home else " (PIPELINE_HOME, default ./.pipeline)")
    fix = "pass --home (or the `home` parameter, or PIPELINE_HOME) a folder you can write"
    if path.exists() and not path.is_dir():
        raise UsageError(f"{named} is a file, not a folder: {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        parent = next((p for p in path.parents if p.exists()), path)
        where = "" if parent == path else f" (inside {parent}, which refuses new folders)"
        raise UsageError(f"{named} is not a writable folder: {err.strerror}{where}: {fix}") from err
    return str(path)


def check_source(source: SourceConfig) -> None:
    """Refuse, before any fetch, a source that cannot deliver anything (a folder that is not there)."""
    if source.kind == "folder" and source.folder is not None:
        folder = Path(source.folder).expanduser()
        if not folder.is_dir():
            state = "is not a folder" if folder.exists() else "does not exist"
            raise UsageError(
                f"the price folder {folder} (--folder, source.folder) {state}: give the folder that "
                "holds <TICKER>.csv or <TICKER>.parquet"
            )


def resolve_registry(home: str) -> str:
    """Where bundles are published: PIPELINE_REGISTRY_URL (a path or fsspec URL), else <home>/registry."""
    return Settings().registry_url or str(Path(home) / "registry")


# Deployed runs heartbeat this often (prefect.yaml); the zombie-run automation (operations.yaml) marks a
# run Crashed after 90 s without one, so a run started from a shell against a server must keep up.
HEARTBEAT_SECONDS = 30


def heartbeat_like_deployments() -> None:
    """Make this process's flow runs heartbeat every 30 s (call before Prefect is imported).

    Prefect's default is 180 s, which the automation would take for a dead run.
    """
    os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)


def clean_run_scratch(flow: Flow, flow_run, state) -> None:
    """Flow hook: remove a completed run's scratch, keep a failed one's, prune those past retention."""
    home = resolve_home(flow_run.parameters.get("home"))
    folder = runs.run_dir(home, flow_run.id)
    if state.is_completed():
        runs.remove(folder)
    runs.prune(home, Settings().runs_retention_days, keep=folder)


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
