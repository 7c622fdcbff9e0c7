"""Actor and critic. Both read the agent state `x = [h, z, account]`: the world model's features
(`D + S·K`) and the `Portfolio` features (3)."""

from __future__ import annotations

from torch import Tensor, nn

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import unimix_probs
from dreamer.model.heads import TwoHotHead
from dreamer.model.networks import MLP


class Actor(nn.Module):
    """π(a | x): a categorical over the target positions `cfg.position_levels`, mixed with 1 % uniform so
    every level keeps some probability (exploration, and bounded log-probabilities for REINFORCE)."""

    def __init__(self, in_features: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.unimix = cfg.unimix
        self.mlp = MLP(in_features, cfg.hidden_size, cfg.mlp_layers, len(cfg.position_levels))

    def forward(self, x: Tensor) -> Tensor:
        """`x [..., I]` -> log-probabilities `[..., L]` over the position levels."""
        return unimix_probs(self.mlp(x), self.unimix).log()


def make_critic(in_features: int, cfg: DreamerConfig) -> TwoHotHead:
    """v(x): the expected λ-return in reward units (basis points), as a twohot distribution over
    symlog-spaced bins, like the world model's return head (its output layer starts at zero, v = 0)."""
    return TwoHotHead(in_features, cfg.hidden_size, cfg.mlp_layers, cfg.num_bins, cfg.bins_low, cfg.bins_high, 1.0)
