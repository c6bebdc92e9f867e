"""Small configurations and sample-market prices shared by the tests."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from models import sample
from models.config import PipelineConfig

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
        t: sample.generate(t, s.end or END, start=s.start, seed=s.sample_seed, variant=s.sample_variant)
        for t in s.tickers
    }
