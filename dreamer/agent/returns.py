"""λ-returns and DreamerV3's percentile return normalisation.

    R^λ_t = r_t + γ·((1 − λ)·v(s_{t+1}) + λ·R^λ_{t+1}),   R^λ_H = v(s_H)

    S = EMA_0.99(P95(R^λ) − P5(R^λ)),   advantage = (R^λ_t − v(s_t)) / max(1, S)

Dividing by max(1, S) rather than S scales large returns down without blowing small (noise-level) ones up:
the floor is in reward units, which is why the reward's unit (basis points) is a deliberate choice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lambda_returns(rewards: Tensor, values: Tensor, discount: float, lambda_: float) -> Tensor:
    """`rewards [H, N]` (r_t earned by the action at s_t), `values [H + 1, N]` (v(s_0..s_H)) -> `R^λ [H, N]`."""
    horizon = rewards.shape[0]
    returns = torch.empty_like(rewards)
    last = values[-1]  # [N] bootstrap from the critic at the horizon
    for t in reversed(range(horizon)):
        last = rewards[t] + discount * ((1.0 - lambda_) * values[t + 1] + lambda_ * last)
        returns[t] = last
    return returns


class ReturnNormaliser(nn.Module):
    """EMA of the 5th and 95th percentiles of the λ-returns; `scale()` is max(floor, high − low)."""

    low: Tensor
    high: Tensor

    def __init__(self, decay: float, low_quantile: float, high_quantile: float, floor: float) -> None:
        super().__init__()
        self.decay, self.floor = decay, floor
        self.quantiles = (low_quantile, high_quantile)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: Tensor) -> Tensor:
        """Fold the batch's percentiles into the EMA and return the new scale (0-dim)."""
        flat = returns.detach().float().flatten()
        quantiles = torch.tensor(self.quantiles, device=flat.device)
        low, high = torch.quantile(flat, quantiles)
        self.low.lerp_(low, 1.0 - self.decay)
        self.high.lerp_(high, 1.0 - self.decay)
        return self.scale()

    def scale(self) -> Tensor:
        return (self.high - self.low).clamp_min(self.floor)
