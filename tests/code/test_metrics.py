"""Annualisation, ratios and the block bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dreamer.errors import ConfigError, DreamerError
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.metrics import (
    block_bootstrap_indices,
    bootstrap_sharpe,
    confidence_interval,
    drawdown_curve,
    max_drawdown,
    periods_per_year,
    sharpe_ratio,
)
from dreamer.evaluation.net_returns import NetReturns, paired_sharpe_difference
from dreamer.research.backtests import BACKTESTS_FILE, save_backtests


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


def _returns(net_return: np.ndarray, start_ms: int = 0) -> NetReturns:
    return NetReturns(open_time_ms=start_ms + 300_000 * np.arange(len(net_return)), net_return=net_return)


def test_paired_sharpe_difference_of_an_agent_with_itself_is_exactly_zero(tmp_path):
    rng = np.random.default_rng(2)
    agent = run_backtest(rng.choice([-1.0, 0.0, 1.0], 3000), rng.normal(0.0, 0.01, 3000), 0.0006)
    saved = save_backtests(tmp_path / BACKTESTS_FILE, {"agent": agent}, 300_000 * np.arange(3001))
    loaded = NetReturns.of_agent(saved)
    assert loaded.open_time_ms.dtype == np.int64 and np.array_equal(loaded.open_time_ms, 300_000 * np.arange(3000))
    assert np.array_equal(loaded.net_return, agent.net_returns)
    same = paired_sharpe_difference(loaded, loaded, 365.0, block=20, samples=200, seed=0, confidence=0.95)
    assert (same.diff, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)  # paired: the same blocks for both
    assert not same.significant


def test_paired_sharpe_difference_sees_a_small_edge_that_unpaired_intervals_miss():
    """Two agents riding the same noisy market, one earning 0.005 sigma more per bar: each Sharpe interval
    alone is wide, the paired interval of their difference excludes zero."""
    rng = np.random.default_rng(3)
    market = rng.normal(0.0, 0.01, 20_000)
    edge = 0.00005 + rng.normal(0.0, 0.0002, 20_000)
    champion, candidate = _returns(market), _returns(market + edge)
    result = paired_sharpe_difference(candidate, champion, 365.0, block=50, samples=400, seed=0, confidence=0.95)
    expected = float(sharpe_ratio(market + edge, 365.0) - sharpe_ratio(market, 365.0))
    assert result.diff == pytest.approx(expected)
    assert result.significant and result.ci_low < result.diff < result.ci_high
    alone = bootstrap_sharpe({"candidate": market + edge}, 365.0, 50, 400, 0)["candidate"]
    assert confidence_interval(alone, 0.95)[0] < 0  # the candidate's own Sharpe is not distinguishable from 0


def test_paired_sharpe_difference_needs_the_same_bars():
    rng = np.random.default_rng(4)
    returns = rng.normal(0.0, 0.01, 100)
    with pytest.raises(DreamerError, match="a paired comparison needs the same window"):
        paired_sharpe_difference(
            _returns(returns), _returns(returns, start_ms=300_000), 365.0, block=5, samples=20, seed=0, confidence=0.9
        )
