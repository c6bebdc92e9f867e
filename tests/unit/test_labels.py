import numpy as np
import pytest

from models.labels import DOWN, RANGE_BOUND, UNLABELLED, UP, forward_labels


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
