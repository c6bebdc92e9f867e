"""The served predictor computes each ticker's inputs with that ticker's own stats, exactly as training
and evaluation did (per-ticker normalization; the pooled case is tests/registry/test_consumer.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import CLASS_NAMES, ModelConfig
from models.dataset.arrays import load_arrays, normalized_matrix
from models.dataset.build import build_dataset
from models.dataset.normalization import read_stats
from models.dataset.windows import gather
from models.registry.predictor import Predictor
from models.training.network import build_model, forward
from tests.helpers import sample_prices, tiny_config


def test_each_ticker_is_normalized_with_its_own_stats_like_in_training(tmp_path):
    config = tiny_config(evaluation={"scheme": "holdout"}, features={"normalization": "per_ticker"})
    prices = sample_prices(config)
    # Make the tickers' scales differ by far: a predictor that used one ticker's stats for all
    # would feed the others inputs many standard deviations off.
    prices["BBB"][["open", "high", "low", "close", "adj_close"]] *= 40.0
    prices["CCC"]["volume"] *= 1000
    info = build_dataset(prices, config, tmp_path, {"kind": "sample"})
    stats = read_stats(info.stats_path)
    assert not stats.pooled and list(stats.scopes) == ["AAA", "BBB", "CCC", "DDD"]
    model = build_model(ModelConfig(lstm_units=(4,)), info.window, len(info.features), seed=3)
    manifest = {
        "window": info.window,
        "features": list(info.features),
        "labels": {"classes": list(CLASS_NAMES)},
        "source": {"exchange": "XNYS"},
    }
    predictor = Predictor(None, manifest, model, stats)
    frame = pd.concat([p.assign(ticker=t) for t, p in prices.items()], ignore_index=True)
    served = predictor.predict(frame)

    arrays = load_arrays(info.path)
    matrix = normalized_matrix(info, arrays)
    ends = arrays.ends["test"]
    expected = forward(model, gather(matrix, ends, info.window))
    tickers = np.asarray(info.tickers)[arrays.ticker_ids[ends]]
    keyed = served.set_index(["ticker", "date"])
    columns = [f"p_{c}" for c in CLASS_NAMES]
    got = keyed.loc[list(zip(tickers, pd.to_datetime(arrays.dates[ends]), strict=True)), columns].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert served.groupby("ticker")["max_abs_z"].max().max() < 20  # every ticker near its own scale
    assert set(served["ticker"]) == set(info.tickers)
    assert not served["out_of_range"].any()


def test_per_ticker_stats_refuse_a_ticker_they_were_not_fitted_for(tmp_path):
    config = tiny_config(evaluation={"scheme": "holdout"}, features={"normalization": "per_ticker"})
    info = build_dataset(sample_prices(config), config, tmp_path, {"kind": "sample"})
    stats = read_stats(info.stats_path)
    with pytest.raises(ValueError, match=r"have none for \['ZZZ'\]"):
        stats.apply(np.zeros((3, len(info.features))), "ZZZ")
