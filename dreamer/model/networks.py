"""Building blocks shared by every network of the world model: LayerNorm + SiLU MLPs and the
LayerNorm GRU cell of DreamerV3's deterministic path."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class OneHotBlock:
    """Inputs appended to a layer's `x` that are S one-hots of K classes (the RSSM's straight-through `z`)."""

    value: Tensor  # [..., S·K], one-hot in value; its gradient flows on (straight-through)
    index: Tensor  # [..., S] long, the hot class of each of the S categoricals
    classes: int  # K

    @classmethod
    def of(cls, value: Tensor, classes: int) -> OneHotBlock:
        """The block of `value [..., S·K]`, exactly one-hot in each of its S groups of K (a sample of the RSSM)."""
        class_ids = torch.arange(classes, dtype=value.dtype, device=value.device)  # [K]: 0..K−1
        # the dot of a one-hot with 0..K−1 is its hot class, ~10× faster than an argmax over K = 32; the clamp
        # keeps a NaN sample (from NaN inputs) a valid index: the NaN still reaches the loss through h and the KL
        index = (value.detach().unflatten(-1, (-1, classes)) @ class_ids).long().clamp_(0, classes - 1)  # [..., S]
        return cls(value, index, classes)


class _OneHotMatmul(torch.autograd.Function):
    """`z·W_zᵀ` for `z [N, S·K]` that is one-hot in value, hot at the flat columns `index [N, S]`.

    Forward: the sum of the S selected columns of `W_z [H, S·K]`; weight gradient: the output gradient
    added to those columns. Both replace an `[N, S·K] × [S·K, H]` matmul whose inputs are ~97 % zeros.
    The input gradient stays dense, `∂L/∂z = g·W_z`: the straight-through estimator passes it to the probs.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, index: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(index, weight)
        return F.embedding_bag(index, weight.T.contiguous(), mode="sum")  # [N, H]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        index, weight = ctx.saved_tensors
        grad_z = grad @ weight if ctx.needs_input_grad[0] else None  # [N, S·K]
        grad_weight = one_hot_weight_grad(grad, index, weight.shape[1]) if ctx.needs_input_grad[2] else None
        return grad_z, None, grad_weight


def one_hot_weight_grad(grad: Tensor, index: Tensor, columns: int) -> Tensor:
    """∂L/∂W `[H, columns]` of `Σ_s W[:, index[:, s]]` (a one-hot input's matmul) for the output gradient
    `grad [N, H]` and flat column indices `index [N, S]`: each row of `grad` is added to its S columns."""
    grad_weight_t = grad.new_zeros(columns, grad.shape[1])  # [columns, H]
    for column in index.unbind(-1):  # S index_adds of [N, H]: no [N, S, H] temporary
        grad_weight_t.index_add_(0, column, grad)
    return grad_weight_t.T


def latent_offsets(stoch: int, classes: int, device: torch.device) -> Tensor:
    """`[S]`: the flat column of class 0 of each latent in `z [..., S·K]`."""
    return torch.arange(0, stoch * classes, classes, device=device)


def one_hot_linear(x: Tensor, one_hot: OneHotBlock, weight: Tensor) -> Tensor:
    """`W·[x, z]` for `x [..., D]` and one-hot `z [..., S·K]`, `W [H, D + S·K]`: `W_x·x + Σ_s W_z[:, s·K + k_s]`."""
    lead, dense, stoch = x.shape[:-1], x.shape[-1], one_hot.index.shape[-1]
    columns = one_hot.index + latent_offsets(stoch, one_hot.classes, x.device)  # [..., S], columns of W_z
    index = columns.reshape(-1, stoch)  # [N, S]
    z = one_hot.value.reshape(-1, stoch * one_hot.classes)  # [N, S·K]
    out = x.reshape(-1, dense) @ weight[:, :dense].T + _OneHotMatmul.apply(z, index, weight[:, dense:])  # [N, H]
    return out.reshape(*lead, weight.shape[0])


class NormSiLU(nn.Module):
    """Linear (no bias: the norm re-centres) -> LayerNorm -> SiLU, the unit every DreamerV3 MLP is made of."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = init_linear(nn.Linear(in_features, out_features, bias=False))
        self.norm = nn.LayerNorm(out_features, eps=1e-3)

    def forward(self, x: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        pre = self.linear(x) if one_hot is None else one_hot_linear(x, one_hot, self.linear.weight)
        return F.silu(self.norm(pre))


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

    def forward(self, x: Tensor, one_hot: OneHotBlock | None = None) -> Tensor:
        """`x [..., I]`, or `[x, one_hot.value]` when `one_hot` is given (its rows are gathered, not multiplied)."""
        for i, layer in enumerate(self.body):
            x = layer(x, one_hot if i == 0 else None)
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
