"""The retrain pipeline as a plain script: the same models/ calls the Prefect flow wires, in order,
with no Prefect. The baseline for the orchestration-overhead benchmark.

    python -m bench.plain_pipeline --home /tmp/plain [--config config.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.config import PipelineConfig
from models.dataset.build import build_dataset
from models.prices import ingest, sources, store
from models.prices.freshness import stored_prices
from models.registry import Registry, RegistryError, smoke
from models.registry.publication import publish_run
from models.training.evaluation import evaluate_run


def run(config: PipelineConfig, home: Path) -> dict:
    """Ingest, dataset, train, evaluate, publish (with the smoke test), as the flow does."""
    from models.training.trainer import train

    home = Path(home)
    run_dir = home / "runs" / "plain"
    end = ingest.resolve_end(config.source)
    for ticker in config.source.tickers:
        ingest.ingest_ticker(config.source, ticker, home, end)
    prices = stored_prices(config.source, home, list(config.source.tickers), end)
    info = build_dataset(prices, config, run_dir / "dataset", sources.describe(config.source))
    result = train(info, config, run_dir / "training", log=lambda _m: None)
    registry = Registry(home / "registry")
    try:
        champion = registry.resolve(f"{config.model.name}@champion")
    except RegistryError:
        champion = None
    evaluation = evaluate_run(
        Path(info.path),
        Path(result.model_path),
        config.gate,
        [d for d in result.diagnoses if d["fatal"]],
        registry.local_path(champion) if champion else None,
        champion.version if champion else None,
    )
    smoke_prices = smoke.write_smoke_prices(
        {t: store.read_prices(home, t, source=sources.source_label(config.source)) for t in info.tickers},
        run_dir / "publish" / "smoke_prices.parquet",
    )
    bundle, manifest = publish_run(
        registry,
        config,
        info,
        result.as_dict(),
        evaluation,
        sources.describe(config.source),
        None,
        run_dir / "publish",
        smoke_prices=smoke_prices,
        keep=10,
    )
    return {"version": bundle.version, "verdict": manifest["gate"]["verdict"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", required=True)
    parser.add_argument("--config", help="a PipelineConfig as JSON")
    args = parser.parse_args(argv)
    config = PipelineConfig.model_validate_json(args.config) if args.config else PipelineConfig()
    print(json.dumps(run(config, Path(args.home))))


if __name__ == "__main__":
    main()
