"""RSSM mechanics: shapes, the filtering loop against single steps, the GRU's update bias, actions."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import unimix_probs
from dreamer.model.networks import LayerNormGRUCell
from dreamer.model.rssm import RSSM, RSSMState
from tests.model.conftest import TINY

B, T, E = 3, 7, 5
STOCH = TINY.stochastic_size * TINY.num_categories


def make_rssm(cfg: DreamerConfig = TINY, action_size: int = 0) -> RSSM:
    torch.manual_seed(0)
    return RSSM(E, action_size, cfg)


def test_observe_shapes_and_one_hot_latents() -> None:
    rssm = make_rssm()
    post, post_probs = rssm.observe(torch.randn(B, T, E))
    assert post.h.shape == (B, T, TINY.deterministic_size)
    assert post.z.shape == (B, T, STOCH)
    assert post_probs.shape == (B, T, TINY.stochastic_size, TINY.num_categories)
    z = post.z.detach().unflatten(-1, (TINY.stochastic_size, TINY.num_categories))
    assert torch.equal(z.sum(-1), torch.ones(B, T, TINY.stochastic_size))
    torch.testing.assert_close(post_probs.sum(-1), torch.ones(B, T, TINY.stochastic_size))


def test_observe_loop_matches_the_equations_step_by_step() -> None:
    """h_t = f(h_{t-1}, z_{t-1}) from the learned initial state, and q(z_t | h_t, e_t) at every step."""
    rssm = make_rssm()
    embed = torch.randn(B, T, E)
    with torch.no_grad():
        post, post_probs = rssm.observe(embed)
        state = rssm.initial_state(B)
        for t in range(T):
            h = rssm.deterministic_step(state, None)
            torch.testing.assert_close(post.h[:, t], h)
            logits = rssm.posterior(h, rssm.posterior.project_embed(embed[:, t]))
            torch.testing.assert_close(post_probs[:, t], unimix_probs(logits, TINY.unimix))
            state = RSSMState(h, post.z[:, t])


def test_observe_continues_from_a_given_state() -> None:
    rssm = make_rssm()
    embed = torch.randn(B, T, E)
    with torch.no_grad():
        first, _ = rssm.observe(embed[:, :3])
        torch.manual_seed(1)
        rest, _ = rssm.observe(embed[:, 3:], state=RSSMState(first.h[:, -1], first.z[:, -1]))
        h = rssm.deterministic_step(RSSMState(first.h[:, -1], first.z[:, -1]), None)
    torch.testing.assert_close(rest.h[:, 0], h)


def test_single_steps_and_imagination_shapes() -> None:
    rssm = make_rssm()
    state = rssm.initial_state(B)
    assert state.h.shape == (B, TINY.deterministic_size) and state.z.shape == (B, STOCH)
    state, probs = rssm.observe_step(state, torch.randn(B, E), None)
    assert state.z.shape == (B, STOCH) and probs.shape == (B, TINY.stochastic_size, TINY.num_categories)
    imagined = rssm.imagine_step(state, None)
    assert imagined.h.shape == (B, TINY.deterministic_size) and imagined.z.shape == (B, STOCH)
    flat = RSSMState(torch.zeros(2, 3, 4), torch.zeros(2, 3, 6)).flatten()
    assert flat.h.shape == (6, 4) and flat.z.shape == (6, 6)


def test_learned_initial_state_receives_gradients() -> None:
    rssm = make_rssm()
    post, post_probs = rssm.observe(torch.randn(B, T, E))
    (post.h.sum() + post_probs.log().sum()).backward()
    assert rssm.initial_h.grad is not None and rssm.initial_h.grad.abs().sum() > 0


def test_gradients_flow_through_the_straight_through_latents() -> None:
    rssm = make_rssm()
    embed = torch.randn(B, T, E, requires_grad=True)
    post, _ = rssm.observe(embed)
    (post.z[:, -1] * torch.randn(STOCH)).sum().backward()
    assert embed.grad is not None and embed.grad[:, -1].abs().sum() > 0


def test_gru_update_gate_starts_biased_towards_keeping_the_state() -> None:
    """With all weights zero, LN(·) = its bias: h' = σ(−1)·tanh(σ(0)·0) + (1 − σ(−1))·h = (1 − σ(−1))·h."""
    cell = LayerNormGRUCell(3, 4)
    with torch.no_grad():
        cell.linear.weight.zero_()
    h = torch.randn(2, 4)
    torch.testing.assert_close(cell(torch.randn(2, 3), h), (1 - torch.sigmoid(torch.tensor(-1.0))) * h)


def test_actions_are_required_only_when_configured() -> None:
    cfg = dataclasses.replace(TINY, world_model_uses_action=True, actor_grad="reinforce")
    rssm = make_rssm(cfg, action_size=5)
    with pytest.raises(ValueError, match="uses_action"):
        rssm.observe(torch.randn(B, T, E))
    actions = torch.nn.functional.one_hot(torch.randint(5, (B, T)), 5).float()
    post, _ = rssm.observe(torch.randn(B, T, E), actions)
    assert post.h.shape == (B, T, TINY.deterministic_size)
    state = RSSMState(post.h[:, -1], post.z[:, -1])
    moved = [rssm.deterministic_step(state, torch.eye(5)[[i] * B]) for i in range(2)]
    assert not torch.allclose(moved[0], moved[1])


def test_default_rssm_has_no_action_input() -> None:
    rssm = make_rssm(DreamerConfig())
    assert DreamerConfig().world_model_uses_action is False
    assert rssm.img_in.linear.in_features == 30 * 32


def test_model_code_uses_no_torch_distributions() -> None:
    """The inner loops use plain tensor functions (speed); torch.distributions objects would dominate them."""
    usage = re.compile(r"torch\.distributions\.[A-Za-z]|(from|import) torch\.distributions|import distributions")
    model_dir = Path(__file__).resolve().parents[2] / "dreamer" / "model"
    for path in model_dir.glob("*.py"):
        assert not usage.search(path.read_text(encoding="utf-8")), path.name
