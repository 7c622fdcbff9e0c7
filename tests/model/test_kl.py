"""Both KL formulations and the per-time-step free bits, on hand-built categoricals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dreamer.model.config import DreamerConfig
from dreamer.model.kl import kl_loss, kl_weights


def two_class_logp(p: float) -> torch.Tensor:
    """log([p, 1 − p]) as one latent of two classes: `[1, 2]`."""
    return torch.tensor([[math.log(p), math.log(1.0 - p)]])


def kl_bernoulli(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def hand_built(pairs: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior and prior logits `[B=1, T, S=1, K=2]` with step t holding (posterior p_t, prior q_t)."""
    post = torch.stack([two_class_logp(p) for p, _ in pairs])[None]
    prior = torch.stack([two_class_logp(q) for _, q in pairs])[None]
    return post.requires_grad_(), prior.requires_grad_()


# Step 0's KL (0.0204 nats) is below the 1-nat free bits, step 1's (1.5081) above.
PAIRS = [(0.6, 0.5), (0.999, 0.2)]
KLS = [kl_bernoulli(p, q) for p, q in PAIRS]


def test_the_hand_built_steps_straddle_the_free_bits() -> None:
    assert KLS[0] < 1.0 < KLS[1]


@pytest.mark.parametrize("formulation", ["balance", "dreamerv3"])
def test_free_bits_clip_each_time_step_not_the_batch_mean(formulation: str) -> None:
    cfg = DreamerConfig(kl_formulation=formulation, free_bits=1.0)
    post, prior = hand_built(PAIRS)
    terms = kl_loss(post.exp(), post, prior, cfg)
    per_step = (max(1.0, KLS[0]) + max(1.0, KLS[1])) / 2  # 1.254
    clipped_mean = max(1.0, sum(KLS) / 2)  # 1.0: what clipping the mean would give
    assert terms.dyn.item() == pytest.approx(per_step, rel=1e-5)
    assert terms.rep.item() == pytest.approx(per_step, rel=1e-5)
    assert abs(per_step - clipped_mean) > 0.2
    assert terms.kl.item() == pytest.approx(sum(KLS) / 2, rel=1e-5)
    assert terms.free_bits_active.item() == 0.5


@pytest.mark.parametrize(("formulation", "w_dyn", "w_rep"), [("balance", 0.8, 0.2), ("dreamerv3", 0.5, 0.1)])
def test_formulations_weight_dyn_and_rep_as_the_equations_say(formulation: str, w_dyn: float, w_rep: float) -> None:
    """balance: α·KL[sg(q)‖p] + (1−α)·KL[q‖sg(p)]; dreamerv3: β_dyn·max(τ, KL[sg(q)‖p]) + β_rep·max(τ, KL[q‖sg(p)])."""
    cfg = DreamerConfig(kl_formulation=formulation)
    assert kl_weights(cfg) == pytest.approx((w_dyn, w_rep))
    post, prior = hand_built(PAIRS)
    terms = kl_loss(post.exp(), post, prior, cfg)
    expected = (w_dyn + w_rep) * (1.0 + KLS[1]) / 2
    assert terms.loss.item() == pytest.approx(expected, rel=1e-5)

    # Gradients: the prior learns only from the dyn term, the posterior only from the rep term.
    post_grad, prior_grad = torch.autograd.grad(terms.loss, (post, prior))
    kl_step1 = torch.nn.functional.kl_div(prior[0, 1], post[0, 1], log_target=True, reduction="sum")
    ref_post, ref_prior = torch.autograd.grad(kl_step1, (post, prior))
    torch.testing.assert_close(prior_grad[0, 1], w_dyn / 2 * ref_prior[0, 1])
    torch.testing.assert_close(post_grad[0, 1], w_rep / 2 * ref_post[0, 1])
    # The clipped step contributes no gradient at all.
    assert torch.equal(post_grad[0, 0], torch.zeros_like(post_grad[0, 0]))
    assert torch.equal(prior_grad[0, 0], torch.zeros_like(prior_grad[0, 0]))


def test_balance_alpha_moves_weight_between_prior_and_posterior() -> None:
    post, prior = hand_built(PAIRS)
    base = DreamerConfig(kl_formulation="balance")
    for alpha in (0.0, 0.3, 1.0):
        terms = kl_loss(post.exp(), post, prior, dataclasses.replace(base, kl_balance_alpha=alpha))
        post_grad, prior_grad = torch.autograd.grad(terms.loss, (post, prior))
        assert (prior_grad.abs().sum() == 0) == (alpha == 0.0)
        assert (post_grad.abs().sum() == 0) == (alpha == 1.0)


def test_no_free_bits_gives_the_plain_kl() -> None:
    post, prior = hand_built(PAIRS)
    terms = kl_loss(post.exp(), post, prior, DreamerConfig(free_bits=0.0, kl_formulation="dreamerv3"))
    assert terms.dyn.item() == pytest.approx(sum(KLS) / 2, rel=1e-5)
    assert terms.free_bits_active.item() == 0.0
