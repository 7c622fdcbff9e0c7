"""Code tier: `PPOConfig` accepts its defaults and refuses values out of range, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dreamer.errors import ConfigError
from dreamer.evaluation.ppo_config import PPOConfig


def test_the_defaults_are_valid() -> None:
    cfg = PPOConfig()
    assert not cfg.enabled and cfg.batch_size <= cfg.n_steps and cfg.action == "discrete"


def test_reading_the_config_imports_neither_torch_nor_stable_baselines3() -> None:
    probe = (
        "import sys, dreamer.evaluation.ppo_config; print(sorted({'torch', 'stable_baselines3'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"total_timesteps": 0}, r"ppo\.total_timesteps must be in \[1, "),
        ({"n_steps": 1}, r"ppo\.n_steps must be in \[2, "),
        ({"batch_size": 4096}, r"ppo\.batch_size \(4096\) must be <= n_steps"),
        ({"n_epochs": 0}, r"ppo\.n_epochs"),
        ({"episode_bars": 0}, r"ppo\.episode_bars"),
        ({"learning_rate": 0.0}, r"ppo\.learning_rate"),
        ({"gamma": 1.5}, r"ppo\.gamma"),
        ({"gae_lambda": -0.1}, r"ppo\.gae_lambda"),
        ({"clip_range": 0.0}, r"ppo\.clip_range"),
        ({"ent_coef": -1.0}, r"ppo\.ent_coef"),
        ({"hidden_sizes": ()}, r"ppo\.hidden_sizes"),
        ({"hidden_sizes": (64, 0)}, r"ppo\.hidden_sizes"),
        ({"action": "market"}, r"ppo\.action"),
        ({"reward_scale": 0.0}, r"ppo\.reward_scale"),
        ({"device": "tpu"}, r"ppo\.device"),
    ],
)
def test_out_of_range_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PPOConfig(**overrides)  # type: ignore[arg-type]
