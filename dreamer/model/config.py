"""`DreamerConfig`: every hyperparameter of the world model, the actor-critic and their training.

Names and defaults follow the seed's `DreamerConfig` (deterministic_size 200, stochastic_size 30,
num_categories 32, hidden_size 200, imagination_horizon 15, kl_balance_alpha 0.8, free_bits 1.0,
discount 0.99, lambda_gae 0.95, learning_rate 3e-4) plus the DreamerV3 extras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from dreamer.errors import require, require_in_range

# Ranges of the counts, sizes and costs. The upper bounds lie far above any useful value: they turn a typo
# (`hidden_size: 100000000`, `world_model_steps: 1.0e+20`) into an error naming the key instead of an
# out-of-memory crash or a run that never ends.
_BOUNDS = {
    "deterministic_size": (1, 16_384),
    "stochastic_size": (1, 1_024),
    "num_categories": (1, 1_024),
    "hidden_size": (1, 16_384),
    "mlp_layers": (1, 64),
    "num_bins": (3, 4_095),
    "batch_size": (1, 16_384),
    "sequence_length": (1, 100_000),
    "world_model_steps": (0, 100_000_000),
    "imagination_horizon": (1, 1_000),
    "imagination_starts": (1, 1_048_576),
    "policy_steps": (0, 100_000_000),
    "world_model_validate_every": (0, 100_000_000),
    "policy_validate_every": (0, 100_000_000),
    "early_stopping_patience": (0, 1_000_000),
    "seed": (0, 2**32 - 1),  # 32 bits: a seed every generator accepts
    "fee_rate": (0, 0.1),  # per unit traded; Bybit's taker fee is 0.00055
    "slippage_rate": (0, 0.1),
}


@dataclass(frozen=True)
class DreamerConfig:
    # --- world model: RSSM -------------------------------------------------------------------
    deterministic_size: int = 200
    stochastic_size: int = 30  # number of categorical latents
    num_categories: int = 32  # classes per latent
    hidden_size: int = 200  # width of every MLP
    mlp_layers: int = 2
    unimix: float = 0.01  # uniform mixture on every categorical (latents and actions)
    world_model_uses_action: bool = False  # a price taker's market ignores our actions (see README)
    # --- world model: losses -----------------------------------------------------------------
    kl_formulation: Literal["balance", "dreamerv3"] = "dreamerv3"
    kl_balance_alpha: float = 0.8  # "balance": alpha*KL[sg(q)||p] + (1-alpha)*KL[q||sg(p)]
    free_bits: float = 1.0  # nats, clipped per time step
    beta_dyn: float = 0.5  # "dreamerv3": weight of KL[sg(q)||p]
    beta_rep: float = 0.1  # "dreamerv3": weight of KL[q||sg(p)]
    beta_pred: float = 1.0
    num_bins: int = 255  # twohot bins, symlog-spaced
    bins_low: float = -20.0
    bins_high: float = 20.0
    return_unit: float = 1e4  # rewards/returns enter the twohot heads in basis points
    # --- world model: optimisation ------------------------------------------------------------
    learning_rate: float = 3e-4
    adam_eps: float = 1e-8
    grad_clip: float = 1000.0
    batch_size: int = 16
    sequence_length: int = 64
    world_model_steps: int = 5000
    # --- actor-critic in imagination -----------------------------------------------------------
    imagination_horizon: int = 15
    imagination_starts: int = 1024  # start states per policy update, drawn from the batch's B·T posteriors
    discount: float = 0.99
    lambda_gae: float = 0.95
    # How the actor learns (dreamer/agent/networks.py, docs/experiments.md):
    #   dynamics:  a deterministic no-trade band, trained by backpropagating the λ-return through the PnL
    #              (DreamerV1/V2's "dynamics" gradient; exact here: the market path ignores our position)
    #   reinforce: DreamerV3's categorical policy over position_levels, REINFORCE with the critic as baseline.
    # Not DreamerV3's discrete default: with real costs the REINFORCE actor settled on "flat" on every
    # known-answer market (a regime-switching drift whose Bayes-filter oracle earns Sharpe ~14-18).
    actor_grad: Literal["dynamics", "reinforce"] = "dynamics"
    position_levels: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)  # the reinforce actor's choices
    actor_learning_rate: float = 3e-5
    critic_learning_rate: float = 3e-5
    actor_grad_clip: float = 100.0
    critic_grad_clip: float = 100.0
    entropy_coef: float = 0.1  # not DreamerV3's 3e-4: see dreamer/agent/actor_critic.py
    critic_ema_decay: float = 0.98
    critic_ema_regulariser: float = 1.0
    return_norm_decay: float = 0.99
    return_norm_low: float = 0.05
    return_norm_high: float = 0.95
    return_norm_floor: float = 1.0
    policy_steps: int = 5000
    # --- model selection on the validation split (not in DreamerV3, which trains online for a fixed budget) ---
    # Every `*_validate_every` updates the world model is scored by its loss on the val split and the policy by
    # the net Sharpe ratio of a backtest on the val split; training keeps the best weights seen (the last ones
    # when the score never improves on the first) and stops after `early_stopping_patience` validations
    # without improvement (0: never stops early). 0 turns validation off: the full step count, the last weights.
    world_model_validate_every: int = 0
    policy_validate_every: int = 0
    early_stopping_patience: int = 0
    # The share of a stage's updates before which it never stops early. Measured (bench/bench_daily.py, day 1,
    # from scratch on a year of BTCUSDT): without it the policy stopped at update 500 of 1,200 while it had not
    # left its initial flat band yet (val Sharpe exactly 0 at every validation), which is no verdict on the data.
    early_stopping_warmup: float = 0.0
    # --- trading costs: shared by the imagined reward and the backtest ------------------------
    fee_rate: float = 0.00055  # Bybit linear-perpetual taker fee
    slippage_rate: float = 0.0001
    drawdown_penalty: float = 0.0
    # --- run -----------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        require_in_range(self, "dreamer", _BOUNDS)
        for name in (
            "unimix",
            "kl_balance_alpha",
            "discount",
            "lambda_gae",
            "critic_ema_decay",
            "return_norm_decay",
            "return_norm_low",
            "return_norm_high",
            "early_stopping_warmup",
        ):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"dreamer.{name} must be in [0, 1], got {value}")
        require(self.unimix < 1.0, "dreamer.unimix must be < 1")
        require(self.return_norm_low < self.return_norm_high, "dreamer.return_norm_low must be < return_norm_high")
        for name in (
            "free_bits",
            "beta_dyn",
            "beta_rep",
            "beta_pred",
            "entropy_coef",
            "critic_ema_regulariser",
            "drawdown_penalty",
            "return_norm_floor",
        ):
            require(getattr(self, name) >= 0.0, f"dreamer.{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "learning_rate",
            "actor_learning_rate",
            "critic_learning_rate",
            "adam_eps",
            "grad_clip",
            "actor_grad_clip",
            "critic_grad_clip",
            "return_unit",
        ):
            require(getattr(self, name) > 0.0, f"dreamer.{name} must be > 0, got {getattr(self, name)}")
        require(self.num_bins % 2 == 1, f"dreamer.num_bins must be odd, got {self.num_bins}")
        require(self.bins_low < 0.0 < self.bins_high, "dreamer.bins_low < 0 < dreamer.bins_high is required")
        require(len(self.position_levels) >= 2, "dreamer.position_levels needs at least two levels")
        require(all(-1.0 <= p <= 1.0 for p in self.position_levels), "dreamer.position_levels must lie in [-1, 1]")
        require(
            list(self.position_levels) == sorted(set(self.position_levels)),
            "dreamer.position_levels must be strictly increasing",
        )
        require(
            not (self.actor_grad == "dynamics" and self.world_model_uses_action),
            "dreamer.world_model_uses_action needs dreamer.actor_grad: reinforce (the band actor's positions "
            "are continuous, the world model's action input is one-hot over position_levels)",
        )
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"dreamer.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )

    def early_stopping_min_steps(self, total_steps: int) -> int:
        """The first update at which a stage of `total_steps` updates may stop early."""
        return math.ceil(self.early_stopping_warmup * total_steps)

    @property
    def cost_rate(self) -> float:
        """Cost per unit of |Δposition|: fee plus slippage (same number in imagination and backtest)."""
        return self.fee_rate + self.slippage_rate
