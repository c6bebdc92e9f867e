"""Small configurations and sample-market prices shared by the tests."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from models.config import PipelineConfig
from models.prices import sample

END = dt.date(2024, 12, 31)


def tiny_config(**sections) -> PipelineConfig:
    """A few tickers, a few years, a small LSTM, few epochs: seconds to train on 2 cores."""
    base = {
        "source": {
            "tickers": ["AAA", "BBB", "CCC", "DDD"],
            "start": "2019-01-02",
            "end": END.isoformat(),
        },
        "model": {"lstm_units": [8]},
        "training": {"epochs": 2, "batch_size": 256},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return PipelineConfig.model_validate(base)


def learning_config(variant: str = "signal", **sections) -> PipelineConfig:
    """The demo-sized market (8 tickers, ~10 years): big enough for the planted signal to show."""
    base = {
        "source": {"start": "2016-01-04", "end": END.isoformat(), "sample_variant": variant},
        "training": {"epochs": 6},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return PipelineConfig.model_validate(base)


def sample_prices(config: PipelineConfig) -> dict[str, pd.DataFrame]:
    s = config.source
    return {
        t: sample.generate(
            t,
            s.end or END,
            start=s.start,
            seed=s.sample_seed,
            variant=s.sample_variant,
            signal_until=s.sample_signal_until,
        )
        for t in s.tickers
    }


def run_without_prefect(config: PipelineConfig, home, inject=None, prices=None) -> dict:
    """The retrain pipeline's models/ calls in order (what the flow wires), for fault injection.

    Walk-forward (the default scheme): every fold is built, trained and predicted, then pooled and
    judged; holdout: one split. `inject(info)` may modify a built dataset's files (every fold's) and
    may return labels that replace the dataset's. Returns what happened: `stage` reached, diagnosis
    codes, verdict and version.
    """
    from pathlib import Path

    from models.dataset.build import build_dataset, build_walk_forward
    from models.diagnosis import GuardFailure
    from models.registry import Registry, RegistryError
    from models.registry.publication import publish_run
    from models.training.evaluation import evaluate_run, evaluate_walk_forward, rejudge
    from models.training.folds import run_fold
    from models.training.trainer import train

    home = Path(home)
    registry = Registry(home / "registry")
    walk_forward = config.evaluation.scheme == "walk_forward"
    prices = prices or sample_prices(config)
    try:
        if walk_forward:
            folds = build_walk_forward(prices, config, home / "run" / "dataset", {"kind": "sample"})
        else:
            folds = [build_dataset(prices, config, home / "run" / "dataset", {"kind": "sample"})]
    except GuardFailure as err:
        return {"stage": "dataset", "codes": err.codes, "message": str(err), "version": None}
    try:
        champion = registry.resolve(f"{config.model.name}@champion")
    except RegistryError:
        champion = None
    champion_args = (champion.path, champion.version) if champion else (None, None)
    try:
        if walk_forward:
            records = []
            for info in folds:
                labels = inject(info) if inject else None
                records.append(
                    run_fold(
                        info,
                        config,
                        home / "run" / f"fold-{info.fold}",
                        log=lambda _m: None,
                        labels_override=labels,
                    )
                )
        else:
            labels = inject(folds[0]) if inject else None
            result = train(
                folds[0], config, home / "run" / "training", log=lambda _m: None, labels_override=labels
            )
    except GuardFailure as err:
        return {"stage": "preflight", "codes": err.codes, "message": str(err), "version": None}
    if walk_forward:
        evaluation = evaluate_walk_forward(
            records, folds, config, home / "run" / "evaluation", *champion_args
        )
        info, training = folds[-1], records[-1]["training"]
        diagnoses = evaluation["diagnoses"]
    else:
        fatal = [d for d in result.diagnoses if d["fatal"]]
        evaluation = evaluate_run(
            Path(folds[0].path), Path(result.model_path), config.gate, fatal, *champion_args
        )
        info, training = folds[0], result.as_dict()
        diagnoses = result.diagnoses
    bundle, manifest = publish_run(
        registry,
        config,
        info,
        training,
        evaluation,
        {"kind": "sample", "synthetic": True},
        None,
        home / "run" / "publish",
        rejudge=lambda v: rejudge(
            evaluation, config, registry.local_path(f"{config.model.name}/{v}") if v else None, v
        ),
    )
    return {
        "stage": "published",
        "codes": [d["code"] for d in diagnoses],
        "verdict": manifest["gate"]["verdict"],
        "reasons": manifest["gate"]["reasons"],
        "version": bundle.version,
        "manifest": manifest,
        "evaluation": evaluation,
    }


# The monitoring tests' champion is trained on the sample market up to this session (a Friday).
TRAINED_UNTIL = dt.date(2024, 6, 28)


def store_sample(home, source, end: dt.date) -> None:
    """Bring the store of `source` (a sample market) up to `end`, as ingest does, without Prefect."""
    from pathlib import Path

    from models.prices.ingest import ingest_ticker

    for ticker in source.tickers:
        record = ingest_ticker(source, ticker, Path(home), end)
        assert record.status in ("ok", "backfilled"), record


def universe(size: int) -> tuple[str, ...]:
    """`size` sample-market tickers (XAA, XAB, ...): a universe large enough for a 60-session window
    to tell a champion's edge from none (see models.monitoring.summary)."""
    import itertools
    import string

    return tuple("X" + "".join(p) for p in itertools.product(string.ascii_uppercase, repeat=2))[:size]
