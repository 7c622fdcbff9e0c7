"""The backtest's arithmetic, checked against a 5-bar example computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamer.evaluation.backtest import BacktestError, evaluation_window, run_backtest
from dreamer.evaluation.config import BACKTEST_METRICS
from dreamer.evaluation.metrics import compute_metrics, periods_per_year
from dreamer.features.dataset import MarketDataset
from dreamer.trading import net_log_return

# Closes of 5 bars and the positions decided at the first 4 closes (each held over the next bar).
CLOSES = np.array([100.0, 110.0, 99.0, 99.0, 108.9])  # simple returns +10 %, -10 %, 0, +10 %
POSITIONS = np.array([1.0, -1.0, 0.0, 0.5])
COST = 0.001


def hand_example():
    return run_backtest(POSITIONS, np.log(CLOSES[1:] / CLOSES[:-1]), COST)


def test_hand_computed_equity_and_fees():
    result = hand_example()
    # Growth per bar = 1 + p * simple return - cost * |Δp|:
    #   bar 1: 1 + 0.10 - 0.001*1 = 1.099     bar 2: 1 + 0.10 - 0.001*2 = 1.098
    #   bar 3: 1 + 0    - 0.001*1 = 0.999     bar 4: 1 + 0.05 - 0.001*0.5 = 1.0495
    expected_equity = [1.0, 1.099, 1.206702, 1.205495298, 1.265167315251]
    assert result.equity == pytest.approx(expected_equity, rel=1e-12)
    # Fees are cost * |Δp| * equity before the bar: 0.001 + 0.002*1.099 + 0.001*1.206702 + 0.0005*1.205495298
    assert result.fees == pytest.approx([0.001, 0.002198, 0.001206702, 0.000602747649], rel=1e-12)
    assert result.gross_equity[-1] == pytest.approx(1.1 * 1.1 * 1.0 * 1.05, rel=1e-12)
    assert result.net_returns == pytest.approx([0.099, 0.098, -0.001, 0.0495], rel=1e-12)


def test_hand_computed_metrics():
    periods = periods_per_year("D")
    metrics = compute_metrics(hand_example(), periods)
    net = [0.099, 0.098, -0.001, 0.0495]
    mean = sum(net) / 4  # 0.061375
    std = math.sqrt(sum((r - mean) ** 2 for r in net) / 3)  # sample std
    final = 1.265167315251
    cagr = final ** (365 / 4) - 1
    assert metrics["total_return"] == pytest.approx(final - 1, rel=1e-12)
    assert metrics["gross_return"] == pytest.approx(0.2705, rel=1e-12)
    assert metrics["fees_paid"] == pytest.approx(0.005007449649, rel=1e-12)
    assert metrics["num_trades"] == 4
    assert metrics["turnover"] == pytest.approx((1 + 2 + 1 + 0.5) / 4)
    assert metrics["annual_turnover"] == pytest.approx(1.125 * 365)
    assert metrics["exposure"] == pytest.approx(0.75)
    assert metrics["mean_abs_position"] == pytest.approx(2.5 / 4)
    assert metrics["hit_rate"] == pytest.approx(1.0)  # the 3 bars in the market all made money
    assert metrics["max_drawdown"] == pytest.approx(0.001, rel=1e-9)  # only bar 3 lost: the fee
    assert metrics["sharpe"] == pytest.approx(mean / std * math.sqrt(365), rel=1e-12)
    assert metrics["volatility"] == pytest.approx(std * math.sqrt(365), rel=1e-12)
    assert metrics["sortino"] == pytest.approx(mean / math.sqrt(0.001**2 / 4) * math.sqrt(365), rel=1e-12)
    assert metrics["cagr"] == pytest.approx(cagr, rel=1e-9)
    assert metrics["calmar"] == pytest.approx(cagr / 0.001, rel=1e-6)
    assert metrics["num_bars"] == 4


def test_backtest_pnl_is_the_shared_reward_definition():
    """The backtest compounds exactly `dreamer.trading.net_log_return`, the function the imagined reward uses."""
    rng = np.random.default_rng(0)
    returns = rng.normal(0, 0.01, 500)
    positions = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 500)
    result = run_backtest(positions, returns, 0.00065)
    previous = np.concatenate([[0.0], positions[:-1]])
    expected = net_log_return(previous, positions, returns, 0.00065)
    assert result.net_log_returns == pytest.approx(expected, rel=1e-9, abs=1e-15)
    as_torch = net_log_return(torch.tensor(previous), torch.tensor(positions), torch.tensor(returns), 0.00065)
    assert as_torch.numpy() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # First order it is position * return - cost * |Δposition| (the form).
    first_order = positions * returns - 0.00065 * np.abs(positions - previous)
    assert np.abs(expected - first_order).max() < 1e-3


def test_flat_and_buy_and_hold_identities():
    returns = np.log(np.array([1.01, 0.98, 1.03]))
    flat = compute_metrics(run_backtest(np.zeros(3), returns, 0.001), 105_120)
    assert flat["total_return"] == 0 and flat["sharpe"] == 0 and flat["sortino"] == 0 and flat["calmar"] == 0
    assert flat["hit_rate"] is None and flat["num_trades"] == 0 and flat["fees_paid"] == 0
    hold = run_backtest(np.ones(3), returns, 0.001)
    assert hold.equity[-1] == pytest.approx((1 - 0.001 + 0.01) * 0.98 * 1.03)  # one entry fee, then the market


def test_the_metric_names_a_config_may_use_are_the_computed_ones():
    metrics = compute_metrics(run_backtest(np.ones(3), np.zeros(3), 0.001), 105_120)
    assert tuple(metrics) == BACKTEST_METRICS


def test_rejects_misaligned_or_non_finite_input():
    with pytest.raises(BacktestError):
        run_backtest(np.zeros(3), np.zeros(4), 0.001)
    with pytest.raises(BacktestError):
        run_backtest(np.array([0.0, np.nan]), np.zeros(2), 0.001)
    with pytest.raises(BacktestError):
        run_backtest(np.zeros(0), np.zeros(0), 0.001)


def test_evaluation_window_holds_through_gaps():
    n = 10
    close = np.linspace(100, 109, n)
    nlr = [*np.log(close[1:] / close[:-1]).tolist(), np.nan]
    nlr[6] = np.nan  # bar 7 is missing after row 6: row 7 is the next available bar
    dataset = MarketDataset.from_arrays(
        open_time_ms=np.arange(n) * 300_000,
        close=close,
        features=np.random.default_rng(0).normal(size=(n, 2)),
        next_log_return=np.array(nlr),
        segment_id=np.array([0] * 7 + [1] * 3),
        feature_names=["a", "b"],
        splits={"train": (0, 4), "val": (4, 4), "test": (4, 10)},
    )
    window = evaluation_window(dataset, "test")
    assert window.rows.tolist() == [4, 5, 6, 7, 8]
    assert window.log_returns == pytest.approx(np.log(close[5:] / close[4:-1]))  # row 6 earns the gap move
    assert len(window.open_time_ms) == len(window.rows) + 1
