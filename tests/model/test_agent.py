"""The actor-critic update: reward scale, determinism, metrics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dreamer.agent.actor_critic import ActorCritic, action_share_name
from dreamer.agent.portfolio import Portfolio
from dreamer.model.config import DreamerConfig
from dreamer.orchestration.tracking import flatten_numeric
from tests.model.conftest import TINY_AGENT, constant_forecast_world_model, start_states


def train(cfg: DreamerConfig, forecast_bps: float, updates: int, seed: int = 0) -> list[dict[str, float]]:
    model = constant_forecast_world_model(TINY_AGENT, forecast_bps)  # the agent's cfg may use another reward unit
    torch.manual_seed(seed)
    agent = ActorCritic(model, cfg)
    lanes = Portfolio.flat(64)
    history = []
    for _ in range(updates):
        trajectory, metrics = agent.update(model, start_states(model, 64), lanes)
        lanes = trajectory.final_portfolio
        history.append(metrics)
    return history


@pytest.mark.slow
def test_basis_point_rewards_let_advantages_drive_the_policy():
    """A market forecast to rise 1 bp every bar, no costs: the best policy is fully long.

    The categorical REINFORCE actor (the band actor has no entropy bonus to drown). With rewards in basis
    points the normalised advantages dominate the entropy bonus and the actor learns to go long. In natural
    units the same returns sit far below the normaliser's floor of 1, the advantages (~1e-4) are smaller
    than the entropy bonus and the policy stays close to uniform."""
    cfg = dataclasses.replace(
        TINY_AGENT,
        actor_grad="reinforce",
        fee_rate=0.0,
        slippage_rate=0.0,
        actor_learning_rate=1e-3,
        critic_learning_rate=1e-3,
    )
    in_bps = train(cfg, 1.0, updates=80)[-1]
    natural = train(dataclasses.replace(cfg, return_unit=1.0), 1.0, updates=80)[-1]
    assert in_bps["actor/advantage_to_entropy"] > 10
    assert natural["actor/advantage_to_entropy"] < 1
    assert in_bps["actions/long_1"] > 0.5 and in_bps["actor/entropy"] < 1.2
    assert natural["actions/long_1"] < 0.4 and natural["actor/entropy"] > 1.4  # ln 5 = 1.61 is uniform


@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
def test_updates_are_seeded_and_report_every_metric(actor_grad):
    cfg = dataclasses.replace(TINY_AGENT, actor_grad=actor_grad)
    first, second = train(cfg, 2.0, updates=3), train(cfg, 2.0, updates=3)
    assert first == second
    expected = {
        "actor/loss",
        "actor/advantage_abs",
        "critic/loss",
        "imagined/return",
        "imagined/turnover",
        "imagined/hold_fraction",
        "return_norm/scale",
    }
    levels = {action_share_name(level) for level in cfg.position_levels}
    if actor_grad == "reinforce":
        assert len(levels) == len(cfg.position_levels)  # one name per level: +0.5 and -0.5 stay apart
        expected |= {"actor/entropy", *levels}
        assert sum(first[-1][name] for name in levels) == pytest.approx(1.0)
    assert expected <= set(first[-1])
    assert set(flatten_numeric(first[-1])) == set(first[-1])  # every name reaches MLflow as it is
    assert train(cfg, 2.0, updates=3, seed=1) != first
