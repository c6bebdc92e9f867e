"""Prefect task: publish the bundle, show it to people (artifacts) and automations (events).

The registry is the source of truth. What Prefect is shown about a version (its event and artifacts)
is recorded per version (models/registry/deliveries.py); what an API outage kept from Prefect is
delivered again by the next run (`redeliver`), so Prefect's view catches up with the registry.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.logging import get_logger, get_run_logger
from prefect.runtime import deployment, flow_run

from models.config import PipelineConfig
from models.dataset.arrays import DatasetInfo
from models.prices import sources, store
from models.registry import BundleRef, Registry, deliveries, smoke
from models.registry.publication import publish_run

# The registry-wide publish lock: a Prefect global concurrency limit of 1 declared in operations.yaml
# (`make deploy` creates it). A deployed run holds it from the champion comparison to the end of
# publishing, so runs of different deployments (nightly, manual) never interleave the two.
PUBLISH_LOCK = "updown-registry-publish"
# A holder that dies frees the lock when its lease runs out (renewed every 45 s while held).
PUBLISH_LOCK_LEASE_S = 60


class DeliveryError(RuntimeError):
    """The registry holds the version, but the Prefect API did not receive all of what shows it."""


def require_publish_lock() -> None:
    """In a deployed run, fail at once (not after training) when the API lacks the publish lock."""
    if deployment.get_id() is None:
        return
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(PUBLISH_LOCK)
        except ObjectNotFound:
            raise RuntimeError(
                f"this Prefect API has no global concurrency limit {PUBLISH_LOCK!r}, which deployed "
                "retrain runs hold while they compare and publish: run `make deploy` "
                "(or `python -m flows.operations apply`) against it"
            ) from None


@contextlib.contextmanager
def publish_lock() -> Iterator[None]:
    """Hold the registry-wide publish lock around comparison and promotion.

    A deployed run must hold it (see `require_publish_lock`). A run started from a shell holds it when
    its API has it, and otherwise relies on the registry's own lock, which keeps versions and aliases
    consistent but does not order two runs' comparisons.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectNotFound

    if deployment.get_id() is None:
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(PUBLISH_LOCK)
                on_this_api = True
            except ObjectNotFound:
                on_this_api = False
        if not on_this_api:
            yield
            return
    run_id = flow_run.get_id()
    lock = concurrency(
        PUBLISH_LOCK,
        occupy=1,
        lease_duration=PUBLISH_LOCK_LEASE_S,
        strict=True,
        holder=ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None,
        # An API blip while holding it must not kill a publish half-way: the registry's lock still
        # guards every write, and the version is delivered again later if the API missed it.
        raise_on_lease_renewal_failure=False,
    )
    lock.__enter__()
    try:
        yield
    except BaseException:
        _release(lock, sys.exc_info())
        raise
    _release(lock, (None, None, None))


def _release(lock, exc_info) -> None:
    """Leave the lock; if the API cannot hear it, its lease runs out instead (60 s).

    A failed release must neither mask the error that ended the publish nor fail one that succeeded.
    """
    try:
        lock.__exit__(*exc_info)
    except Exception as err:
        get_logger("publish").warning(
            "could not release %s (%s): its lease runs out within %d s",
            PUBLISH_LOCK,
            f"{type(err).__name__}: {err}".splitlines()[0],
            PUBLISH_LOCK_LEASE_S,
        )


@task
def publish(
    config: PipelineConfig,
    dataset: DatasetInfo,
    trained: dict,
    evaluation: dict,
    registry_root: str,
    run_dir: str,
    home: str | None = None,
) -> dict:
    """Write the bundle as a new version; promoted ones that pass the smoke test move the aliases."""
    registry = Registry(registry_root)
    smoke_prices = None
    if home is not None and config.registry.smoke_test:
        label = sources.source_label(config.source)
        prices = {t: store.read_prices(Path(home), t, source=label) for t in dataset.tickers}
        smoke_prices = smoke.write_smoke_prices(prices, Path(run_dir) / "publish" / "smoke_prices.parquet")
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None
    bundle, manifest = publish_run(
        registry,
        config,
        dataset,
        trained,
        evaluation,
        sources.describe(config.source),
        run_id,
        Path(run_dir) / "publish",
        smoke_prices=smoke_prices,
        keep=config.registry.keep_versions,
        rejudge=lambda version: _rejudge(registry, config, evaluation, version),
    )
    verdict = manifest["gate"]["verdict"]
    logger = get_run_logger()
    logger.info("published %s (%s) at %s", bundle, verdict, bundle.url)
    deliveries.write(
        registry,
        bundle.model,
        bundle.version,
        deliveries.new_record(bundle.model, bundle.version, verdict, run_id),
    )
    failed = deliver(registry, bundle, redelivery=False)
    if failed:
        aliased = ", ".join(
            sorted(a for a, v in registry.aliases(bundle.model).items() if v == bundle.version)
        )
        state = f"{verdict}" + (f", {aliased}" if aliased else "")
        raise DeliveryError(
            f"{bundle} is published ({state}), but the Prefect API did not receive "
            + "; ".join(f"{item} ({error})" for item, error in failed.items())
            + ". The next run delivers them again; `python -m models deliveries` lists what is pending."
        )
    summary = {
        "model": bundle.model,
        "version": bundle.version,
        "path": str(bundle.path) if bundle.path is not None else bundle.url,
        "verdict": verdict,
        "reasons": manifest["gate"]["reasons"],
        "metrics": _scores(manifest["metrics"]),
        "baselines": {name: _scores(b) for name, b in manifest["baselines"].items()},
        "synthetic_data": manifest["synthetic_data"],
        "data": manifest.get("data") or {},
    }
    section = manifest.get("evaluation")
    if section:
        summary["evaluation"] = {
            "scheme": section["scheme"],
            "folds": section["folds"],
            "sample": section["sample"],
            "strongest_baseline": section["pooled"]["strongest_baseline"],
            "direction_skill": section["direction_skill"],
            "carried_by": section["carried_by"],
            "meaning": section["meaning"],
        }
    return summary


def _rejudge(registry: Registry, config: PipelineConfig, evaluation: dict, version: int | None) -> dict:
    """The candidate's evaluation against the champion now in place (it moved during this run)."""
    from models.training.evaluation import rejudge

    bundle = registry.local_path(f"{config.model.name}/{version}") if version is not None else None
    get_run_logger().warning("the champion moved to %s during this run: comparing again", version)
    return rejudge(evaluation, config, bundle, version)


@task
def redeliver(registry_root: str, model: str) -> list[str]:
    """Deliver what earlier runs could not show Prefect (an outage), and point model-bundle at the champion.

    Never fails the run: what stays undelivered stays recorded, and the next run tries again.
    """
    logger = get_run_logger()
    try:
        return redeliver_missing(Registry(registry_root), model, logger)
    except Exception as err:  # a catch-up that cannot run now must not stop a nightly; it runs next time
        logger.warning(
            "could not catch Prefect up on %s's versions in %s: %s: %s",
            model,
            registry_root,
            type(err).__name__,
            str(err).splitlines()[0] if str(err) else "",
        )
        return []


def redeliver_missing(registry: Registry, model: str, logger=None) -> list[str]:
    """Re-deliver every version's undelivered event and artifacts, oldest first; returns what was sent.

    A version whose publishing run is still alive (Pending or Running on this API) is left to it.
    Afterwards the latest `model-bundle` artifact links the champion (it may lag after a rollback
    with `python -m models alias set` or an outage). Failures stay recorded as pending.
    """
    logger = logger or get_logger("redeliver")
    sent: list[str] = []
    busy: set[int] = set()  # versions their own (live) run is still delivering
    for row in deliveries.status(registry, model):
        if row.pending and _publisher_alive(row.record):
            busy.add(row.version)
        if not row.pending or row.version in busy:
            continue
        bundle = registry.resolve(f"{model}/{row.version}")
        record = row.record or deliveries.new_record(model, row.version, row.verdict, None)
        if row.record is None:
            deliveries.write(registry, model, row.version, record)
        failed = deliver(registry, bundle, redelivery=True)
        delivered = [item for item in row.pending if item not in failed]
        sent += [f"{bundle} {item}" for item in delivered]
        if delivered:
            logger.info("re-delivered %s to Prefect: %s", bundle, ", ".join(delivered))
        if failed:
            logger.warning(
                "%s still not delivered: %s", bundle, "; ".join(f"{k} ({v})" for k, v in failed.items())
            )
            if any(error.startswith(("API unreachable", "not attempted")) for error in failed.values()):
                return sent  # the rest would only wait out the same retries; the next run goes on
    champion = registry.aliases(model).get("champion")
    if (
        champion is not None
        and champion not in busy
        and _latest_bundle_link(model) != registry.resolve(f"{model}/{champion}").url
    ):
        bundle = registry.resolve(f"{model}/{champion}")
        error, _ = _attempt(lambda: _bundle_artifact(registry, bundle))
        if error is None:
            sent.append(f"{bundle} model-bundle")
            logger.info("model-bundle now links the champion %s", bundle)
        else:
            logger.warning("model-bundle could not be pointed at the champion %s: %s", bundle, error)
    deliveries.prune(registry, model)
    return sent


def deliver(registry: Registry, bundle: BundleRef, redelivery: bool) -> dict[str, str]:
    """Deliver the version's pending items, recording each outcome; returns item -> error for failures.

    After the first failure that says the API is unreachable, the rest are not attempted (each would
    wait out the client's retries again) and stay pending.
    """
    manifest = registry.manifest(bundle)
    verdict = manifest["gate"]["verdict"]
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None
    record = deliveries.read(registry, bundle.model, bundle.version) or deliveries.new_record(
        bundle.model, bundle.version, verdict, run_id
    )

    def bundle_link() -> str | None:
        champion = registry.aliases(bundle.model).get("champion")
        if champion != bundle.version:
            # Linking a former champion would be false; `redeliver_missing` links the champion itself.
            return f"superseded: {bundle.model}/{champion} is the champion now"
        _bundle_artifact(registry, bundle)
        return None

    senders = {
        "retrain-report": lambda: create_markdown_artifact(
            key="retrain-report",
            markdown=registry.read_file(bundle, "report.md").decode(),
            description=f"{bundle} {verdict}",
        ),
        "retrain-metrics": lambda: create_table_artifact(
            key="retrain-metrics",
            table=[{"model": "this model", **_flat(_scores(manifest["metrics"]))}]
            + [{"model": name, **_flat(_scores(b))} for name, b in manifest["baselines"].items()],
            description=f"{bundle} test metrics",
        ),
        "model-bundle": bundle_link,
        "event": lambda: _send_event(bundle, manifest, redelivery),
    }
    failed: dict[str, str] = {}
    unreachable = None
    for item in deliveries.pending(record, verdict):
        if unreachable is not None:
            failed[item] = f"not attempted: {unreachable}"
            continue
        error, note = _attempt(senders[item])
        record = deliveries.mark(record, item, error, run_id, note)
        deliveries.write(registry, bundle.model, bundle.version, record)
        if error is not None:
            failed[item] = error
            if error.startswith("API unreachable"):
                unreachable = error
    return failed


def _attempt(send) -> tuple[str | None, str | None]:
    """Run one delivery: (None, note) when the API accepted it (or nothing had to be sent), else
    (a one-line reason, None)."""
    import httpx

    try:
        note = send()
    except (httpx.TransportError, OSError) as err:
        return f"API unreachable: {type(err).__name__}: {err}".splitlines()[0], None
    except Exception as err:  # any refusal by the API is recorded, and retried by a later run
        return f"{type(err).__name__}: {err}".splitlines()[0], None
    return None, note if isinstance(note, str) else None


def _bundle_artifact(registry: Registry, bundle: BundleRef) -> None:
    create_link_artifact(key="model-bundle", link=bundle.url, link_text=f"{bundle} (champion)")


def _send_event(bundle: BundleRef, manifest: dict, redelivery: bool) -> None:
    """POST the event and wait for the API's answer: unlike `emit_event`, this knows it arrived.

    Related resources are the current run's (flow run, flow, deployment, work pool, tags), as
    `emit_event` would attach, plus the run that published the version when another run re-delivers.
    """
    from prefect.events import Event, RelatedResource
    from prefect.events.related import related_resources_from_run_context
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def context_related() -> list:
        async with get_client() as client:
            return await related_resources_from_run_context(client)

    verdict = manifest["gate"]["verdict"]
    related = list(run_coro_as_sync(context_related()) or [])
    publisher = manifest.get("flow_run_id")
    if redelivery and publisher:
        related.append(
            RelatedResource(
                {"prefect.resource.id": f"prefect.flow-run.{publisher}", "prefect.resource.role": "publisher"}
            )
        )
    event = Event(
        event=deliveries.event_name(verdict),
        resource={
            "prefect.resource.id": f"model.{bundle.model}.{bundle.version}",
            "prefect.resource.name": str(bundle),
            "url": bundle.url,
        },
        related=related,
        payload={
            "model": bundle.model,
            "version": bundle.version,
            "verdict": verdict,
            "reasons": manifest["gate"]["reasons"],
            "published_at": manifest.get("created_at"),
            "published_by": publisher,
            # True when a later run sends it after an outage: consumers de-duplicate on the resource id.
            "redelivery": redelivery,
        },
    )
    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=[event.model_dump(mode="json")])


def _latest_bundle_link(model: str) -> str | None:
    """Where the newest `model-bundle` artifact points, or None when there is none."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["model-bundle"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    if not found:
        return None
    data = str(found[0].data or "")
    # A link artifact stores markdown: [text](url)
    return data[data.rfind("(") + 1 : -1] if data.endswith(")") and "(" in data else data


def _publisher_alive(record: dict | None) -> bool:
    """Whether the run that wrote this record is still Pending or Running on this API."""
    run_id = (record or {}).get("published_by")
    if not run_id or run_id == str(flow_run.get_id()):
        return False
    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(run_id).state
        except Exception:  # unknown to this API (e.g. a shell run on a temporary API): not alive here
            return False
    return state is not None and (state.is_running() or state.is_pending())


def _scores(metrics: dict) -> dict:
    """Accuracy and balanced accuracy, and where present the interval and the model-minus-it bounds."""
    out = {k: round(float(metrics[k]), 4) for k in ("accuracy", "balanced_accuracy") if k in metrics}
    for key in ("interval", "difference"):
        if metrics.get(key):
            out[key] = {k: round(float(v), 4) for k, v in metrics[key].items()}
    return out


def _flat(scores: dict) -> dict:
    """Table-artifact cells: nested intervals become `interval_lower`, `difference_lower`, ..."""
    out = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            out |= {f"{key}_{k}": v for k, v in value.items() if k in ("lower", "upper", "estimate")}
        else:
            out[key] = value
    return out
