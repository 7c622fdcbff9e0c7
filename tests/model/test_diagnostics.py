"""Held-out diagnostics (`dreamer.evaluation.diagnostics`) on hand-made models whose answers are known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dreamer.agent.imagination import agent_input_size
from dreamer.agent.networks import BandActor, make_critic
from dreamer.agent.policy import TradingPolicy
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.diagnostics import TRACE_FILE, policy_diagnostics
from tests.model.conftest import TINY_AGENT, constant_forecast_world_model


def long_band_policy(forecast_bps: float) -> TradingPolicy:
    """A world model forecasting `forecast_bps` every bar and a band actor pinned to [0.5, 0.9]."""
    cfg = dataclasses.replace(TINY_AGENT, actor_grad="dynamics", imagination_horizon=4)
    model = constant_forecast_world_model(cfg, forecast_bps)
    actor = BandActor(agent_input_size(model), cfg)
    assert actor.mlp.out is not None
    with torch.no_grad():  # tanh(c − w) = 0.5, tanh(c + w) = 0.9 for every state
        centre, half = (np.arctanh(0.9) + np.arctanh(0.5)) / 2, (np.arctanh(0.9) - np.arctanh(0.5)) / 2
        actor.mlp.out.weight.zero_()
        actor.mlp.out.bias.copy_(torch.tensor([centre, np.log(np.expm1(half))]))
    return TradingPolicy(model, actor, cfg)


def test_diagnostics_of_a_constant_forecast_and_a_fixed_band(tmp_path) -> None:
    policy = long_band_policy(2.0)
    rng = np.random.default_rng(0)
    n = 200
    close = 100 * np.exp(np.cumsum(0.001 * rng.normal(size=n + 1)))
    obs = rng.normal(size=(n, policy.world_model.obs_dim)).astype(np.float32)
    positions, inputs = policy.decide(obs, close[:-1])
    assert torch.allclose(positions, torch.full((n,), 0.5))  # flat start: clipped up to the band's low edge
    backtest = run_backtest(positions.double().numpy(), np.log(close[1:] / close[:-1]), policy.cfg.cost_rate)
    critic = make_critic(agent_input_size(policy.world_model), policy.cfg).eval().requires_grad_(False)

    report = policy_diagnostics(policy, critic, inputs, backtest, tmp_path, stride=10)

    assert report["forecast"]["mean_bps"] == pytest.approx(2.0, abs=1e-3)
    assert report["forecast"]["std_bps"] == pytest.approx(0.0, abs=1e-4)
    # an untrained critic values every state at 0, so R^λ is the discounted λ-sum of the realised rewards
    rewards = 1e4 * backtest.net_log_returns
    gamma_lambda = policy.cfg.discount * policy.cfg.lambda_gae
    expected = np.zeros(n - 1)
    running = 0.0
    for t in reversed(range(n - 1)):
        running = rewards[t] + gamma_lambda * running
        expected[t] = running
    assert report["critic"]["value_mean"] == pytest.approx(0.0, abs=1e-9)
    assert report["critic"]["realised_lambda_return_mean"] == pytest.approx(expected.mean(), rel=1e-6)
    trace = np.load(tmp_path / TRACE_FILE)
    assert trace["lambda_return"] == pytest.approx(expected, rel=1e-6)
    # imagined from the same accounts, the band trades like the real bars: only the path starting flat at
    # bar 0 buys 0.5, then every path holds
    imagination = report["imagination"]
    assert imagination["starts"] == len(range(0, n - 4, 10)) and imagination["horizon"] == 4
    one_trade = 0.5 / (imagination["starts"] * 4)
    assert imagination["realised_turnover"] == pytest.approx(one_trade)
    assert imagination["imagined_turnover"] == pytest.approx(one_trade, abs=1e-7)
    # expected net of holding 0.5 at +2 bp a bar: 1 bp, less the one entry's cost spread over the paths
    entry_cost_bps = 1e4 * policy.cfg.cost_rate * one_trade
    assert imagination["imagined_expected_net_bps"] == pytest.approx(1.0 - entry_cost_bps, abs=2e-3)
