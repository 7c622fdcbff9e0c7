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
from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import twohot_encode
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel

TINY = DreamerConfig(
    deterministic_size=16,
    stochastic_size=4,
    num_categories=4,
    hidden_size=16,
    num_bins=63,
    batch_size=4,
    sequence_length=8,
    imagination_horizon=6,
    imagination_starts=32,
)


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def constant_forecast_world_model(cfg: DreamerConfig, bps: float, obs_dim: int = 3) -> WorldModel:
    """A world model whose return head forecasts `bps` basis points for every state (zero output weights,
    bias = log of the twohot code of the forecast)."""
    torch.manual_seed(0)
    model = WorldModel(obs_dim, cfg)
    head = model.reward.mlp.out
    assert head is not None
    code = twohot_encode(torch.tensor(bps), model.reward.bins)  # [K]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.where(code > 0, code.clamp_min(1e-30).log(), torch.tensor(-1e4)))
    return model.eval().requires_grad_(False)


def start_states(model: WorldModel, n: int) -> RSSMState:
    with torch.no_grad():
        return model.observe(torch.randn(1, n, model.obs_dim)).flatten()


def test_constant_forecast_helper():
    model = constant_forecast_world_model(TINY, 2.0)
    state = start_states(model, 5)
    assert model.predict_return(model.features(state)) == pytest.approx(torch.full((5,), 2e-4), rel=1e-4)


@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_imagined_account_is_the_backtest_account(penalty):
    cfg = dataclasses.replace(TINY, drawdown_penalty=penalty)
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
    model = constant_forecast_world_model(TINY, 1.0)
    actor = Actor(model.feature_size + 3, TINY)
    start = start_states(model, 16)
    torch.manual_seed(3)
    greedy = imagine(model, actor, start, Portfolio.flat(16), 4, TINY, sample=False)
    assert torch.equal(greedy.actions[0], actor(greedy.inputs[0]).argmax(-1))
