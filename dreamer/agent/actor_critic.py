"""DreamerV3's actor-critic, learned purely from imagined trajectories (one loss, one backward per update).

    critic    L_v = Σ_t γ^t · ( −ln p_v(sg R^λ_t | x_t) − c_slow · ln p_v(sg v_slow(x_t) | x_t) )
    actor, dynamics   L_π = −Σ_t γ^t · R^λ_t / max(1, S)             (R^λ through the PnL, v with sg weights)
    actor, reinforce  L_π = Σ_t γ^t · ( −sg(A_t) · ln π(a_t | x_t) − η · H[π(· | x_t)] )
    advantage A_t = (R^λ_t − v(x_t)) / max(1, S)           S: EMA of the P95 − P5 return range

`dynamics` (the default, `BandActor`): the λ-return is a differentiable function of the positions. The
world model's latent path does not depend on them (a price taker), so the gradient through
`a·r̂ − cost·|Δa|`, through the account the next step's actor and critic read, and through the critic's
value of the final account is exact, with none of REINFORCE's variance. This is what DreamerV1/V2 do for
continuous actions ("dynamics backpropagation"), here without differentiating the world model at all. The
critic enters the actor's objective with its weights detached: the actor ascends v, it does not train it.
There is no entropy bonus: the band policy is deterministic, and nothing needs exploring, since the world
model is fixed and imagined markets ignore the policy.

`reinforce` (`Actor`): the world model's dynamics are not differentiated through, as in DreamerV3 for
discrete actions. Entropy: DreamerV3's η = 3e-4 lets the policy collapse onto "flat" within a few dozen
updates here. Under an untrained, near-random policy every position change is a certain cost and every
random direction a coin flip, so "never trade" wins the first gradient steps before the state-dependent
signal is learned; the 1 % unimix then explores far too little to find it again. With a next-bar return
fully leaked into the observations and real costs, η = 0.03 ended flat (0 % test return) while η = 0.1
made +58 % (Sharpe 119) on the same world model. η = 0.1 keeps the ratio |A| / (η·H)
(`actor/advantage_to_entropy`) around 4–7. On the known-answer markets with real costs it still ends
flat (docs/experiments.md), which is why `dynamics` is the default.

v_slow is an EMA copy of the critic whose predictions regularise the critic. Actor and critic share one
Adam with two parameter groups (their own learning rates) and have their gradients clipped separately.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.func import functional_call

from dreamer.agent.imagination import Trajectory, agent_input_size, imagine
from dreamer.agent.networks import Actor, make_actor, make_critic
from dreamer.agent.portfolio import Portfolio
from dreamer.agent.returns import ReturnNormaliser, lambda_returns
from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import twohot_cross_entropy, twohot_mean
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.training import NonFiniteError


def action_share_name(level: float) -> str:
    """The metric name of the share of imagined steps at position `level`: `actions/long_0.5`,
    `actions/short_1`, `actions/flat` (MLflow rejects '+' in a name, and `+0.5`/`-0.5` must stay apart)."""
    if level == 0:
        return "actions/flat"
    return f"actions/{'long' if level > 0 else 'short'}_{abs(level):g}"


class ActorCritic(nn.Module):
    def __init__(self, world_model: WorldModel, cfg: DreamerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        size = agent_input_size(world_model)
        self.actor = make_actor(size, cfg)
        self.critic = make_critic(size, cfg)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormaliser(
            cfg.return_norm_decay, cfg.return_norm_low, cfg.return_norm_high, cfg.return_norm_floor
        )
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.actor.parameters(), "lr": cfg.actor_learning_rate},
                {"params": self.critic.parameters(), "lr": cfg.critic_learning_rate},
            ],
            eps=cfg.adam_eps,
            fused=True,  # one kernel for all parameters (see `world_model_optimizer`)
        )

    def update(
        self, world_model: WorldModel, start: RSSMState, portfolio: Portfolio, funding: torch.Tensor | None = None
    ) -> tuple[Trajectory, dict[str, float]]:
        """Imagine from `start` (`[N, ·]`, detached posteriors) and accounts `portfolio [N]`, charging
        `funding [H, N]` (see `imagine`), then take one gradient step. Returns the trajectory (its final
        accounts seed the next update) and metrics."""
        cfg = self.cfg
        horizon = cfg.imagination_horizon
        dynamics = cfg.actor_grad == "dynamics"
        with torch.set_grad_enabled(dynamics):  # the band actor's gradient runs through the trajectory
            traj = imagine(world_model, self.actor, start, portfolio, horizon, cfg, funding=funding)
        x = traj.inputs.detach()  # [H + 1, N, I]
        weight = cfg.discount ** torch.arange(horizon, device=x.device, dtype=x.dtype)[:, None]  # [H, 1]

        critic_logits = self.critic(x)  # [H + 1, N, K], one forward serves the targets and the loss
        with torch.no_grad():
            values = twohot_mean(torch.softmax(critic_logits.detach().float(), -1), self.critic.bins)  # [H + 1, N]
            returns = lambda_returns(traj.rewards.detach(), values, cfg.discount, cfg.lambda_gae)  # [H, N]
            scale = self.return_norm.update(returns)  # 0-dim, >= floor
            advantage = (returns - values[:-1]) / scale  # [H, N]
            slow_values = self.slow_critic.mean(x[:-1])  # [H, N]

        if dynamics:
            frozen = {name: param.detach() for name, param in self.critic.named_parameters()}
            path_logits = functional_call(self.critic, frozen, (traj.inputs,))  # [H + 1, N, K]
            path_values = twohot_mean(torch.softmax(path_logits.float(), -1), self.critic.bins)  # [H + 1, N]
            path_returns = lambda_returns(traj.rewards, path_values, cfg.discount, cfg.lambda_gae)  # [H, N]
            actor_loss = -(weight * path_returns / scale).mean()
        else:
            assert traj.actions is not None and isinstance(self.actor, Actor)
            logp = self.actor(x[:-1])  # [H, N, L]
            logp_action = logp.gather(-1, traj.actions.unsqueeze(-1)).squeeze(-1)  # [H, N]
            entropy = -(logp.exp() * logp).sum(-1)  # [H, N]
            actor_loss = -(weight * (advantage * logp_action + cfg.entropy_coef * entropy)).mean()
        critic_nll = twohot_cross_entropy(critic_logits[:-1], returns, self.critic.bins)  # [H, N]
        critic_slow_nll = twohot_cross_entropy(critic_logits[:-1], slow_values, self.critic.bins)  # [H, N]
        critic_loss = (weight * (critic_nll + cfg.critic_ema_regulariser * critic_slow_nll)).mean()
        loss = actor_loss + critic_loss
        for name, term in (("actor", actor_loss), ("critic", critic_loss)):
            if not torch.isfinite(term):
                raise NonFiniteError(f"policy {name} loss is {term.item()}")

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.actor_grad_clip)
        critic_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.critic_grad_clip)
        for name, norm in (("actor", actor_norm), ("critic", critic_norm)):
            if not torch.isfinite(norm):
                raise NonFiniteError(f"policy {name} gradient norm is {norm.item()}")
        self.optimizer.step()
        self._update_slow_critic()

        with torch.no_grad():
            positions = traj.positions.detach()
            terms = {
                "actor/loss": actor_loss,
                "actor/advantage_abs": advantage.abs().mean(),
                "actor/grad_norm": actor_norm,
                "critic/loss": critic_loss,
                "critic/nll": critic_nll.mean(),
                "critic/value": values.mean(),
                "critic/grad_norm": critic_norm,
                "imagined/return": returns[0].mean(),  # λ-return from the start states, reward units
                "imagined/reward": traj.rewards.mean(),
                "imagined/net_return_bps": traj.net_returns.mean() * 1e4,
                "imagined/predicted_return_bps": traj.predicted_returns.mean() * 1e4,
                "imagined/abs_position": positions.abs().mean(),
                "imagined/turnover": (positions - torch.cat([portfolio.position[None], positions[:-1]])).abs().mean(),
                "imagined/hold_fraction": (positions == torch.cat([portfolio.position[None], positions[:-1]]))
                .float()
                .mean(),
                "return_norm/scale": scale,
                "return_norm/low": self.return_norm.low,
                "return_norm/high": self.return_norm.high,
            }
            if traj.actions is not None:
                mean_entropy = entropy.mean()
                counts = torch.bincount(traj.actions.flatten(), minlength=len(cfg.position_levels))
                terms |= {
                    "actor/entropy": mean_entropy,
                    # > 1: the advantages, not the entropy bonus, set the direction of the policy gradient
                    "actor/advantage_to_entropy": advantage.abs().mean() / (cfg.entropy_coef * mean_entropy),
                }
                terms |= {
                    action_share_name(level): counts[i] / counts.sum() for i, level in enumerate(cfg.position_levels)
                }
            values_list = torch.stack([term.float().to(x.device) for term in terms.values()]).tolist()  # one sync
            metrics = dict(zip(terms, values_list, strict=True))
        # the accounts seed the next update: cut them from this update's graph
        return dataclasses.replace(traj, final_portfolio=traj.final_portfolio.detach()), metrics

    @torch.no_grad()
    def _update_slow_critic(self) -> None:
        mix = 1.0 - self.cfg.critic_ema_decay
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, mix)
