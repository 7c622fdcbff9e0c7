"""Building blocks shared by every network of the world model: LayerNorm + SiLU MLPs and the
LayerNorm GRU cell of DreamerV3's deterministic path."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_linear(layer: nn.Linear, zero: bool = False) -> nn.Linear:
    """DreamerV3's initialiser: truncated normal with variance 1/fan_avg, zero bias; `zero=True` zeroes the
    weights too (the reward head's output layer, so training starts from a zero forecast)."""
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        fan_avg = (layer.in_features + layer.out_features) / 2
        std = math.sqrt(1.0 / fan_avg) / 0.87962566103423978  # std of a unit normal truncated at ±2
        nn.init.trunc_normal_(layer.weight, std=std, a=-2.0 * std, b=2.0 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class NormSiLU(nn.Module):
    """Linear (no bias: the norm re-centres) -> LayerNorm -> SiLU, the unit every DreamerV3 MLP is made of."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = init_linear(nn.Linear(in_features, out_features, bias=False))
        self.norm = nn.LayerNorm(out_features, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.norm(self.linear(x)))


class MLP(nn.Module):
    """`layers` NormSiLU units of width `hidden`, then an optional linear output layer: `[..., in] -> [..., out]`."""

    def __init__(
        self, in_features: int, hidden: int, layers: int, out_features: int | None = None, zero_out: bool = False
    ) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * layers
        self.body = nn.Sequential(*(NormSiLU(a, b) for a, b in itertools.pairwise(widths)))
        self.out = init_linear(nn.Linear(widths[-1], out_features), zero=zero_out) if out_features else None
        self.out_features = out_features or widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(x)
        return self.out(x) if self.out is not None else x


class LayerNormGRUCell(nn.Module):
    """GRU cell with LayerNorm on the gate pre-activations and an update-gate bias of −1 (DreamerV3).

    `[r, u, c] = LN(W·[x, h])`, `h' = σ(u)·tanh(σ(r)·c) + (1 − σ(u))·h`. DreamerV3 writes σ(u − 1) with a
    zero-initialised norm bias; here the −1 *is* the initial norm bias of the update gate, the same
    function with the same gradients, one op fewer per step. It starts the cell close to "keep the
    previous state", which stabilises early training of long rollouts.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = init_linear(nn.Linear(input_size + hidden_size, 3 * hidden_size, bias=False))
        self.norm = nn.LayerNorm(3 * hidden_size, eps=1e-3)
        with torch.no_grad():
            self.norm.bias[hidden_size : 2 * hidden_size] = -1.0

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """`x [B, in]`, `h [B, D]` -> `h' [B, D]`."""
        parts = self.norm(self.linear(torch.cat([x, h], -1)))  # [B, 3D]
        gates, cand = parts.split([2 * self.hidden_size, self.hidden_size], dim=-1)
        reset, update = torch.sigmoid(gates).chunk(2, dim=-1)  # both gates in one op
        return torch.lerp(h, torch.tanh(reset * cand), update)
