import numpy as np
import pandas as pd
import pytest

from models.dataset.labels import (
    DOWN,
    RANGE_BOUND,
    UNLABELLED,
    UP,
    balancing_scale,
    classify,
    forward_labels,
    forward_returns,
    trailing_volatility,
)


def reference_labels(prices, horizon, theta):
    """The definition, one day at a time."""
    out = []
    for t in range(len(prices)):
        if t + horizon >= len(prices):
            out.append(-1)
            continue
        r = prices[t + horizon] / prices[t] - 1
        out.append(2 if r > theta else 0 if r < -theta else 1)
    return out


def test_hand_made_prices():
    prices = [100, 102, 101, 99, 99.5, 104]
    labels, forward = forward_labels(np.array(prices), horizon=1, theta=0.01)
    # 100->102 up, 102->101 (-0.98%) range, 101->99 down, 99->99.5 range, 99.5->104 up, last unknown
    assert labels.tolist() == [UP, RANGE_BOUND, DOWN, RANGE_BOUND, UP, UNLABELLED]
    assert forward[0] == pytest.approx(0.02)
    assert np.isnan(forward[-1])


def test_threshold_is_strict():
    labels, _ = forward_labels(np.array([1.0, 1.5, 0.75, 0.8]), horizon=1, theta=0.5)
    assert labels[:2].tolist() == [RANGE_BOUND, RANGE_BOUND]  # exactly +50 % / -50 %: not up/down


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_matches_reference_on_random_walks(seed, horizon):
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, size=rng.integers(2, 60))))
    labels, _ = forward_labels(prices, horizon, 0.015)
    assert labels.tolist() == reference_labels(prices, horizon, 0.015)


def test_series_shorter_than_horizon_is_unlabelled():
    labels, _ = forward_labels(np.array([1.0, 2.0]), horizon=5, theta=0.01)
    assert (labels == -1).all()


@pytest.mark.parametrize("seed", range(4))
def test_trailing_volatility_uses_the_past_only(seed):
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 80)))
    sigma = trailing_volatility(prices, 10)
    reference = pd.Series(np.log(prices)).diff().rolling(10).std(ddof=1).to_numpy()
    np.testing.assert_allclose(sigma, reference, equal_nan=True, rtol=1e-10)
    changed = prices.copy()
    changed[50:] *= 1.7
    np.testing.assert_array_equal(trailing_volatility(changed, 10)[:50], sigma[:50])


@pytest.mark.parametrize("seed", range(4))
def test_volatility_scaled_labels_match_the_definition(seed):
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))
    h, k = 3, 0.7
    sigma = trailing_volatility(prices, 10)
    labels = classify(forward_returns(prices, h), k * sigma * np.sqrt(h))
    for t in range(len(prices)):
        if t + h >= len(prices) or np.isnan(sigma[t]):
            assert labels[t] == -1
            continue
        r = prices[t + h] / prices[t] - 1
        threshold = k * sigma[t] * np.sqrt(h)
        assert labels[t] == (2 if r > threshold else 0 if r < -threshold else 1)


def test_balancing_scale_puts_a_third_in_range_bound():
    forward = np.random.default_rng(0).normal(0, 0.03, 3000)
    scale = balancing_scale(forward, np.ones_like(forward))
    share = (classify(forward, scale) == 1).mean()
    assert share == pytest.approx(1 / 3, abs=0.01)
