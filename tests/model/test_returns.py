"""λ-returns and percentile return normalisation."""

from __future__ import annotations

import pytest
import torch

from dreamer.agent.returns import ReturnNormaliser, lambda_returns


def test_lambda_returns_by_hand():
    rewards = torch.tensor([[1.0], [2.0]])  # [H=2, N=1]
    values = torch.tensor([[0.5], [1.0], [3.0]])  # [H+1, N]
    # R_1 = 2 + 0.9·(0.2·3 + 0.8·3) = 4.7 ;  R_0 = 1 + 0.9·(0.2·1 + 0.8·4.7) = 4.564
    returns = lambda_returns(rewards, values, discount=0.9, lambda_=0.8)
    assert returns[:, 0].tolist() == pytest.approx([4.564, 4.7])


def test_lambda_extremes_are_monte_carlo_and_td0():
    torch.manual_seed(0)
    rewards, values = torch.randn(6, 4), torch.randn(7, 4)
    gamma = 0.95
    monte_carlo = lambda_returns(rewards, values, gamma, 1.0)
    expected = values[-1] * gamma**6 + sum(gamma**k * rewards[k] for k in range(6))
    assert monte_carlo[0] == pytest.approx(expected, abs=1e-5)
    td0 = lambda_returns(rewards, values, gamma, 0.0)
    assert td0 == pytest.approx(rewards + gamma * values[1:], abs=1e-6)


def test_return_normaliser_tracks_percentile_range_with_floor():
    norm = ReturnNormaliser(decay=0.99, low_quantile=0.05, high_quantile=0.95, floor=1.0)
    returns = torch.linspace(-10, 10, 1001)  # P5 = -9, P95 = 9
    scale = norm.update(returns)
    assert norm.low.item() == pytest.approx(-0.09) and norm.high.item() == pytest.approx(0.09)
    assert scale.item() == 1.0  # range 0.18 is below the floor
    for _ in range(2000):
        scale = norm.update(returns)
    assert scale.item() == pytest.approx(18.0, rel=1e-3)
    small = ReturnNormaliser(0.0, 0.05, 0.95, 1.0)
    assert small.update(returns * 1e-3).item() == 1.0  # small returns are never blown up
