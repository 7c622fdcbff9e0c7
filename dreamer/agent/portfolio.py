"""The trading account carried alongside the latent state, in imagination and in live inference alike.

The agent's state is the world model's latent `s_t` augmented with its own account: the position it holds,
the unrealised log PnL of that position since it was opened, and how far equity sits below its running
peak. The market (the latent) does not depend on our orders, but the account does, and the reward of the
next bar depends on the position we come from (costs) and, with a drawdown penalty, on the drawdown.

One step is `dreamer.trading.net_log_return`, the same arithmetic the backtest compounds, so an account
carried through imagination is exactly the account the backtest would report for the same returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamer.model.distributions import symexp, symlog
from dreamer.trading import net_log_return

PORTFOLIO_FEATURES = 3
BASIS_POINTS = 1e4


@dataclass(frozen=True)
class Portfolio:
    position: Tensor  # [N] held now (over the bar that just ended)
    unrealised: Tensor  # [N] log PnL of the open position since it was entered, costs included; 0 when flat
    drawdown: Tensor  # [N] log distance of equity below its running peak, >= 0

    @classmethod
    def flat(cls, size: int, device: torch.device | str = "cpu") -> Portfolio:
        zeros = torch.zeros(size, device=device)
        return cls(zeros, zeros.clone(), zeros.clone())

    def step(
        self, target: Tensor, next_log_return: Tensor, cost_rate: float, funding_rate: Tensor | float = 0.0
    ) -> tuple[Portfolio, Tensor]:
        """Move to `target [N]` and hold it over a bar returning `next_log_return [N]` whose settlements
        charge `funding_rate [N]` (summed rates; 0 without funding).

        Returns the new account and the bar's net log return `[N]` (natural units)."""
        net = net_log_return(self.position, target, next_log_return, cost_rate, funding_rate)  # [N]
        reopened = target != self.position
        unrealised = torch.where(reopened, net, self.unrealised + net)
        unrealised = torch.where(target == 0, torch.zeros_like(net), unrealised)
        drawdown = (self.drawdown - net).clamp_min(0.0)
        return Portfolio(target, unrealised, drawdown), net

    def features(self) -> Tensor:
        """`[N, 3]` actor/critic input: position, and unrealised PnL and drawdown as symlog basis points."""
        return torch.stack(
            [self.position, symlog(self.unrealised * BASIS_POINTS), symlog(self.drawdown * BASIS_POINTS)], -1
        )

    @classmethod
    def from_features(cls, features: Tensor) -> Portfolio:
        """The account whose `features()` are `features [N, 3]` (symlog is invertible)."""
        position, unrealised, drawdown = features.unbind(-1)
        return cls(position, symexp(unrealised) / BASIS_POINTS, symexp(drawdown) / BASIS_POINTS)

    def detach(self) -> Portfolio:
        """The same account cut from the autograd graph (a band actor's lanes carried to the next update)."""
        return Portfolio(self.position.detach(), self.unrealised.detach(), self.drawdown.detach())

    def to_dict(self) -> dict[str, Tensor]:
        return {"position": self.position, "unrealised": self.unrealised, "drawdown": self.drawdown}

    @classmethod
    def from_dict(cls, data: dict[str, Tensor], device: torch.device | str = "cpu") -> Portfolio:
        return cls(data["position"].to(device), data["unrealised"].to(device), data["drawdown"].to(device))
