"""prefect.yaml parses and deploys against a real Prefect API (the session's temporary server)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("prefect_api")


def prefect_cli(*args: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    cli = Path(sys.executable).with_name("prefect")
    return subprocess.run([str(cli), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_deployments_deploy_with_schedule_and_concurrency_limit():
    created = prefect_cli("work-pool", "create", "updown-process", "--type", "process", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect_cli("deploy", "--all", "--no-prompt")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return {
                name: await client.read_deployment_by_name(name)
                for name in ("retrain/nightly", "retrain/manual", "ingest/backfill", "scorecard/backfill")
            }

    import asyncio

    from models.config import PipelineConfig

    deployments = asyncio.run(read())
    nightly = deployments["retrain/nightly"]
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "30 18 * * 1-5"
    assert schedule.schedule.timezone == "America/New_York"
    assert nightly.parameters["config"]["source"]["kind"] == "yfinance"
    # Unattended: a quarantined ticker refuses the nightly instead of a champion on part of the universe.
    assert PipelineConfig.model_validate(nightly.parameters["config"]).gate.require_full_universe is True
    assert "force" in deployments["ingest/backfill"].parameter_openapi_schema["properties"]
    assert nightly.work_pool_name == "updown-process"
    assert nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options.collision_strategy == "CANCEL_NEW"
    manual = deployments["retrain/manual"]
    assert manual.global_concurrency_limit.limit == 1
    assert manual.concurrency_options.collision_strategy == "ENQUEUE"
    assert json.dumps(manual.parameters) == "{}"
    # Heartbeats every 30 s, for the zombie-run automation of operations.yaml.
    for deployment in deployments.values():
        assert deployment.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    backfill = deployments["scorecard/backfill"]
    assert (
        backfill.entrypoint == "flows/scorecard.py:scorecard" and backfill.work_pool_name == "updown-process"
    )
    assert {"model", "window_sessions", "night", "source"} <= set(
        backfill.parameter_openapi_schema["properties"]
    )
