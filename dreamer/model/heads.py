"""The world model's observation encoder and its prediction heads (decoder, twohot return head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamer.model.distributions import (
    symlog,
    symlog_bins,
    twohot_cross_entropy,
    twohot_mean,
)
from dreamer.model.networks import MLP, OneHotBlock


class ObservationEncoder(nn.Module):
    """`obs [..., F] -> embedding [..., H]`, an MLP on symlog(obs) so that outliers cannot dominate."""

    def __init__(self, obs_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(obs_dim, hidden, layers)
        self.out_features = self.mlp.out_features

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(symlog(obs))


class ObservationDecoder(nn.Module):
    """`features [..., D + S·K] -> symlog(obs) prediction [..., F]`, trained with symlog-MSE."""

    def __init__(self, feature_size: int, obs_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(feature_size, hidden, layers, obs_dim)

    def forward(self, features: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        return self.mlp(features, one_hot)

    def loss(self, features: Tensor, obs: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        """Σ_f (ŷ_f − symlog(x_f))² per step: `[...]`. Inputs `[features, one_hot.value]` if `one_hot` is given."""
        return (self(features, one_hot).float() - symlog(obs)).square().sum(-1)


class TwoHotHead(nn.Module):
    """A scalar predicted as a categorical over `num_bins` symlog-spaced bins (DreamerV3's twohot head).

    The network works in `unit`s of the scalar (e.g. basis points for returns: `unit = 1e4`) so that the
    bins, ~0.16 wide in symlog space near zero, resolve it; inputs and outputs of the public methods are in
    natural units. The output layer starts at zero: a uniform distribution whose mean is exactly 0.
    """

    def __init__(
        self, in_features: int, hidden: int, layers: int, num_bins: int, low: float, high: float, unit: float
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_features, hidden, layers, num_bins, zero_out=True)
        self.unit = unit
        self.bins: Tensor
        self.register_buffer("bins", symlog_bins(num_bins, low, high), persistent=False)  # [K], in units

    def forward(self, features: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        """Logits `[..., K]` of `features` (or of `[features, one_hot.value]`, see `MLP`)."""
        return self.mlp(features, one_hot)

    def loss(self, features: Tensor, target: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        """Twohot cross-entropy of `target [...]` (natural units): `[...]`."""
        return twohot_cross_entropy(self(features, one_hot), target * self.unit, self.bins)

    def distribution(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(probs `[..., K]`, bin values `[K]` in natural units)."""
        return torch.softmax(self(features).float(), -1), self.bins / self.unit

    def mean(self, features: Tensor) -> Tensor:
        """Expected value in natural units: `[...]`."""
        probs = torch.softmax(self(features).float(), -1)
        return twohot_mean(probs, self.bins) / self.unit
