"""The `scorecard` flow: score the champion on the sessions after its training, from stored prices.

Deployed by prefect.yaml as `scorecard/backfill`; `python -m flows.scorecard --help` runs it once.
A fresh champion (or one rolled back to) gets a scorecard from its first day: every session after its
training end whose label has matured is predicted with the frozen model and scored against the
gate's baselines (rows `origin: backfill`), the nightly predictions files are scored too, and the
rolling summary is recomputed (`scorecard` artifact, scorecard.png, `model.degraded` when it has
degraded, which makes the next nightly retrain). It reads the price store as it is: the nightly (or
`ingest/backfill`) keeps it current.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from flows.cli import scorecard_main

    sys.exit(scorecard_main())

import datetime as dt

from prefect import flow

from flows.common import resolve_home, resolve_registry
from models.config import SourceConfig, utc_today
from models.errors import UsageError
from models.monitoring.nightly import night_of, stored_prices
from models.monitoring.sessions import load_champion
from models.registry import Registry
from tasks.monitoring import score_night, summarize_night


@flow(name="scorecard")
def scorecard(
    model: str = "updown",
    home: str | None = None,
    source: SourceConfig | None = None,
    window_sessions: int | None = None,
    night: dt.date | None = None,
) -> dict:
    """Backfill the champion's scorecard up to `night` and summarize it.

    `source` (default: the one the champion was trained on) names the stored prices and the universe;
    `night` (default: the last stored session) is the last day whose matured labels count;
    `window_sessions` overrides the champion's `monitoring.window_sessions`.
    """
    home = resolve_home(home)
    registry_root = resolve_registry(home)
    champion = load_champion(Registry(registry_root), model)
    if champion is None:
        raise UsageError(f"{model} has no champion in {registry_root}: nothing to score")
    config = champion.config
    if source is not None:
        config = config.model_copy(update={"source": source})
    if window_sessions is not None:
        monitoring = config.monitoring.model_copy(update={"window_sessions": window_sessions})
        config = config.model_copy(update={"monitoring": monitoring})
    tickers = list(config.source.tickers)
    if night is None:
        night = night_of(stored_prices(config.source, home, tickers, utc_today()))
        if night is None:
            raise UsageError(
                f"no prices of {', '.join(tickers)} are stored in {home} from the champion's source: "
                "run the nightly or `python -m flows.ingest` first"
            )
    scored = score_night(config, home, registry_root, tickers, night, backfill=True)
    summary = summarize_night(config, registry_root, night)
    return {"night": night.isoformat(), "scorecard": scored, "summary": summary}
