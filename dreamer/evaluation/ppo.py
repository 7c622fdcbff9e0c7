"""PPO baseline: a model-free agent trained on the train split's real bars, traded on a held-out split.

`train_ppo` runs Stable-Baselines3's PPO (`MlpPolicy`) on `dreamer.envs.TradingEnv` over the train split,
with the costs and funding the backtest charges, for `cfg.total_timesteps` real environment steps (rounded
up to whole rollouts of `cfg.n_steps`). `ppo_positions` replays the trained policy deterministically over a
split: one episode from the split's first row holding through data gaps, so its positions line up with the
rows of `dreamer.evaluation.backtest.evaluation_window` and go to `run_backtest` like any baseline's.

Seeding: SB3 seeds Python's, numpy's and torch's global generators; `train_ppo` restores them afterwards,
so training the baseline does not change what the rest of a run draws.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

from dreamer.envs import TradingEnv
from dreamer.envs.trading_env import ActionKind
from dreamer.evaluation.ppo_config import PPOConfig
from dreamer.features.dataset import MarketDataset, atomic_write_text
from dreamer.model.config import DreamerConfig
from dreamer.training.device import resolve_device

_DEFAULT_LEVELS = DreamerConfig().position_levels


@dataclass(frozen=True)
class PPOPolicy:
    """A trained PPO model and the trading settings it was trained with (what replaying it needs)."""

    model: PPO
    action: ActionKind
    position_levels: tuple[float, ...]  # the discrete action's levels
    cost_rate: float  # fee + slippage per unit traded: the account the policy observes pays it


def train_ppo(
    dataset: MarketDataset,
    cfg: PPOConfig,
    seed: int,
    *,
    cost_rate: float,
    position_levels: Sequence[float] = _DEFAULT_LEVELS,
    torch_threads: int | None = None,
) -> PPOPolicy:
    """PPO trained on `dataset`'s train split paying `cost_rate` per unit of position traded (pass the
    Dreamer config's `cost_rate` for the same costs) and the dataset's funding; discrete actions choose
    among `position_levels`. `torch_threads`: torch's CPU threads while training (None: left as they are).
    Deterministic for a seed on the CPU."""
    env = TradingEnv(
        dataset,
        "train",
        action=cfg.action,
        position_levels=position_levels,
        cost_rate=cost_rate,
        episode_bars=cfg.episode_bars,
        reward_scale=cfg.reward_scale,
    )
    with _torch_threads(torch_threads), _global_random_state_restored():
        model = PPO(
            "MlpPolicy",
            env,
            learning_rate=cfg.learning_rate,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            policy_kwargs={"net_arch": list(cfg.hidden_sizes)},
            seed=seed,
            device=resolve_device(cfg.device),
            verbose=0,
        )
        model.learn(total_timesteps=cfg.total_timesteps)
    return PPOPolicy(model, cfg.action, env.position_levels, env.cost_rate)


POLICY_FILE = "ppo.zip"  # SB3's own format: the policy network and its optimiser
SETTINGS_FILE = "ppo.json"  # what SB3 does not keep: the action kind, the levels and the costs


def save_ppo(policy: PPOPolicy, out_dir: str | Path) -> Path:
    """Write `policy` under `out_dir` (SB3's zip and a JSON of its trading settings); returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy.model.save(out / POLICY_FILE)
    settings = {"action": policy.action, "position_levels": list(policy.position_levels), "cost_rate": policy.cost_rate}
    atomic_write_text(out / SETTINGS_FILE, json.dumps(settings))  # written last: its presence marks a whole save
    return out


def load_ppo(model_dir: str | Path, device: str = "cpu") -> PPOPolicy:
    """The policy `save_ppo` wrote under `model_dir`."""
    model_dir = Path(model_dir)
    settings = json.loads((model_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    model = PPO.load(model_dir / POLICY_FILE, device=device)
    return PPOPolicy(model, settings["action"], tuple(settings["position_levels"]), float(settings["cost_rate"]))


def saved_ppo(model_dir: str | Path) -> bool:
    """Whether `model_dir` holds a complete `save_ppo` (a rerun reuses it instead of training again)."""
    return (Path(model_dir) / SETTINGS_FILE).exists() and (Path(model_dir) / POLICY_FILE).exists()


def ppo_positions(
    policy: PPOPolicy, dataset: MarketDataset, split: str = "test", *, torch_threads: int | None = None
) -> np.ndarray:
    """`[N]` the positions `policy` takes, deterministically, on the rows of `evaluation_window(dataset,
    split)`: decided at the close of each row from its features and the account it has built so far,
    starting flat at the split's first row."""
    env = TradingEnv(
        dataset,
        split,
        action=policy.action,
        position_levels=policy.position_levels,
        cost_rate=policy.cost_rate,
        episode_bars=None,
        hold_through_gaps=True,
    )
    positions: list[float] = []
    with _torch_threads(torch_threads):
        observation, _ = env.reset(options={"start": env.first_row})
        truncated = False
        while not truncated:
            action, _ = policy.model.predict(observation, deterministic=True)
            observation, _, _, truncated, info = env.step(action)
            positions.append(info["position"])
    return np.asarray(positions, dtype=np.float64)


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to `count` inside the block and restored after (None: untouched)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _global_random_state_restored() -> Iterator[None]:
    """Python's, numpy's and torch's (CPU and CUDA) global generators as they were before the block."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
