"""Imagination: the account carried through imagined bars is exactly the backtest's account."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dreamer.agent.imagination import imagine
from dreamer.agent.networks import Actor
from dreamer.agent.portfolio import Portfolio
from dreamer.evaluation.backtest import run_backtest
from tests.model.conftest import TINY_AGENT, constant_forecast_world_model, start_states


def test_constant_forecast_helper():
    model = constant_forecast_world_model(TINY_AGENT, 2.0)
    state = start_states(model, 5)
    assert model.predict_return(model.features(state)) == pytest.approx(torch.full((5,), 2e-4), rel=1e-4)


@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_imagined_account_is_the_backtest_account(penalty):
    cfg = dataclasses.replace(TINY_AGENT, drawdown_penalty=penalty)
    model = constant_forecast_world_model(cfg, -3.0)  # losses for longs: drawdowns happen
    torch.manual_seed(1)
    actor = Actor(model.feature_size + 3, cfg)
    start_positions = torch.tensor(cfg.position_levels)[torch.randint(5, (32,))]
    account = dataclasses.replace(Portfolio.flat(32), position=start_positions)
    traj = imagine(model, actor, start_states(model, 32), account, cfg.imagination_horizon, cfg)

    assert traj.inputs.shape == (7, 32, model.feature_size + 3)
    assert traj.actions.shape == traj.rewards.shape == (6, 32)
    for lane in range(32):
        result = run_backtest(
            traj.positions[:, lane].double().numpy(),
            traj.predicted_returns[:, lane].double().numpy(),
            cfg.cost_rate,
            initial_position=float(start_positions[lane]),
        )
        net = result.net_log_returns
        assert traj.net_returns[:, lane].numpy() == pytest.approx(net, abs=1e-7)
        log_equity = np.log(result.equity)
        drawdown_after = np.maximum.accumulate(log_equity)[1:] - log_equity[1:]  # peak includes the start
        reward = 1e4 * (net - penalty * drawdown_after)
        assert traj.rewards[:, lane].numpy() == pytest.approx(reward, abs=1e-3)
        assert traj.final_portfolio.drawdown[lane].item() == pytest.approx(drawdown_after[-1], abs=1e-7)
        assert traj.final_portfolio.position[lane].item() == result.positions[-1]


def test_unrealised_pnl_resets_when_the_position_changes():
    account = Portfolio.flat(1)
    account, first = account.step(torch.tensor([1.0]), torch.tensor([0.01]), 0.001)
    account, second = account.step(torch.tensor([1.0]), torch.tensor([0.02]), 0.001)
    assert account.unrealised.item() == pytest.approx((first + second).item())
    account, third = account.step(torch.tensor([-0.5]), torch.tensor([0.0]), 0.001)
    assert account.unrealised.item() == pytest.approx(third.item())  # a new position: only its own PnL
    account, _ = account.step(torch.tensor([0.0]), torch.tensor([0.05]), 0.001)
    assert account.unrealised.item() == 0.0
    features = account.features()
    assert features.shape == (1, 3) and features[0, 0] == 0.0


def test_deterministic_imagination_takes_the_mode():
    model = constant_forecast_world_model(TINY_AGENT, 1.0)
    actor = Actor(model.feature_size + 3, TINY_AGENT)
    start = start_states(model, 16)
    torch.manual_seed(3)
    greedy = imagine(model, actor, start, Portfolio.flat(16), 4, TINY_AGENT, sample=False)
    assert torch.equal(greedy.actions[0], actor(greedy.inputs[0]).argmax(-1))
