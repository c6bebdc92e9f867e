"""A real Prefect server, a real process worker and the real CLI, driving the repository's prefect.yaml.

Everything runs on 127.0.0.1 with its own PREFECT_HOME; every process started here is stopped in the
fixtures' teardown, also when a test fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "updown-process"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The sample market, the demo universe and few epochs: 4 walk-forward folds, promoted in about a
# minute on 2 idle cores.
MANUAL_CONFIG = {
    "source": {"kind": "sample", "start": "2016-01-04", "end": "2024-12-31"},
    "training": {"epochs": 4},
}
RUN_TIMEOUT_S = 300

pytestmark = pytest.mark.e2e


@dataclass
class Server:
    url: str
    env: dict[str, str]
    tmp: Path

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the prefect CLI against this server from the repository root; fail loudly on error."""
        done = subprocess.run(
            [PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp: Path, url: str, **extra: str) -> dict[str, str]:
    """The environment of a server, a worker and the CLI pointed at it: state under `tmp`, nothing
    sent anywhere but `url`, and `PIPELINE_HOME` left to each deployment's own default."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "KERAS_HOME": str(tmp / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "DASK_TEMPORARY_DIRECTORY": str(tmp / "dask"),
        # the pull step's `{{ $PWD }}` must name the checkout, whatever directory pytest started in
        "PWD": str(ROOT),
        **extra,
    }
    env.pop("PIPELINE_HOME", None)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a process in its own session so that it and its children can be stopped together."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group this test started, then SIGKILL what is left after the grace period."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # flow-run children the worker left behind
    except ProcessLookupError:
        pass
    process.wait()


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"prefect server exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout_s} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(tmp, url)
    log = tmp / "server.log"
    process = start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        wait_healthy(url, process, log)
        yield Server(url, env, tmp)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def deployed(server: Server) -> Server:
    server.cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    server.cli("deploy", "--all", "--no-prompt")
    done = subprocess.run(  # operations.yaml, as `make deploy` does: deployed runs need the publish lock
        [sys.executable, "-m", "flows.operations", "apply"],
        cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return server


@pytest.fixture(scope="module")
def worker(deployed: Server) -> Iterator[Path]:
    log = deployed.tmp / "worker.log"
    # SIGINT may be ignored by inheritance here; the worker then ignores its first SIGTERM too.
    process = start(
        ["env", "--default-signal=INT", PREFECT, "worker", "start", "--pool", POOL], deployed.env, log
    )
    try:
        yield log
    finally:
        stop(process)


def test_nightly_is_scheduled_after_the_close_in_new_york(deployed: Server):
    with deployed.client() as client:
        nightly = client.read_deployment_by_name("retrain/nightly")
        (schedule,) = nightly.schedules
        assert schedule.schedule.cron == "30 18 * * 1-5"
        assert schedule.schedule.timezone == "America/New_York"
        assert nightly.parameters["skip_if_no_session"] is True
        assert nightly.global_concurrency_limit.limit == 1
        assert nightly.concurrency_options.collision_strategy == "CANCEL_NEW"
        manual = client.read_deployment_by_name("retrain/manual")
        assert manual.global_concurrency_limit.limit == 1
        assert manual.concurrency_options.collision_strategy == "ENQUEUE"

        # The scheduler service creates the next runs shortly after the deployment appears.
        deadline, upcoming = time.monotonic() + 90, []
        while not upcoming and time.monotonic() < deadline:
            upcoming = client.get_scheduled_flow_runs_for_deployments([nightly.id])
            time.sleep(1)
        assert upcoming, "the server scheduled no nightly run"
        new_york = ZoneInfo("America/New_York")
        for run in upcoming:
            local = run.expected_start_time.astimezone(new_york)
            assert (local.hour, local.minute, local.weekday() < 5) == (18, 30, True), local
            assert run.expected_start_time > dt.datetime.now(dt.UTC)

        # Nothing here may reach yfinance: pausing drops the scheduled runs before a worker starts.
        client.pause_deployment(nightly.id)
        assert client.read_deployment(nightly.id).paused


def wait_for_final_state(server: Server, run_id: str, worker_log: Path) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with server.client() as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return state.name
            time.sleep(2)
    raise AssertionError(f"flow run {run_id} not final after {RUN_TIMEOUT_S} s:\n{worker_log.read_text()}")


def test_manual_run_through_the_worker_publishes_a_bundle(deployed: Server, worker: Path):
    home = deployed.tmp / "pipeline"
    started = time.monotonic()
    submitted = deployed.cli(
        "deployment",
        "run",
        "retrain/manual",
        "--param",
        f"config={json.dumps(MANUAL_CONFIG)}",
        "--param",
        f"home={home}",
    )
    (run_id, *_) = UUID.findall(submitted.stdout)
    final = wait_for_final_state(deployed, run_id, worker)
    assert final == "Completed", f"flow run {run_id} ended {final}; worker log:\n{worker.read_text()}"
    print(f"manual run: {time.monotonic() - started:.1f} s from `deployment run` to Completed")

    bundle = home / "registry" / "updown" / "1"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["gate"]["verdict"] == "promoted"
    assert manifest["flow_run_id"] == run_id
    assert manifest["source"]["kind"] == "sample"
    assert set(manifest["files"]) <= {p.name for p in bundle.iterdir()}
    aliases = json.loads((bundle.parent / "aliases.json").read_text())
    assert aliases == {"champion": 1, "latest": 1}

    # The night's predictions (the run began without a champion: by the version it promoted).
    predictions = pd.read_parquet(home / "predictions" / "updown" / "2024-12-31.parquet")
    assert len(predictions) == 8 and set(predictions["version"]) == {1}
    assert (predictions["date"] == pd.Timestamp("2024-12-31")).all()

    # Two weeks later: the store grows (ingest/backfill), then scorecard/backfill scores the champion
    # on the sessions whose label matured since its training end.
    later = {**MANUAL_CONFIG["source"], "end": "2025-01-15"}
    for deployment, params in (
        ("ingest/backfill", [f"source={json.dumps(later)}", f"home={home}"]),
        ("scorecard/backfill", [f"home={home}"]),
    ):
        submitted = deployed.cli(
            "deployment", "run", deployment, *(a for p in params for a in ("--param", p))
        )
        (run_id, *_) = UUID.findall(submitted.stdout)
        final = wait_for_final_state(deployed, run_id, worker)
        assert final == "Completed", f"{deployment} {run_id} ended {final}:\n{worker.read_text()}"
    card = pd.read_parquet(home / "registry" / "updown" / "scorecard.parquet")
    # The night served on 2024-12-31 matured on 2025-01-08 (nightly); the sessions after the champion's
    # training end that no night served are backfilled up to the last label by 2025-01-15 (the exchange
    # closed on 2025-01-09). 8 tickers each.
    origins = card.groupby(card["date"].dt.date.astype(str))["origin"].agg(set).to_dict()
    assert origins == {
        "2024-12-31": {"nightly"},
        **{day: {"backfill"} for day in ("2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07")},
    }
    assert (
        len(card) == 8 * 5 and set(card["version"]) == {1} and not card.duplicated(["ticker", "date"]).any()
    )
    assert (home / "registry" / "updown" / "scorecard.png").exists()
