"""The agent checkpoint and `TradingPolicy`: self-contained, causal, resumable, and its account is the
backtest's account."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.agent.checkpoint import AgentCheckpointError, load_checkpoint
from dreamer.agent.policy import TradingPolicy
from dreamer.agent.trainer import train_policy
from dreamer.evaluation.backtest import run_backtest
from dreamer.features.dataset import MarketDataset
from dreamer.training import train_world_model
from dreamer.training.device import single_threaded
from tests.model.conftest import TINY, market_from_returns

# The categorical actor: after a few updates its decisions already depend on the state, which the causality
# test needs to see (an untrained band actor starts flat inside its band and holds flat).
CFG = dataclasses.replace(
    TINY,
    actor_grad="reinforce",
    world_model_steps=5,
    imagination_horizon=4,
    imagination_starts=16,
    policy_steps=6,
    actor_learning_rate=1e-3,
    critic_learning_rate=1e-3,
)


@pytest.fixture(scope="module")
def dataset() -> MarketDataset:
    rng = np.random.default_rng(0)
    n = 400
    returns = 0.003 * rng.normal(size=n)
    return market_from_returns(
        features=np.column_stack([np.concatenate([[0.0], returns[:-1]]), rng.normal(size=n)]),
        next_returns=returns,
        splits={"train": (0, 250), "val": (260, 300), "test": (310, n)},
        feature_names=["ret_1", "noise"],
        meta={"symbol": "TEST", "interval": "5"},
    )


@pytest.fixture(scope="module")
def world_model_checkpoint(dataset, tmp_path_factory) -> Path:
    with single_threaded():
        return train_world_model(dataset, CFG, tmp_path_factory.mktemp("wm")).checkpoint


@pytest.fixture(scope="module")
def agent_checkpoint(dataset, world_model_checkpoint, tmp_path_factory) -> Path:
    with single_threaded():
        return train_policy(world_model_checkpoint, dataset, CFG, tmp_path_factory.mktemp("agent")).checkpoint


def test_checkpoint_is_self_contained(agent_checkpoint, dataset):
    saved = load_checkpoint(agent_checkpoint)
    assert saved["step"] == CFG.policy_steps
    assert saved["feature_names"] == list(dataset.feature_names)
    assert saved["normaliser"]["mean"] == pytest.approx(dataset.normaliser.mean.tolist())
    assert {"world_model", "actor_critic", "optimizer", "config", "world_model_config", "rng", "lanes"} <= set(saved)
    policy = TradingPolicy.load(agent_checkpoint.parent)  # the directory works too
    assert policy.feature_names == dataset.feature_names
    assert policy.meta["symbol"] == "TEST"


def test_positions_are_levels_deterministic_and_causal(agent_checkpoint, dataset):
    rows = slice(*dataset.splits["test"])
    obs, close = dataset.obs[rows], dataset.close[rows]
    first = TradingPolicy.load(agent_checkpoint).target_positions(obs, close)
    again = TradingPolicy.load(agent_checkpoint).target_positions(obs, close)
    assert first.shape == (len(close),)
    assert set(np.unique(first)) <= set(CFG.position_levels)
    assert np.array_equal(first, again)

    k = 40  # rewrite the future after bar k: decisions up to k must not move
    future_obs, future_close = obs.copy(), close.copy()
    future_obs[k + 1 :] = np.random.default_rng(9).normal(size=future_obs[k + 1 :].shape)
    future_close[k + 1 :] *= 1.5
    altered = TradingPolicy.load(agent_checkpoint).target_positions(future_obs, future_close)
    assert np.array_equal(altered[: k + 1], first[: k + 1])
    assert not np.array_equal(altered, first)  # the policy does react to what it sees


def test_the_policys_account_is_the_backtests_account(agent_checkpoint, dataset):
    rows = slice(*dataset.splits["test"])
    obs, close = dataset.obs[rows], dataset.close[rows]
    policy = TradingPolicy.load(agent_checkpoint)
    policy.warm_up(dataset.obs[rows.start - 8 : rows.start])
    positions = np.concatenate(
        [policy.target_positions(obs[:30], close[:30]), policy.target_positions(obs[30:], close[30:])]
    )
    # Booked so far: every bar but the last decision's (its return is not known yet).
    result = run_backtest(positions[:-1], np.log(close[1:] / close[:-1]), CFG.cost_rate)
    log_equity = np.log(result.equity)
    assert policy.portfolio.drawdown.item() == pytest.approx(log_equity.max() - log_equity[-1], abs=1e-5)
    assert policy.portfolio.position.item() == positions[-2]
    assert policy.position == positions[-2]


def test_training_resumes_exactly(dataset, world_model_checkpoint, tmp_path):
    straight = train_policy(world_model_checkpoint, dataset, CFG, tmp_path / "straight", checkpoint_every=3)
    half = dataclasses.replace(CFG, policy_steps=3)
    train_policy(world_model_checkpoint, dataset, half, tmp_path / "resumed", checkpoint_every=3)
    with (tmp_path / "resumed" / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 4, "actor/loss": 1.0}\n{"step": 5, "act')  # updates lost in a crash
    resumed = train_policy(world_model_checkpoint, dataset, CFG, tmp_path / "resumed", checkpoint_every=3)
    assert resumed.steps == straight.steps == CFG.policy_steps
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key, value in a["actor_critic"].items():
        assert torch.equal(value, b["actor_critic"][key]), key

    def lines(path: Path) -> list[dict]:
        return [
            {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in path.read_text().splitlines()
        ]

    assert lines(straight.metrics_path) == lines(resumed.metrics_path)


def test_a_rerun_of_finished_training_reports_the_same_final_metrics(dataset, world_model_checkpoint, tmp_path):
    """A run killed after the policy stage reruns it from its final checkpoint: no update is left to do, so
    the final metrics must come from the checkpoint (the rerun's report would otherwise say `{}`)."""
    first = train_policy(world_model_checkpoint, dataset, CFG, tmp_path)
    again = train_policy(world_model_checkpoint, dataset, CFG, tmp_path)
    assert again.steps == first.steps == CFG.policy_steps
    assert first.final_metrics and again.final_metrics == first.final_metrics


def test_resume_refuses_another_config(dataset, world_model_checkpoint, tmp_path):
    train_policy(world_model_checkpoint, dataset, dataclasses.replace(CFG, policy_steps=1), tmp_path)
    with pytest.raises(AgentCheckpointError, match="entropy_coef"):
        train_policy(world_model_checkpoint, dataset, dataclasses.replace(CFG, entropy_coef=0.5), tmp_path)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AgentCheckpointError, match="not a readable agent checkpoint"):
        TradingPolicy.load(tmp_path)
    with pytest.raises(AgentCheckpointError, match="does not exist"):
        TradingPolicy.load(tmp_path / "missing.pt")


# --- model selection on the val split and warm start ------------------------------------------

SELECTING = dataclasses.replace(CFG, policy_steps=8, policy_validate_every=2)


def test_the_policy_with_the_best_val_backtest_is_kept(dataset, world_model_checkpoint, tmp_path):
    result = train_policy(world_model_checkpoint, dataset, SELECTING, tmp_path)
    lines = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    scores = {line["step"]: line["val/sharpe"] for line in lines if "val/sharpe" in line}
    assert sorted(scores) == [2, 4, 6, 8]
    best_step = max(scores, key=lambda step: (scores[step], -step))  # the first of equal scores is kept
    final = result.final_metrics
    assert final["selection/best_step"] == best_step
    # The kept actor re-scored on the val split trades exactly as it did when it was selected.
    assert final["val/sharpe"] == final["selection/best_score"] == scores[best_step]


def test_the_val_backtest_is_the_evaluations_backtest_on_the_val_split(dataset, agent_checkpoint):
    from dreamer.agent.validation import ValidationBacktest
    from dreamer.evaluation.config import EvaluationConfig
    from dreamer.evaluation.report import evaluate_policy

    policy = TradingPolicy.load(agent_checkpoint)
    scored = ValidationBacktest(policy.world_model, dataset, CFG).score(policy.actor)
    evaluated = evaluate_policy(
        policy,
        dataset,
        EvaluationConfig(bootstrap_samples=10),
        CFG.cost_rate,
        "5",
        split="val",
        warm_up_bars=CFG.sequence_length,
        seed=CFG.seed,
    )
    assert scored["val/sharpe"] == pytest.approx(evaluated.report["agent"]["sharpe"], abs=1e-9)
    assert scored["val/total_return"] == pytest.approx(evaluated.report["agent"]["total_return"], abs=1e-12)


def test_a_warm_start_begins_from_the_given_actor_critic(dataset, world_model_checkpoint, agent_checkpoint, tmp_path):
    no_steps = dataclasses.replace(CFG, policy_steps=0, seed=5)
    warm = train_policy(world_model_checkpoint, dataset, no_steps, tmp_path / "warm", init_from=agent_checkpoint)
    source = load_checkpoint(agent_checkpoint)["actor_critic"]
    started = load_checkpoint(warm.checkpoint)["actor_critic"]
    assert all(torch.equal(source[key], started[key]) for key in source)

    wider = dataclasses.replace(no_steps, hidden_size=CFG.hidden_size * 2)
    wider_wm = train_world_model(dataset, dataclasses.replace(wider, world_model_steps=1), tmp_path / "wm")
    with pytest.raises(AgentCheckpointError, match="warm-start"):
        train_policy(wider_wm.checkpoint, dataset, wider, tmp_path / "wider", init_from=agent_checkpoint)


def test_a_warm_started_actor_critic_that_training_does_not_improve_is_kept(
    dataset, world_model_checkpoint, agent_checkpoint, tmp_path, monkeypatch
):
    from dreamer.agent.validation import ValidationBacktest

    scripted = iter([3.0, 1.0, 2.0, 0.5, 0.0])  # step 0 (the warm start), 2, 4, 6; then the final re-score
    real = ValidationBacktest.score
    monkeypatch.setattr(
        ValidationBacktest, "score", lambda self, actor: {**real(self, actor), "val/sharpe": next(scripted)}
    )
    cfg = dataclasses.replace(SELECTING, policy_steps=6)
    warm = train_policy(world_model_checkpoint, dataset, cfg, tmp_path, init_from=agent_checkpoint)
    assert warm.final_metrics["selection/best_step"] == 0 and warm.steps == 6
    source = load_checkpoint(agent_checkpoint)["actor_critic"]
    kept = load_checkpoint(warm.checkpoint)["actor_critic"]
    assert all(torch.equal(source[key], kept[key]) for key in source)
