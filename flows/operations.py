"""`python -m flows.operations`: what `make deploy` creates besides the deployments, and recovery.

    python -m flows.operations apply                # operations.yaml: automations, global concurrency limits
    python -m flows.operations recover              # runs whose process is gone: ended, their slots released
    python -m flows.operations recover --dry-run    # list them only
    python -m flows.operations recover --flow-run ID [ID ...]   # end these runs, whatever their heartbeats
    python -m flows.operations redeliver [--home H] [--model updown]   # events/artifacts Prefect missed

Every command talks to the Prefect API of PREFECT_API_URL (required: a temporary API has nothing to
recover). A run is "gone" when neither a heartbeat nor a state change was seen for --stale-after
seconds (default 90 s, three missed heartbeats); Running and Pending runs are then marked Crashed,
Cancelling ones Cancelled, through the server's orchestration, which releases their deployment's
concurrency slot. `prefect flow-run cancel` cannot do this for a run whose process is gone: the run
waits in Cancelling for a worker that no longer knows it, and keeps its slot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS_FILE = ROOT / "operations.yaml"
FLOW_NAMES = ("retrain", "ingest", "walk-forward")  # retrain runs the other two as subflows
STALE_AFTER_S = 90


def load_operations(path: Path = OPERATIONS_FILE) -> tuple[list[dict], list]:
    """The global concurrency limits (name, limit) and automations (validated) declared in `path`."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - {"global_concurrency_limits", "automations"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}")
    limits = [
        {"name": str(x["name"]), "limit": int(x["limit"])} for x in data.get("global_concurrency_limits", [])
    ]
    automations = [AutomationCore.model_validate(a) for a in data.get("automations", [])]
    return limits, automations


def apply(path: Path = OPERATIONS_FILE) -> list[str]:
    """Create or update, by name, every object of `path` on the API; returns one line per object."""
    limits, automations = load_operations(path)
    from prefect.client.orchestration import get_client

    done = []
    with get_client(sync_client=True) as client:
        for limit in limits:
            client.upsert_global_concurrency_limit_by_name(limit["name"], limit["limit"])
            done.append(f"global concurrency limit {limit['name']!r}: limit {limit['limit']}")
        for automation in automations:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for duplicate in existing[1:]:  # two with one name would both fire
                    client.delete_automation(duplicate.id)
                done.append(f"automation {automation.name!r}: updated ({existing[0].id})")
            else:
                created = client.create_automation(automation)
                done.append(f"automation {automation.name!r}: created ({created})")
    return done


def last_sign_of_life(client, run) -> dt.datetime:
    """The later of the run's latest heartbeat event and its current state's timestamp."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    seen = run.state.timestamp if run.state is not None else run.created
    page = client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
            occurred=EventOccurredFilter(since=seen),
        ),
        limit=1,
    )
    if page.events:
        seen = max(seen, page.events[0].occurred)
    return seen


def unfinished_runs(client) -> list:
    """Runs of this project's flows that hold or may hold a slot: Pending, Running or Cancelling."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES))),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING])
            )
        ),
    )


def recover(
    flow_run_ids: list[str] | None = None, stale_after_s: float = STALE_AFTER_S, dry_run: bool = False
) -> list[str]:
    """End the runs whose process is gone (or the ones named); returns one line per run."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    lines = []
    now = dt.datetime.now(dt.UTC)
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(i) for i in flow_run_ids] if flow_run_ids else unfinished_runs(client)
        for run in runs:
            state = run.state
            if state is None or state.is_final():
                lines.append(f"{run.id} {run.name}: already {state.name if state else 'without state'}")
                continue
            silent = (now - last_sign_of_life(client, run)).total_seconds()
            label = f"{run.id} {run.name} ({state.name}, silent {silent:.0f} s)"
            if not flow_run_ids and silent < stale_after_s:
                lines.append(f"{label}: alive, left alone")
                continue
            cancelling = state.is_cancelling()
            target = "Cancelled" if cancelling else "Crashed"
            if dry_run:
                lines.append(f"{label}: would be marked {target}")
                continue
            message = f"Marked {target} by `python -m flows.operations recover`: its process is gone."
            result = client.set_flow_run_state(
                run.id, Cancelled(message=message) if cancelling else Crashed(message=message)
            )
            outcome = "marked " + target if result.status.value == "ACCEPT" else f"refused: {result.details}"
            lines.append(f"{label}: {outcome}")
    return lines or ["no unfinished run of the retrain, ingest or walk-forward flow"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.operations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("apply", help="create or update the objects of operations.yaml on the API")
    p.add_argument("--file", type=Path, default=OPERATIONS_FILE, help="default: operations.yaml")
    p = sub.add_parser("recover", help="end runs whose process is gone, releasing their slots")
    p.add_argument("--flow-run", nargs="+", metavar="ID", help="end these runs, whatever their heartbeats")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S, help="seconds of silence (default 90)")
    p.add_argument("--dry-run", action="store_true", help="list, change nothing")
    p = sub.add_parser("redeliver", help="deliver the events and artifacts the Prefect API missed")
    p.add_argument("--home", help="data home (default: $PIPELINE_HOME or ./.pipeline)")
    p.add_argument("--model", default="updown", help="model name (default updown)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print("error: set PREFECT_API_URL to the server (e.g. http://127.0.0.1:4200/api)", file=sys.stderr)
        return 2
    if args.command == "apply":
        lines = apply(args.file)
    elif args.command == "recover":
        lines = recover(args.flow_run, args.stale_after, args.dry_run)
    else:
        from prefect import flow

        from flows.common import resolve_home, resolve_registry
        from tasks.publish import redeliver

        # A run of its own, so the artifacts belong to a run (Prefect deprecates run-less ones).
        on_a_run = flow(name="redeliver", log_prints=False)(redeliver.fn)
        lines = on_a_run(resolve_registry(resolve_home(args.home)), args.model) or ["nothing to deliver"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
