"""Configuration of the PPO baseline (`dreamer.evaluation.ppo`): a model-free agent trained on the same
market, costs and funding as the Dreamer agent, for comparison. No torch or stable-baselines3 here, so a
config can be read and checked without them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dreamer.errors import require, require_in_range

DEFAULT_REWARD_SCALE = 100.0
"""Reward = net log return × 100 (percent). A 5-minute bar moves ~0.1-0.3 %, so rewards are O(1), the scale
PPO's default learning rate, value loss and clipping are tuned for. Measured on the market of
tests/model/test_ppo.py (the sign of the next move is a feature; discrete actions, 4,096 steps, seed 0): × 100
and × 1e4 (basis points) both reached the oracle's net return; natural units (× 1) lost money."""

# The upper bounds lie far above any useful value: they turn a typo into an error naming the key.
_BOUNDS = {
    "total_timesteps": (1, 1_000_000_000),
    "n_steps": (2, 10_000_000),
    "batch_size": (2, 10_000_000),
    "n_epochs": (1, 1_000),
    "episode_bars": (1, 100_000_000),
}


@dataclass(frozen=True)
class PPOConfig:
    """Stable-Baselines3 PPO (`MlpPolicy`) on `dreamer.envs.TradingEnv` over the train split.

    The budget is `total_timesteps` real environment steps (bars traded), collected `n_steps` at a time
    between updates of `n_epochs` passes in minibatches of `batch_size`; the rest are SB3's names and
    defaults. Episodes of `episode_bars` bars start at random rows and end before data gaps."""

    # Whether `dreamer run` trains and reports the baseline `ppo` (its own pipeline stage; read by the caller,
    # not by train_ppo). Off by default: 200k steps cost minutes on a CPU; the demo config turns it on.
    enabled: bool = False
    total_timesteps: int = 200_000
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    hidden_sizes: tuple[int, ...] = (64, 64)  # of the policy and of the value network (separate)
    episode_bars: int = 2048
    action: Literal["discrete", "continuous"] = "discrete"  # position levels of the Dreamer config, or [-1, 1]
    reward_scale: float = DEFAULT_REWARD_SCALE
    device: str = "auto"  # auto (CUDA when present, else the CPU) | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        require_in_range(self, "ppo", _BOUNDS)
        require(self.batch_size <= self.n_steps, f"ppo.batch_size ({self.batch_size}) must be <= n_steps")
        require(0.0 < self.learning_rate <= 1.0, f"ppo.learning_rate must be in (0, 1], got {self.learning_rate}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"ppo.{name} must be in [0, 1], got {value}")
        require(0.0 < self.clip_range <= 1.0, f"ppo.clip_range must be in (0, 1], got {self.clip_range}")
        require(self.ent_coef >= 0.0, f"ppo.ent_coef must be >= 0, got {self.ent_coef}")
        require(
            len(self.hidden_sizes) >= 1 and all(1 <= size <= 16_384 for size in self.hidden_sizes),
            f"ppo.hidden_sizes must be one or more layer widths in [1, 16,384], got {self.hidden_sizes}",
        )
        require(
            self.action in ("discrete", "continuous"), f"ppo.action must be discrete or continuous, got {self.action!r}"
        )
        require(0.0 < self.reward_scale <= 1e6, f"ppo.reward_scale must be in (0, 1,000,000], got {self.reward_scale}")
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"ppo.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
