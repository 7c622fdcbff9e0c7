"""Imagination: the account carried through imagined bars is exactly the backtest's account."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dreamer.agent.imagination import imagine, known_funding
from dreamer.agent.networks import Actor, BandActor, make_actor
from dreamer.agent.portfolio import Portfolio
from dreamer.agent.trainer import random_positions
from dreamer.evaluation.backtest import run_backtest
from tests.model.conftest import TINY_AGENT, constant_forecast_world_model, start_states


def test_constant_forecast_helper():
    model = constant_forecast_world_model(TINY_AGENT, 2.0)
    state = start_states(model, 5)
    assert model.predict_return(model.features(state)) == pytest.approx(torch.full((5,), 2e-4), rel=1e-4)


@pytest.mark.parametrize("funded", [False, True])
@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_imagined_account_is_the_backtest_account(penalty, actor_grad, funded):
    """The account is booked on the drawn returns exactly as the backtest books realised ones; the reward is
    the backtest's net return of the same positions on the *expected* returns, less the drawdown penalty.
    Funding charged in imagination is what the backtest charges for the same rates on the same path."""
    cfg = dataclasses.replace(TINY_AGENT, drawdown_penalty=penalty, actor_grad=actor_grad)
    model = constant_forecast_world_model(cfg, -3.0)  # losses for longs: drawdowns happen
    torch.manual_seed(1)
    actor = make_actor(model.feature_size + 3, cfg)
    start_positions = random_positions(32, cfg, torch.device("cpu"))
    account = dataclasses.replace(Portfolio.flat(32), position=start_positions)
    funding = torch.zeros(cfg.imagination_horizon, 32)
    if funded:  # settlements inside imagined bars 1 and 4, at rates up to ±50 bp (a crash's)
        funding[[1, 4]] = torch.empty(2, 32).uniform_(-5e-3, 5e-3)
    with torch.no_grad():
        traj = imagine(model, actor, start_states(model, 32), account, cfg.imagination_horizon, cfg, funding=funding)

    assert traj.inputs.shape == (7, 32, model.feature_size + 3)
    assert traj.positions.shape == traj.rewards.shape == traj.market_returns.shape == (6, 32)
    assert (traj.actions is None) == (actor_grad == "dynamics")
    assert traj.market_returns.std() > 0  # drawn, not the constant forecast
    for lane in range(32):
        positions = traj.positions[:, lane].double().numpy()
        start = float(start_positions[lane])
        rates = funding[:, lane].double().numpy()
        booked = run_backtest(
            positions, traj.market_returns[:, lane].double().numpy(), cfg.cost_rate, start, funding_rates=rates
        )
        expected = run_backtest(
            positions, traj.predicted_returns[:, lane].double().numpy(), cfg.cost_rate, start, funding_rates=rates
        )
        assert traj.net_returns[:, lane].numpy() == pytest.approx(booked.net_log_returns, abs=1e-7)
        log_equity = np.log(booked.equity)
        drawdown_after = np.maximum.accumulate(log_equity)[1:] - log_equity[1:]  # peak includes the start
        reward = 1e4 * (expected.net_log_returns - penalty * drawdown_after)
        assert traj.rewards[:, lane].numpy() == pytest.approx(reward, abs=1e-3)
        assert traj.final_portfolio.drawdown[lane].item() == pytest.approx(drawdown_after[-1], abs=1e-7)
        assert traj.final_portfolio.position[lane].item() == pytest.approx(booked.positions[-1])


def test_imagined_funding_is_the_rate_known_at_the_start_on_the_settlement_schedule():
    """Each imagined bar charges the rate settled last by the start bar's close, once per settlement the
    bar holds; rates settled later (unknown at the start) are never used."""
    known_rate = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) * 1e-4  # [R] changes at every row
    next_settlements = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0, 0.0])  # [R] the bar after row r holds these
    charged = known_funding(known_rate, next_settlements, torch.tensor([0, 3, 5]), horizon=3)  # [H, N]
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # bars after rows 0, 3, 5
            [1.0, 2 * 4.0, 0.0],  # after rows 1, 4, 5 (the dataset's last row repeats: no bar after it)
            [0.0, 0.0, 0.0],  # after rows 2, 5, 5
        ]
    )
    assert charged == pytest.approx(expected * 1e-4)


def test_band_actor_holds_inside_its_band_and_moves_to_the_nearest_edge():
    actor = BandActor(4, TINY_AGENT)
    x = torch.zeros(3, 4)
    low, high = actor(x)
    assert torch.all(low < high) and torch.all(low > -1) and torch.all(high < 1)
    assert high[0].item() == pytest.approx(0.05, abs=1e-6)  # the narrow initial band
    held = torch.tensor([-0.8, 0.01, 0.9])
    position, index = actor.act(x, held)
    assert index is None
    assert position.tolist() == pytest.approx([low[0].item(), 0.01, high[2].item()])


def test_the_band_actor_gets_the_exact_pnl_gradient():
    """One imagined bar: the reward 1e4·log(1 + a·(e^r̂ − 1) − c·|a − held|) differentiated through the
    band, a = clip(held, low, high), by hand."""
    cfg = dataclasses.replace(TINY_AGENT, actor_grad="dynamics")
    model = constant_forecast_world_model(cfg, 2.0)  # +2 bp expected every bar
    actor = BandActor(model.feature_size + 3, cfg)
    held = torch.full((8,), 0.5, requires_grad=True)
    account = dataclasses.replace(Portfolio.flat(8), position=held)
    traj = imagine(model, actor, start_states(model, 8), account, 1, cfg)
    traj.rewards.sum().backward()

    high = traj.positions[0, 0].item()  # held 0.5 lies above the initial band: clipped to its upper edge
    assert high == pytest.approx(0.05, abs=1e-6)
    gain = np.expm1(2e-4)
    growth = 1 + high * gain - cfg.cost_rate * (0.5 - high)
    # a lower upper edge sells more: each unit held less saves nothing of the cost already being paid
    assert held.grad == pytest.approx(torch.full((8,), -1e4 * cfg.cost_rate / growth), rel=1e-4)
    d_reward_d_high = 1e4 * (gain + cfg.cost_rate) / growth  # a higher edge: more drift, less sold
    d_high_d_centre = 1 - high**2  # high = tanh(centre + w)
    assert actor.mlp.out.bias.grad[0].item() == pytest.approx(8 * d_reward_d_high * d_high_d_centre, rel=1e-3)


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
    cfg = dataclasses.replace(TINY_AGENT, actor_grad="reinforce")
    with torch.no_grad():
        greedy = imagine(model, actor, start, Portfolio.flat(16), 4, cfg, sample=False)
    assert greedy.actions is not None and torch.equal(greedy.actions[0], actor(greedy.inputs[0]).argmax(-1))


def test_an_account_is_recovered_from_its_features():
    account = Portfolio(torch.tensor([-0.5, 1.0]), torch.tensor([-0.0123, 0.004]), torch.tensor([0.02, 0.0]))
    back = Portfolio.from_features(account.features())
    for field in ("position", "unrealised", "drawdown"):
        assert getattr(back, field) == pytest.approx(getattr(account, field), rel=1e-5, abs=1e-9)
