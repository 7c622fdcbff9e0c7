"""Annualisation, ratios and the block bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dreamer.errors import ConfigError
from dreamer.evaluation.metrics import (
    block_bootstrap_indices,
    bootstrap_sharpe,
    confidence_interval,
    drawdown_curve,
    max_drawdown,
    periods_per_year,
    sharpe_ratio,
)


@pytest.mark.parametrize(
    ("interval", "periods"),
    [("5", 105_120), ("1", 525_600), ("60", 8_760), ("240", 2_190), ("D", 365), ("W", 365 / 7), ("M", 12)],
)
def test_periods_per_year_is_24_7(interval, periods):
    assert periods_per_year(interval) == pytest.approx(periods)


@pytest.mark.parametrize("interval", ["", "0", "5m", "-5", "H"])
def test_unknown_interval_is_a_clear_error(interval):
    with pytest.raises(ConfigError, match="interval"):
        periods_per_year(interval)


def test_sharpe_annualises_with_sqrt_periods():
    returns = np.array([0.01, -0.005, 0.002, 0.004])
    expected = returns.mean() / returns.std(ddof=1) * math.sqrt(105_120)
    assert float(sharpe_ratio(returns, 105_120)) == pytest.approx(expected)
    assert float(sharpe_ratio(np.zeros(10), 105_120)) == 0.0
    batched = sharpe_ratio(np.stack([returns, -returns]), 105_120)
    assert batched == pytest.approx([expected, -expected])


def test_drawdown():
    equity = np.array([1.0, 1.2, 0.9, 1.3, 1.04])
    assert max_drawdown(equity) == pytest.approx(0.25)
    assert drawdown_curve(equity) == pytest.approx([0, 0, 0.25, 0, 0.2])


def test_block_bootstrap_keeps_blocks_contiguous():
    rng = np.random.default_rng(0)
    indices = block_bootstrap_indices(n=100, block=10, samples=50, rng=rng)
    assert indices.shape == (50, 100)
    steps = np.diff(indices.reshape(50, 10, 10), axis=-1) % 100
    assert (steps == 1).all()


def test_bootstrap_ci_covers_truth_and_is_paired():
    rng = np.random.default_rng(1)
    strong = rng.normal(0.002, 0.01, 5000)
    dist = bootstrap_sharpe({"a": strong, "b": strong.copy()}, periods=365, block=20, samples=400, seed=0)
    low, high = confidence_interval(dist["a"], 0.95)
    assert low < float(sharpe_ratio(strong, 365)) < high
    assert low > 0  # a mean of 0.2 sigma per bar is unmistakable in 5000 bars
    assert (dist["a"] == dist["b"]).all()  # same indices for every series
    noise = rng.normal(0, 0.01, 5000)
    low, high = confidence_interval(bootstrap_sharpe({"n": noise}, 365, 20, 400, 0)["n"], 0.95)
    assert low < 0 < high
