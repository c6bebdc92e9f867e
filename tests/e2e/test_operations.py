"""Operations that survive their own failures, on a real server and worker started by `make serve`:
an API outage during publishing, a worker that dies with its flow run, and `make stop` mid-run.

Each scenario kills or restarts real processes (all on 127.0.0.1, under this module's temporary
folder), so they run one after the other on one server. Timings are printed (pytest -s shows them).
The waits are Prefect's own: heartbeats every 30 s (its minimum) and the automation's 90 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_server_worker import MANUAL_CONFIG, PREFECT, ROOT, UUID, free_port, server_env

pytestmark = pytest.mark.e2e
# A deployment run whose flow blocks in ingest (reading a named pipe nobody writes): in flight for as
# long as a scenario needs, without using the CPU.
HANG_TICKER = "HANG"
LEASE_TTL_S = 300  # the lease a running flow renews (Prefect's engine: 300 s, renewed every 225 s)


@dataclass
class Served:
    url: str
    env: dict[str, str]
    tmp: Path
    serve_dir: Path
    port: int

    def make(self, *targets: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`make TARGET` against this server; the venv is taken as synced (no `uv sync` mid-test)."""
        done = subprocess.run(
            ["make", "--no-print-directory", "-o", ".venv/.synced", *targets,
             f"SERVE_DIR={self.serve_dir}", f"PREFECT_PORT={self.port}"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"make {' '.join(targets)}:\n{done.stdout}\n{done.stderr}"
        return done

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.url)

    def pid(self, name: str) -> int:
        return int((self.serve_dir / f"{name}.pid").read_text())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}:\n{p.read_text()[-6000:]}"
            for p in sorted(self.serve_dir.glob("*.log"))
            if p.exists()
        )

    def run(self, deployment: str, **params: object) -> str:
        args = ["deployment", "run", deployment]
        for key, value in params.items():
            args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        (run_id, *_) = UUID.findall(self.cli(*args).stdout)
        return run_id

    def state(self, run_id: str):
        with self.client() as client:
            return client.read_flow_run(run_id).state

    def wait_state(self, run_id: str, done, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                state = self.state(run_id)
            except Exception:  # the server restarting
                state = None
            if state is not None and done(state):
                return state
            time.sleep(1)
        raise AssertionError(f"run {run_id}: not {what} after {timeout_s:.0f} s ({state}):\n{self.logs()}")

    def slots(self, deployment: str) -> int:
        with self.client() as client:
            return client.read_deployment_by_name(deployment).global_concurrency_limit.active_slots

    def heartbeats(self, run_id: str) -> int:
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        with self.client() as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                    resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
                ),
                limit=10,
            )
        return len(page.events)

    def flow_processes(self) -> list[int]:
        """The worker's children: one `python -m prefect.engine` per flow run in flight."""
        found = subprocess.run(["pgrep", "-P", str(self.pid("worker"))], capture_output=True, text=True)
        return [int(p) for p in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("operations")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(
        tmp,
        url,
        # Quicker than the defaults, changing nothing under test: the worker polls every 2 s (not
        # 10) and a flow-run process gives up on an unreachable API after one retry (not five).
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_CLIENT_MAX_RETRIES="1",
    )
    served = Served(url, env, tmp, tmp / "serve", port)
    try:
        served.make("serve")
        served.make("deploy")
        with served.client() as client:  # nothing here may reach Yahoo at 18:30 New York time
            client.pause_deployment(client.read_deployment_by_name("retrain/nightly").id)
        hang = tmp / "hang"
        hang.mkdir()
        os.mkfifo(hang / f"{HANG_TICKER}.csv")
        yield served
    finally:
        subprocess.run(
            ["make", "-o", ".venv/.synced", "stop", f"SERVE_DIR={served.serve_dir}"],
            cwd=ROOT, env=env, capture_output=True, timeout=120,
        )  # fmt: skip


def hanging_config(served: Served) -> dict:
    return {"source": {"kind": "folder", "folder": str(served.tmp / "hang"), "tickers": [HANG_TICKER]}}


def in_flight(served: Served, run_id: str) -> None:
    """Wait until the run is Running and its first heartbeat reached the server."""
    served.wait_state(run_id, lambda s: s.is_running(), 180, "Running")
    deadline = time.monotonic() + 60
    while served.heartbeats(run_id) == 0:
        assert time.monotonic() < deadline, f"no heartbeat from {run_id}:\n{served.logs()}"
        time.sleep(1)


def test_an_api_outage_during_publishing_is_caught_up_by_the_next_run(served: Served):
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from models.registry import Registry, deliveries
    from tasks.publish import _latest_bundle_link

    home = served.tmp / "pipeline"
    registry = Registry(home / "registry")
    run_id = served.run("retrain/manual", config=MANUAL_CONFIG, home=str(home))
    manifest = home / "registry" / "updown" / "1" / "manifest.json"
    deadline = time.monotonic() + 600
    while not manifest.exists():  # the version is in the registry: its smoke test runs now
        assert time.monotonic() < deadline and not served.state(run_id).is_final(), served.logs()
        time.sleep(0.1)
    server = served.pid("server")
    os.killpg(server, signal.SIGTERM)  # the API goes down while the run publishes
    started = time.monotonic()
    while (record := deliveries.read(registry, "updown", 1)) is None or not any(
        e["error"] for e in record["items"].values()
    ):
        assert time.monotonic() - started < 300, served.logs()
        time.sleep(0.5)
    print(f"\noutage: the first delivery failed {time.monotonic() - started:.1f} s after the API went down")
    while alive(server):  # its port must be free before it starts again
        assert time.monotonic() - started < 300
        time.sleep(0.5)
    served.make("serve")  # the server back; the worker never stopped

    final = served.wait_state(run_id, lambda s: s.is_final(), 300, "final")
    assert registry.aliases("updown")["champion"] == 1  # the registry moved on without Prefect
    assert final.is_failed() or final.is_crashed(), final
    if final.is_failed():  # the run could tell the server: it says what Prefect missed
        assert "updown/1 is published (promoted, champion" in final.message, final.message
        assert "the Prefect API did not receive" in final.message, final.message
    (row,) = deliveries.status(registry, "updown")
    assert row.pending == deliveries.PROMOTED_ITEMS, row.summary()

    # The next run has nothing to train (same data, same config) and catches Prefect up first.
    again = served.run("retrain/manual", config=MANUAL_CONFIG, home=str(home))
    assert served.wait_state(again, lambda s: s.is_final(), 300, "final").is_completed(), served.logs()
    (row,) = deliveries.status(registry, "updown")
    assert row.pending == (), row.summary()
    with served.client() as client:
        events = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=["model.published"]),
                resource=EventResourceFilter(id=["model.updown.1"]),
            ),
            limit=10,
        ).events
    assert [e.payload["redelivery"] for e in events] == [True]
    with temporary_settings({PREFECT_API_URL: served.url}):
        assert _latest_bundle_link("updown") == registry.resolve("updown@champion").url


def test_a_run_whose_worker_dies_with_it_is_marked_crashed_and_frees_its_slot(served: Served):
    run_id = served.run("retrain/manual", config=hanging_config(served), home=str(served.tmp / "zombie"))
    in_flight(served, run_id)
    assert served.slots("retrain/manual") == 1
    worker, flows = served.pid("worker"), served.flow_processes()
    assert flows, "no flow-run process under the worker"
    for pid in (worker, *flows):  # machine-loss style: nobody gets to report anything
        os.kill(pid, signal.SIGKILL)
    died = time.monotonic()
    crashed = served.wait_state(run_id, lambda s: s.is_final(), 240, "Crashed")
    elapsed = time.monotonic() - died
    print(f"\nzombie: marked {crashed.name} {elapsed:.1f} s after its worker and flow process died")
    assert crashed.is_crashed() and "updown-crash-zombie-flow-runs" in crashed.message, crashed
    assert elapsed <= 90 + 30, elapsed  # the automation's 90 s, and its 5 s evaluation loop, with slack
    assert served.slots("retrain/manual") == 0
    served.make("serve")  # a new worker for the next scenario (the server kept running)


def test_make_stop_mid_run_then_make_serve_and_the_next_nightly_runs(served: Served):
    run_id = served.run(
        "retrain/nightly",
        config=hanging_config(served),
        home=str(served.tmp / "interrupted"),
        skip_if_no_session="false",
    )
    in_flight(served, run_id)
    assert served.slots("retrain/nightly") == 1
    leases = served.serve_dir / "server" / "concurrency_leases"
    held = {p.name for p in leases.glob("*.json")} - {"expirations.json"}
    assert held, f"no lease on disk in {leases}"
    flows = served.flow_processes()

    stopped = served.make("stop")
    assert "stopped worker" in stopped.stdout and "stopped server" in stopped.stdout, stopped.stdout
    assert not [pid for pid in flows if alive(pid)], "make stop left a flow-run process running"
    assert held <= {p.name for p in leases.glob("*.json")}  # the lease outlives the server
    served.make("serve")
    restarted = time.monotonic()
    # The logs go on where they were: one header per `make serve`, nothing overwritten.
    assert (served.serve_dir / "server.log").read_text().count("make serve\n") >= 2
    assert (served.serve_dir / "worker.log").read_text().count("make serve\n") >= 2

    # Without a heartbeat the automation ends the interrupted run, which returns the slot; were it
    # gone, the lease (kept on disk) would expire and return it within its TTL.
    state = served.wait_state(run_id, lambda s: s.is_final(), LEASE_TTL_S, "ended")
    while served.slots("retrain/nightly") != 0:
        assert time.monotonic() - restarted < LEASE_TTL_S, f"slot still taken:\n{served.logs()}"
        time.sleep(1)
    print(
        f"\nrestart: interrupted run {state.name}, slot free {time.monotonic() - restarted:.1f} s after make serve"
    )
    assert state.is_crashed(), state

    # The next nightly is not cancelled for "Deployment concurrency limit reached": it runs.
    home = served.tmp / "pipeline"  # where the outage scenario published: nothing new to train
    nightly = served.run("retrain/nightly", config=MANUAL_CONFIG, home=str(home), skip_if_no_session="false")
    final = served.wait_state(nightly, lambda s: s.is_final(), 300, "final")
    assert final.is_completed(), f"{final}:\n{served.logs()}"
