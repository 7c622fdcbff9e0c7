"""Sanity of the whole agent: world model + actor-critic in imagination + held-out backtest.

1. Zero costs, a market whose next return is predictable from the current observation: the agent must
   learn to trade it and clearly beat flat and buy-and-hold on the held-out test split.
2. A pure random walk with costs: nothing is predictable, so the agent's net result must not be
   significantly better than staying flat (a leakage detector: a look-ahead anywhere would show up as
   "profits" here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dreamer.agent.policy import TradingPolicy
from dreamer.agent.trainer import train_policy
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.report import evaluate_policy
from dreamer.features.dataset import MarketDataset
from dreamer.model.config import DreamerConfig
from dreamer.training import train_world_model
from tests.model.conftest import market_from_returns

SMALL = DreamerConfig(
    deterministic_size=32,
    stochastic_size=4,
    num_categories=8,
    hidden_size=48,
    num_bins=63,
    batch_size=16,
    sequence_length=16,
    world_model_steps=300,
    learning_rate=3e-3,
    imagination_horizon=5,
    imagination_starts=256,
    policy_steps=300,
    actor_learning_rate=1e-3,
    critic_learning_rate=1e-3,
    device="cpu",
)
SPLITS = {"train": (0, 4000), "val": (4050, 4500), "test": (4550, 6000)}  # of 6,000 bars
EVALUATION = EvaluationConfig(bootstrap_samples=200, bootstrap_block=48, random_baseline_seeds=3)


def train_and_backtest(dataset: MarketDataset, cfg: DreamerConfig, tmp_path: Path) -> dict:
    world_model = train_world_model(dataset, cfg, tmp_path / "world_model")
    agent = train_policy(world_model.checkpoint, dataset, cfg, tmp_path / "agent")
    policy = TradingPolicy.load(agent.checkpoint)
    return evaluate_policy(policy, dataset, EVALUATION, cfg.cost_rate, "5", warm_up_bars=16).report


@pytest.mark.slow
def test_agent_learns_a_predictable_market_without_costs(tmp_path):
    rng = np.random.default_rng(0)
    n = 6000
    signal = rng.normal(size=n)  # seen at the close of bar t ...
    next_returns = 0.002 * signal + 0.0005 * rng.normal(size=n)  # ... moves bar t+1
    features = np.column_stack([signal, rng.normal(size=n), rng.normal(size=n)])
    cfg = dataclasses.replace(SMALL, fee_rate=0.0, slippage_rate=0.0)
    report = train_and_backtest(market_from_returns(features, next_returns, SPLITS), cfg, tmp_path)

    agent, baselines = report["agent"], report["baselines"]
    # Trading sign(signal) every bar would make ~0.16 % a bar; anything close to it is unmistakable.
    assert agent["total_return"] > 0.5, agent
    assert agent["sharpe"] > 20, agent
    assert agent["hit_rate"] > 0.8
    for name in ("flat", "buy_and_hold"):
        assert agent["total_return"] > baselines[name]["total_return"] + 0.5
        assert report["comparison"][name]["significant"], report["comparison"][name]


@pytest.mark.slow
@pytest.mark.parametrize("leak", [False, True], ids=["causal", "leaked-control"])
def test_agent_finds_no_profit_in_a_random_walk_with_costs(tmp_path, leak):
    """The causal features (past returns, noise) hold nothing: the agent must not beat flat. The control
    leaks the next return into the features (a look-ahead bug): then the same pipeline does "find" a
    significant profit, which shows this test would catch one."""
    rng = np.random.default_rng(1)
    n = 6000
    next_returns = 0.002 * rng.normal(size=n)
    past_returns = np.concatenate([[0.0], next_returns[:-1]])  # what a real feature set sees: the past
    visible = next_returns if leak else past_returns
    features = np.column_stack([visible / 0.002, rng.normal(size=n), rng.normal(size=n)])
    report = train_and_backtest(market_from_returns(features, next_returns, SPLITS), SMALL, tmp_path)

    against_flat = report["comparison"]["flat"]
    assert against_flat["significant"] == leak, (against_flat, report["agent"])
