"""Recurrent state-space model (RSSM) of DreamerV3 with categorical latents.

    deterministic path   h_t = f(h_{t-1}, z_{t-1}, a_{t-1})     LayerNorm GRU
    posterior            z_t ~ q(z_t | h_t, x_t)                 filtering: uses the observation embedding
    prior                ẑ_t ~ p(z_t | h_t)                      imagination: no observation

`z` is S independent categoricals of K classes (30 × 32 by default), each mixed with 1 % uniform and
sampled as a straight-through one-hot; the model state fed to the heads is `[h, z]` with `z` flattened to
`S·K`. Shapes: B batch, T time, D deterministic_size, H hidden_size, E embedding size, A action size.

The action input `a_{t-1}` exists for completeness (`world_model_uses_action`), but a price taker's market
does not react to our orders, so by default the RSSM has no action input at all (see `world_model.py`).

Speed: `observe` (training's filtering over B × T bars) runs as one autograd node with hand-written
backpropagation through time (`filtering.py`, tested against these modules' step-by-step autograd). The
single steps below (`observe_step`, `imagine_step`) are the same equations on these modules, for
bar-by-bar inference and imagination.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import categorical_mode, straight_through_sample, unimix_probs
from dreamer.model.filtering import filter_sequence
from dreamer.model.networks import MLP, LayerNormGRUCell, NormSiLU, init_linear


@dataclass(frozen=True)
class RSSMState:
    """Model state: `h [..., D]` deterministic, `z [..., S·K]` flattened one-hot stochastic sample."""

    h: Tensor
    z: Tensor

    def detach(self) -> RSSMState:
        return RSSMState(self.h.detach(), self.z.detach())

    def flatten(self) -> RSSMState:
        """Merge all leading axes into one: `[B, T, ·] -> [B·T, ·]` (e.g. to start imagination everywhere)."""
        return RSSMState(self.h.reshape(-1, self.h.shape[-1]), self.z.reshape(-1, self.z.shape[-1]))


class Posterior(nn.Module):
    """q(z_t | h_t, e_t): one NormSiLU layer on `[h_t, e_t]`, then the logits of S×K classes.

    The layer's matrix is split into its `h` and `e` blocks so that `W_e·e` is computed for the whole
    sequence at once (`project_embed`) and the loop only adds `W_h·h_t`.
    """

    def __init__(self, deter: int, embed: int, hidden: int, stoch: int, classes: int) -> None:
        super().__init__()
        self.h_proj = init_linear(nn.Linear(deter, hidden, bias=False))
        self.e_proj = init_linear(nn.Linear(embed, hidden, bias=False))
        self.norm = nn.LayerNorm(hidden, eps=1e-3)
        self.out = init_linear(nn.Linear(hidden, stoch * classes))
        self.stoch, self.classes = stoch, classes

    def project_embed(self, embed: Tensor) -> Tensor:
        """`e [..., E] -> W_e·e [..., H]`."""
        return self.e_proj(embed)

    def forward(self, h: Tensor, embed_proj: Tensor) -> Tensor:
        """`h [B, D]`, `W_e·e [B, H]` -> logits `[B, S, K]`."""
        hidden = F.silu(self.norm(torch.addmm(embed_proj, h, self.h_proj.weight.T)))  # W_h·h + W_e·e, one op
        return self.out(hidden).unflatten(-1, (self.stoch, self.classes))


class RSSM(nn.Module):
    def __init__(self, embed_size: int, action_size: int, cfg: DreamerConfig) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes = cfg.deterministic_size, cfg.stochastic_size, cfg.num_categories
        self.unimix = cfg.unimix
        self.action_size = action_size  # 0: no action input (the default for a price taker)
        hidden = cfg.hidden_size
        self.img_in = NormSiLU(self.stoch * self.classes + action_size, hidden)  # [z_{t-1}, a_{t-1}] -> x
        self.gru = LayerNormGRUCell(hidden, self.deter)
        self.prior = MLP(self.deter, hidden, 1, self.stoch * self.classes)  # p(z_t | h_t)
        self.posterior = Posterior(self.deter, embed_size, hidden, self.stoch, self.classes)
        self.initial_h = nn.Parameter(torch.zeros(self.deter))  # learned initial state, h_init = tanh(W)

    @property
    def stoch_size(self) -> int:
        return self.stoch * self.classes

    # --- single steps ---------------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> RSSMState:
        """Learned initial state: `h = tanh(W)`, `z` = mode of the prior at that `h`. `h [B, D]`, `z [B, S·K]`."""
        h = torch.tanh(self.initial_h).expand(batch_size, self.deter)
        z = categorical_mode(self.prior_probs(h)).flatten(-2)
        return RSSMState(h, z)

    def deterministic_step(self, state: RSSMState, action: Tensor | None) -> Tensor:
        """h_t = f(h_{t-1}, z_{t-1}, a_{t-1}): `[B, D]`."""
        inputs = state.z if self.action_size == 0 else torch.cat([state.z, self._check_action(action)], -1)
        return self.gru(self.img_in(inputs), state.h)

    def prior_probs(self, h: Tensor) -> Tensor:
        """p(z_t | h_t) with unimix: `h [..., D] -> [..., S, K]` (any leading axes)."""
        return unimix_probs(self.prior(h).unflatten(-1, (self.stoch, self.classes)), self.unimix)

    def observe_step(self, state: RSSMState, embed: Tensor, action: Tensor | None) -> tuple[RSSMState, Tensor]:
        """One filtering step: `embed [B, E]` -> (posterior state, posterior probs `[B, S, K]`)."""
        h = self.deterministic_step(state, action)
        probs = unimix_probs(self.posterior(h, self.posterior.project_embed(embed)), self.unimix)  # [B, S, K]
        z = straight_through_sample(probs, torch.rand(*probs.shape[:-1], 1, device=probs.device)).flatten(-2)
        return RSSMState(h, z), probs

    def imagine_step(self, state: RSSMState, action: Tensor | None) -> RSSMState:
        """One prior step: `h [N, D]`, `z [N, S·K]` -> next imagined state (same shapes)."""
        h = self.deterministic_step(state, action)
        probs = self.prior_probs(h)  # [N, S, K]
        z = straight_through_sample(probs, torch.rand(*probs.shape[:-1], 1, device=probs.device)).flatten(-2)
        return RSSMState(h, z)

    # --- sequences ------------------------------------------------------------------------------

    def observe(
        self, embed: Tensor, actions: Tensor | None = None, state: RSSMState | None = None
    ) -> tuple[RSSMState, Tensor]:
        """Posterior filtering over a sequence.

        `embed [B, T, E]`, `actions [B, T, A]` (`actions[:, t]` is a_{t-1}, the action taken before x_t) ->
        (state with `h [B, T, D]`, `z [B, T, S·K]`; posterior probs `[B, T, S, K]`). Starts from `state`
        (`[B, ·]`) or the learned initial state.
        """
        batch, steps = embed.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        embed_proj = self.posterior.project_embed(embed)  # [B, T, H]
        action_proj = None  # [B, T, H]: W_a·a_{t-1}, the action block's share of img_in
        if self.action_size:
            action_proj = self._check_action(actions) @ self.img_in.linear.weight[:, self.stoch_size :].T
        uniform = torch.rand(steps, batch, self.stoch, 1, device=embed.device)  # [T, B, S, 1]
        h, z, probs = filter_sequence(
            self.img_in, self.gru, self.posterior, state.h, state.z, embed_proj, action_proj, uniform, self.unimix
        )
        return RSSMState(h, z), probs

    def _check_action(self, action: Tensor | None) -> Tensor:
        if action is None:
            raise ValueError("this world model was built with world_model_uses_action=true: pass the actions")
        if action.shape[-1] != self.action_size:
            raise ValueError(f"expected actions with {self.action_size} features, got shape {tuple(action.shape)}")
        return action
