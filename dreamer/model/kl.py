"""The KL terms of the world-model loss, with free bits applied per time step.

With `sg` the stop-gradient, q the posterior and p the prior, per time step t (KL summed over latents):

    L_dyn(t) = max(τ, KL[sg(q_t) ‖ p_t])     trains the prior to predict the posterior
    L_rep(t) = max(τ, KL[q_t ‖ sg(p_t)])     regularises the posterior towards the prior

Both formulations share these terms and differ only in their weights (`cfg.kl_formulation`):

    'balance'    α·L_dyn + (1 − α)·L_rep          the seed's KL balancing, α = kl_balance_alpha (0.8)
    'dreamerv3'  β_dyn·L_dyn + β_rep·L_rep        DreamerV3, β_dyn = 0.5, β_rep = 0.1

Free bits clip every (sequence, time step) below at τ nats *before* averaging, so a step whose KL is
already small stops contributing gradient while other steps still do. Clipping the batch mean instead
would let large-KL steps hide small ones (and vice versa).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import categorical_kl


@dataclass(frozen=True)
class KLTerms:
    """0-dim tensors: the loss terms and the diagnostics the trainer logs."""

    loss: Tensor  # weighted sum of dyn and rep, as the formulation says
    dyn: Tensor  # mean over (B, T) of max(τ, KL[sg(q) ‖ p])
    rep: Tensor  # mean over (B, T) of max(τ, KL[q ‖ sg(p)])
    kl: Tensor  # mean KL[q ‖ p] before free bits (dyn and rep have the same value, not the same gradient)
    free_bits_active: Tensor  # share of time steps whose KL is below τ (clipped, no gradient)


def kl_weights(cfg: DreamerConfig) -> tuple[float, float]:
    """(weight of L_dyn, weight of L_rep) for `cfg.kl_formulation`."""
    if cfg.kl_formulation == "balance":
        return cfg.kl_balance_alpha, 1.0 - cfg.kl_balance_alpha
    return cfg.beta_dyn, cfg.beta_rep


def kl_loss(post_probs: Tensor, post_logp: Tensor, prior_logp: Tensor, cfg: DreamerConfig) -> KLTerms:
    """Posterior `q` as `post_probs` and `post_logp`, prior as `prior_logp`, all `[B, T, S, K]` -> `KLTerms`."""
    kl_dyn = categorical_kl(post_probs.detach(), post_logp.detach(), prior_logp)  # [B, T]
    kl_rep = categorical_kl(post_probs, post_logp, prior_logp.detach())  # [B, T]
    dyn = kl_dyn.clamp(min=cfg.free_bits).mean()
    rep = kl_rep.clamp(min=cfg.free_bits).mean()
    w_dyn, w_rep = kl_weights(cfg)
    raw = kl_dyn.detach()
    return KLTerms(
        loss=w_dyn * dyn + w_rep * rep,
        dyn=dyn,
        rep=rep,
        kl=raw.mean(),
        free_bits_active=(raw < cfg.free_bits).float().mean(),
    )
