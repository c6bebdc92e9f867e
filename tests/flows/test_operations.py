"""operations.yaml and `python -m flows.operations` on the temporary API: the zombie-run automation and
the publish lock applied idempotently, and runs whose process is gone ended so their slots come back."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling, Running

from flows import operations
from flows.common import HEARTBEAT_SECONDS
from tasks.publish import PUBLISH_LOCK

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("prefect_api")


def test_the_automation_is_prefects_zombie_pattern_and_outlasts_three_heartbeats():
    limits, (automation,) = operations.load_operations()
    trigger = automation.trigger
    assert (trigger.posture.value, trigger.after, trigger.expect) == (
        "Proactive",
        {"prefect.flow-run.heartbeat"},
        {"prefect.flow-run.*"},
    )
    assert trigger.for_each == {"prefect.resource.id"} and trigger.threshold == 1
    (action,) = automation.actions
    assert (action.type, action.state) == ("change-flow-run-state", StateType.CRASHED)
    # Every heartbeating process of these flows beats every 30 s: deployments and the command lines.
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pool"]
    assert pool["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)
    assert trigger.within == dt.timedelta(seconds=3 * HEARTBEAT_SECONDS)
    # Only runs of this project's flows, which all heartbeat that often.
    related = trigger.match_related.root if hasattr(trigger.match_related, "root") else trigger.match_related
    assert related == {"prefect.resource.role": "flow", "prefect.resource.name": list(operations.FLOW_NAMES)}
    assert limits == [{"name": PUBLISH_LOCK, "limit": 1}]


def test_apply_creates_then_updates_in_place():
    first = operations.apply()
    assert first[-1].startswith("automation 'updown-crash-zombie-flow-runs': created")
    second = operations.apply()
    assert second[-1].startswith("automation 'updown-crash-zombie-flow-runs': updated")
    with get_client(sync_client=True) as client:
        assert len(client.read_automations_by_name("updown-crash-zombie-flow-runs")) == 1
        assert client.read_global_concurrency_limit_by_name(PUBLISH_LOCK).limit == 1


def test_an_unknown_section_is_refused(tmp_path):
    bad = tmp_path / "operations.yaml"
    bad.write_text("automation: []\n")
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['automation'\]"):
        operations.load_operations(bad)


def make_run(client, name: str, state) -> str:
    from prefect import flow

    @flow(name=name)
    def placeholder() -> None:
        pass

    run = client.create_flow_run(placeholder, state=state)
    return str(run.id)


def test_recover_ends_silent_runs_and_leaves_live_ones(monkeypatch):
    with get_client(sync_client=True) as client:
        running = make_run(client, "retrain", Running())
        cancelling = make_run(client, "ingest", Running())
        client.set_flow_run_state(cancelling, Cancelling(), force=True)
        other = make_run(client, "someone-elses-flow", Running())

    # Just started: a run seen less than --stale-after seconds ago is alive.
    listed = "\n".join(operations.recover(stale_after_s=3600))
    assert f"{running} " in listed and "alive, left alone" in listed and other not in listed

    dry = "\n".join(operations.recover(stale_after_s=0, dry_run=True))
    assert f"{running} " in dry and "would be marked Crashed" in dry and "would be marked Cancelled" in dry
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(running).state.is_running()

    done = "\n".join(operations.recover(stale_after_s=0))
    assert "marked Crashed" in done and "marked Cancelled" in done
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(running).state.type == StateType.CRASHED
        assert client.read_flow_run(cancelling).state.type == StateType.CANCELLED
        assert client.read_flow_run(other).state.is_running()  # not this project's flow


def test_recover_by_id_ends_a_run_whatever_its_heartbeats():
    with get_client(sync_client=True) as client:
        running = make_run(client, "retrain", Running())
    (line,) = operations.recover([running])
    assert line.endswith("marked Crashed")
    (again,) = operations.recover([running])
    assert again.endswith("already Crashed")


def test_the_command_line_needs_a_server():
    env = {k: v for k, v in __import__("os").environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "flows.operations", "recover", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "set PREFECT_API_URL" in done.stderr


def test_a_run_from_the_command_line_heartbeats_like_a_deployment():
    """The automation crashes a run after 90 s of silence: a shell run must beat every 30 s too."""
    script = (
        "import argparse\n"
        "from flows import cli\n"
        "cli.start_prefect(argparse.Namespace(debug=False))\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().flows.heartbeat_frequency)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(HEARTBEAT_SECONDS)
