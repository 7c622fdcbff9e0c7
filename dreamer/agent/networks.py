"""Actors and critic. All read the agent state `x = [h, z, account]`: the world model's features
(`D + S·K`) and the `Portfolio` features (3).

Two actors, chosen by `cfg.actor_grad`:

* `BandActor` (`dynamics`): a deterministic no-trade band. From `x_t` it outputs bounds `low_t < high_t`
  in (−1, 1) and the new position is the held one clipped into them, `a_t = clip(a_{t−1}, low_t, high_t)`.
  Under proportional costs the optimal policy has exactly this shape (a region where trading is not worth
  its cost, Davis & Norman 1990; Gârleanu & Pedersen 2013): inside the band the position is held *exactly*,
  so a smooth network never pays fees on small wiggles. It is trained by backpropagating the λ-return
  through the PnL (`ActorCritic`), which is exact here because the market path does not depend on it.
* `Actor` (`reinforce`): DreamerV3's categorical policy over `cfg.position_levels`, trained by REINFORCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import unimix_probs
from dreamer.model.heads import TwoHotHead
from dreamer.model.networks import MLP

BAND_INITIAL_HALF_WIDTH = 0.05
"""The band starts narrow (±0.05 around a centre of 0): a position outside it is moved to its edge, so from
the first update the bounds receive gradients; a wide initial band would hold every account where it
starts and pass no gradient to the bounds at all."""


class Actor(nn.Module):
    """π(a | x): a categorical over the target positions `cfg.position_levels`, mixed with 1 % uniform so
    every level keeps some probability (exploration, and bounded log-probabilities for REINFORCE)."""

    def __init__(self, in_features: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.unimix = cfg.unimix
        self.levels: Tensor
        self.register_buffer("levels", torch.tensor(cfg.position_levels), persistent=False)  # [L]
        self.mlp = MLP(in_features, cfg.hidden_size, cfg.mlp_layers, len(cfg.position_levels))

    def forward(self, x: Tensor) -> Tensor:
        """`x [..., I]` -> log-probabilities `[..., L]` over the position levels."""
        return unimix_probs(self.mlp(x), self.unimix).log()

    def act(self, x: Tensor, held: Tensor, sample: bool) -> tuple[Tensor, Tensor]:
        """`x [N, I]` -> (target positions `[N]`, level indices `[N]`): sampled, or the most likely level."""
        logp = self(x)  # [N, L]
        index = torch.multinomial(logp.exp(), 1).squeeze(-1) if sample else logp.argmax(-1)
        return self.levels[index], index


class BandActor(nn.Module):
    """`x [..., I]` -> the no-trade band `(low, high)`, `−1 < low < high < 1`:

    low = tanh(c − w),  high = tanh(c + w),  w = softplus(u) > 0,   (c, u) = MLP(x)
    """

    def __init__(self, in_features: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.mlp = MLP(in_features, cfg.hidden_size, cfg.mlp_layers, 2, zero_out=True)
        assert self.mlp.out is not None
        with torch.no_grad():  # zero weights: the same narrow band around 0 for every state at the start
            self.mlp.out.bias[1] = torch.log(torch.expm1(torch.atanh(torch.tensor(BAND_INITIAL_HALF_WIDTH))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        centre, spread = self.mlp(x).float().unbind(-1)  # [...] each
        half_width = F.softplus(spread)
        return torch.tanh(centre - half_width), torch.tanh(centre + half_width)

    def act(self, x: Tensor, held: Tensor, sample: bool = False) -> tuple[Tensor, None]:
        """`x [N, I]`, `held [N]` -> (target positions `[N]`, None): the held position clipped into the band.
        Deterministic (`sample` is ignored): differentiable in the bounds and in `held`."""
        low, high = self(x)
        return torch.maximum(low, torch.minimum(held, high)), None


def make_actor(in_features: int, cfg: DreamerConfig) -> Actor | BandActor:
    return BandActor(in_features, cfg) if cfg.actor_grad == "dynamics" else Actor(in_features, cfg)


def make_critic(in_features: int, cfg: DreamerConfig) -> TwoHotHead:
    """v(x): the expected λ-return in reward units (basis points), as a twohot distribution over
    symlog-spaced bins, like the world model's return head (its output layer starts at zero, v = 0)."""
    return TwoHotHead(in_features, cfg.hidden_size, cfg.mlp_layers, cfg.num_bins, cfg.bins_low, cfg.bins_high, 1.0)
