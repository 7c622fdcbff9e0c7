"""Rolling the agent forward inside the world model.

From start states `s_0` (posteriors of real training bars) and the accounts the agent holds there, for
t = 0 … H−1:

    x_t   = [features(s_t), account_t]                 agent state
    a_t   ~ π(· | x_t)                                 target position, one of cfg.position_levels
    r̂_t   = E[log return of the next bar | s_t]        world model's return head
    account_{t+1}, net_t = account_t.step(a_t, r̂_t)    dreamer.trading.net_log_return
    rew_t = unit · (net_t − drawdown_penalty · drawdown_{t+1})
    s_{t+1} ~ p(s_{t+1} | s_t[, a_t])                  prior (the market ignores a_t unless configured)

`unit` is `cfg.return_unit` (1e4: rewards in basis points). Per-bar log returns are ~1e-3, so in natural
units every λ-return would sit far below the return normaliser's floor of 1 and the normalised advantages
(~1e-4) would be drowned by the entropy bonus: the policy would stay uniform. In basis points a return
spread of a few bps is already on the scale of the floor and the advantages drive the policy
(`tests/model/test_agent.py` shows both).

The drawdown penalty charges, every bar, `drawdown_penalty` times the log distance of equity below its
peak: it prices the time spent under water, not just the size of losses. It is part of the reward only;
the backtest reports plain PnL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.agent.networks import Actor
from dreamer.agent.portfolio import PORTFOLIO_FEATURES, Portfolio
from dreamer.model.config import DreamerConfig
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel


@dataclass(frozen=True)
class Trajectory:
    inputs: Tensor  # [H + 1, N, I] agent states x_0 … x_H
    actions: Tensor  # [H, N] int64, indices into position_levels
    positions: Tensor  # [H, N] target positions a_t
    predicted_returns: Tensor  # [H, N] r̂_t, natural log-return units
    net_returns: Tensor  # [H, N] net log return of each imagined bar, natural units
    rewards: Tensor  # [H, N] in reward units (cfg.return_unit)
    final_portfolio: Portfolio  # account after the last step [N]


def trading_reward(net: Tensor, drawdown: Tensor, cfg: DreamerConfig) -> Tensor:
    """The reward the actor-critic maximises, in `cfg.return_unit`s: net log return less the drawdown
    penalty on the drawdown *after* the bar."""
    return cfg.return_unit * (net - cfg.drawdown_penalty * drawdown)


def agent_input(world_model: WorldModel, state: RSSMState, portfolio: Portfolio) -> Tensor:
    """`x [N, D + S·K + 3]`."""
    return torch.cat([world_model.features(state), portfolio.features()], -1)


def agent_input_size(world_model: WorldModel) -> int:
    return world_model.feature_size + PORTFOLIO_FEATURES


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    actor: Actor,
    start: RSSMState,
    portfolio: Portfolio,
    horizon: int,
    cfg: DreamerConfig,
    sample: bool = True,
) -> Trajectory:
    """Imagine `horizon` steps from `start` (`h [N, D]`, `z [N, S·K]`) and accounts `portfolio [N]`.

    `sample=False` takes the most likely action (the deterministic policy of the backtest)."""
    levels = torch.tensor(cfg.position_levels, device=start.h.device)  # [L]
    n = start.h.shape[0]
    inputs = torch.empty(horizon + 1, n, agent_input_size(world_model), device=start.h.device)
    actions = torch.empty(horizon, n, dtype=torch.long, device=start.h.device)
    positions, predicted, net_returns, rewards = (torch.empty(horizon, n, device=start.h.device) for _ in range(4))
    state = start
    for t in range(horizon):
        inputs[t] = agent_input(world_model, state, portfolio)
        logp = actor(inputs[t])  # [N, L]
        actions[t] = torch.multinomial(logp.exp(), 1).squeeze(-1) if sample else logp.argmax(-1)
        positions[t] = levels[actions[t]]
        predicted[t] = world_model.predict_return(inputs[t, :, : world_model.feature_size])
        portfolio, net_returns[t] = portfolio.step(positions[t], predicted[t], cfg.cost_rate)
        rewards[t] = trading_reward(net_returns[t], portfolio.drawdown, cfg)
        action_input = F.one_hot(actions[t], len(levels)).float() if world_model.action_dim else None
        state = world_model.imagine_step(state, action_input)
    inputs[horizon] = agent_input(world_model, state, portfolio)
    return Trajectory(inputs, actions, positions, predicted, net_returns, rewards, portfolio)
