"""Rolling the agent forward inside the world model.

From start states `s_0` (posteriors of real training bars) and the accounts the agent holds there, for
t = 0 … H−1:

    x_t   = [features(s_t), account_t]                 agent state
    a_t   = π(x_t, a_{t−1})                            target position (see `dreamer.agent.networks`)
    r̂_t   = E[r_t | s_t]                               the return head's mean, r_t = log return of the next bar
    r̃_t   ~ p(r_t | s_t)                               a return drawn from the same head (central 99 %)
    rew_t = unit · (net(a_{t−1}, a_t, r̂_t, f_t) − drawdown_penalty · drawdown_{t+1})
    account_{t+1} = account_t.step(a_t, r̃_t, f_t)      dreamer.trading.net_log_return on the drawn return
    s_{t+1} ~ p(s_{t+1} | s_t[, a_t])                  prior (the market ignores a_t unless configured)

Why the reward uses the mean and the account a drawn return: the account (position, unrealised PnL,
drawdown) is an input of the actor, so it must look like the backtest's account, which is booked on
realised returns; booked on the mean forecast, a small negative mean made every imagined account a loser
(0 % of imagined accounts in profit against 32 % in the backtest). The reward is the expected net return
given the state: the noise of the next bar does not depend on the action, so averaging it out changes no
expected return and removes most of the variance from the actor's gradient. Its log growth is taken at
the mean return rather than as the expected log growth; the difference, −a²σ²/2 per bar, is 0.7e-6 for a
full position in 12 bp noise against a drift of ~1e-4 (under 1 %), and it is the same for long and short.

Funding `f_t` (a perpetual's, per unit of position) is charged at the settlements the imagined bar t holds,
each at the *latest rate settled by the start bar's close*: the rate the agent knows when it imagines.
When settlements fall is Bybit's published schedule (every 8, 4 or 1 hours), known in advance; the rates
they will settle at are not, and the last settled rate is the causal forecast of them (the world model does
not predict funding). `known_funding` builds `f` for start rows of the dataset; the backtest charges the
rates that were in fact settled, through the same `dreamer.trading.net_log_return`.

The draw inverts the head's CDF at a uniform level in [0.005, 0.995]: a young twohot head keeps a little
mass on its far bins (±symexp(20) bp), and a single draw from there (a log return of ~400) would wipe out
the account and turn the whole update into NaN. An untrained head is uniform over its bins, so the draw is
also clipped to a log return of ±1 (±170 % in one bar, far beyond any bar the data can hold).

`unit` is `cfg.return_unit` (1e4: rewards in basis points). Per-bar log returns are ~1e-3, so in natural
units every λ-return would sit far below the return normaliser's floor of 1 and the normalised advantages
(~1e-4) would be drowned by the entropy bonus: the policy would stay uniform. In basis points a return
spread of a few bps is already on the scale of the floor and the advantages drive the policy
(`tests/model/test_agent.py` shows both).

The world model is never differentiated through (its features are detached). With the band actor the
trajectory keeps the graph through the positions and accounts: the λ-return is differentiable in the
actor's parameters along exactly the path the backtest would compound.

The drawdown penalty charges, every bar, `drawdown_penalty` times the log distance of equity below its
peak: it prices the time spent under water, not just the size of losses. It is part of the reward only;
the backtest reports plain PnL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.agent.networks import Actor, BandActor
from dreamer.agent.portfolio import PORTFOLIO_FEATURES, Portfolio
from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import twohot_mean, twohot_quantile
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.trading import net_log_return

DRAW_TAIL = 0.005  # returns are drawn from the central 1 − 2·DRAW_TAIL of the return head's distribution
MAX_DRAWN_LOG_RETURN = 1.0  # |r̃| bound: an untrained, uniform head's central 99 % still spans ±symexp(19) bp


@dataclass(frozen=True)
class Trajectory:
    inputs: Tensor  # [H + 1, N, I] agent states x_0 … x_H
    actions: Tensor | None  # [H, N] int64 level indices of the categorical actor; None for the band actor
    positions: Tensor  # [H, N] target positions a_t
    predicted_returns: Tensor  # [H, N] r̂_t, natural log-return units
    market_returns: Tensor  # [H, N] r̃_t drawn from the return head: the path the account is booked on
    net_returns: Tensor  # [H, N] net log return of the account on r̃_t, natural units
    rewards: Tensor  # [H, N] in reward units (cfg.return_unit)
    final_portfolio: Portfolio  # account after the last step [N]


def known_funding(known_rate: Tensor, next_settlements: Tensor, rows: Tensor, horizon: int) -> Tensor:
    """`[H, N]` funding per unit of position over the `horizon` bars imagined from dataset `rows [N]`:
    `known_rate[row]` (the latest rate settled by the start bar's close) times the number of settlements
    the bar after `row + t` holds (`next_settlements`, the schedule). `known_rate`, `next_settlements`:
    the dataset's `[R]` columns (`BarFunding`), on the rows' device."""
    steps = torch.arange(horizon, device=rows.device)[:, None]  # [H, 1]
    later = (rows[None, :] + steps).clamp_max(next_settlements.shape[0] - 1)  # [H, N]
    return known_rate[rows][None, :] * next_settlements[later]  # [H, N]


def trading_reward(net: Tensor, drawdown: Tensor, cfg: DreamerConfig) -> Tensor:
    """The reward the actor-critic maximises, in `cfg.return_unit`s: net log return less the drawdown
    penalty on the drawdown *after* the bar."""
    return cfg.return_unit * (net - cfg.drawdown_penalty * drawdown)


def agent_input(latent: Tensor, portfolio: Portfolio) -> Tensor:
    """`latent [N, D + S·K]` (world-model features) -> `x [N, D + S·K + 3]`."""
    return torch.cat([latent, portfolio.features()], -1)


def agent_input_size(world_model: WorldModel) -> int:
    return world_model.feature_size + PORTFOLIO_FEATURES


def imagine(
    world_model: WorldModel,
    actor: Actor | BandActor,
    start: RSSMState,
    portfolio: Portfolio,
    horizon: int,
    cfg: DreamerConfig,
    sample: bool = True,
    funding: Tensor | None = None,
) -> Trajectory:
    """Imagine `horizon` steps from `start` (`h [N, D]`, `z [N, S·K]`) and accounts `portfolio [N]`,
    charging `funding [H, N]` per unit of position over each step (`known_funding`; None: no funding).

    Keeps the autograd graph through the actor and the accounts when grad mode is on (the band actor's
    training); call it under `torch.no_grad()` otherwise. `sample=False` makes the categorical actor take
    its most likely level (the backtest's deterministic policy); the band actor is deterministic anyway."""
    action_size = len(cfg.position_levels)
    if funding is None:
        funding = torch.zeros(horizon, portfolio.position.shape[0], device=portfolio.position.device)
    inputs, actions, positions, predicted, market, net_returns, rewards = [], [], [], [], [], [], []
    state = start
    for t in range(horizon):
        with torch.no_grad():
            latent = world_model.features(state)  # [N, D + S·K]
            probs, bins = world_model.return_distribution(latent)  # [N, K], [K]
            predicted.append(twohot_mean(probs, bins))  # [N]
            level = torch.empty_like(predicted[-1]).uniform_(DRAW_TAIL, 1.0 - DRAW_TAIL)  # [N]
            drawn = twohot_quantile(probs, bins, level).clamp(-MAX_DRAWN_LOG_RETURN, MAX_DRAWN_LOG_RETURN)
            market.append(drawn)  # [N]
        inputs.append(agent_input(latent, portfolio))
        position, action = actor.act(inputs[-1], portfolio.position, sample)  # [N], [N] | None
        expected_net = net_log_return(portfolio.position, position, predicted[-1], cfg.cost_rate, funding[t])  # [N]
        portfolio, net = portfolio.step(position, market[-1], cfg.cost_rate, funding[t])
        rewards.append(trading_reward(expected_net, portfolio.drawdown, cfg))
        positions.append(position)
        net_returns.append(net)
        if action is not None:
            actions.append(action)
        with torch.no_grad():
            action_input = (
                F.one_hot(action, action_size).float() if action is not None and world_model.action_dim else None
            )
            state = world_model.imagine_step(state, action_input)
    inputs.append(agent_input(world_model.features(state).detach(), portfolio))
    return Trajectory(
        inputs=torch.stack(inputs),
        actions=torch.stack(actions) if actions else None,
        positions=torch.stack(positions),
        predicted_returns=torch.stack(predicted),
        market_returns=torch.stack(market),
        net_returns=torch.stack(net_returns),
        rewards=torch.stack(rewards),
        final_portfolio=portfolio,
    )
