"""The fused filtering loop (`dreamer/model/filtering.py`) against the same equations written step by step
with autograd: identical states and samples, identical gradients for every parameter and input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from dreamer.model import filtering
from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import straight_through_sample, unimix_probs
from dreamer.model.rssm import RSSM, RSSMState
from tests.model.conftest import TINY

B, T, E, A = 3, 9, 5, 4


def reference_observe(
    rssm: RSSM, embed: torch.Tensor, actions: torch.Tensor | None, state: RSSMState, uniform: torch.Tensor
) -> tuple[RSSMState, torch.Tensor]:
    """h_t = f(h_{t-1}, z_{t-1}, a_{t-1}), q(z_t | h_t, e_t), z_t ~ q: one autograd-recorded step at a time."""
    hs, zs, probs_seq = [], [], []
    for t in range(embed.shape[1]):
        h = rssm.deterministic_step(state, None if actions is None else actions[:, t])
        probs = unimix_probs(rssm.posterior(h, rssm.posterior.project_embed(embed[:, t])), rssm.unimix)
        state = RSSMState(h, straight_through_sample(probs, uniform[t]).flatten(-2))
        hs.append(h)
        zs.append(state.z)
        probs_seq.append(probs)
    return RSSMState(torch.stack(hs, 1), torch.stack(zs, 1)), torch.stack(probs_seq, 1)


def loss_and_grads(
    rssm: RSSM,
    observe: Callable[[], tuple[RSSMState, torch.Tensor]],
    inputs: list[torch.Tensor],
    cotangents: list[torch.Tensor],
) -> tuple[RSSMState, torch.Tensor, tuple[torch.Tensor | None, ...]]:
    post, probs = observe()
    # every output matters, like in the world-model loss: h and z feed the heads, q the KL (through its log)
    loss = (post.h * cotangents[0]).sum() + (post.z * cotangents[1]).sum() + (probs.log() * cotangents[2]).sum()
    leaves = [*rssm.parameters(), *inputs]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return post, probs, grads


@pytest.mark.parametrize(
    ("uses_action", "from_state", "unimix"),
    [(False, False, 0.01), (True, False, 0.01), (False, True, 0.01), (True, True, 0.0)],
)
def test_fused_filtering_matches_the_step_by_step_equations(uses_action: bool, from_state: bool, unimix: float) -> None:
    cfg = dataclasses.replace(TINY, unimix=unimix, world_model_uses_action=uses_action, actor_grad="reinforce")
    torch.manual_seed(0)
    rssm = RSSM(E, A if uses_action else 0, cfg)
    with torch.no_grad():  # non-trivial norm parameters, so their gradients are tested for real
        for module in rssm.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.3 * torch.randn_like(module.weight))
                module.bias.add_(0.3 * torch.randn_like(module.bias))
    embed = torch.randn(B, T, E, requires_grad=True)
    actions = torch.nn.functional.one_hot(torch.randint(A, (B, T)), A).float().requires_grad_() if uses_action else None
    start_h = torch.randn(B, cfg.deterministic_size, requires_grad=True)
    stoch = cfg.stochastic_size * cfg.num_categories
    start_z = torch.nn.functional.one_hot(
        torch.randint(cfg.num_categories, (B, cfg.stochastic_size)), cfg.num_categories
    )
    start_z = start_z.float().flatten(-2).requires_grad_()
    state = RSSMState(start_h, start_z) if from_state else None
    inputs = [embed] + ([actions] if actions is not None else []) + ([start_h, start_z] if from_state else [])
    cotangents = [torch.randn(B, T, cfg.deterministic_size), torch.randn(B, T, stoch)]
    cotangents.append(torch.randn(B, T, cfg.stochastic_size, cfg.num_categories))

    torch.manual_seed(7)
    fused = loss_and_grads(rssm, lambda: rssm.observe(embed, actions, state), inputs, cotangents)
    torch.manual_seed(7)
    uniform = torch.rand(T, B, cfg.stochastic_size, 1)  # the same noise that observe draws
    reference = loss_and_grads(
        rssm,
        lambda: reference_observe(rssm, embed, actions, state or rssm.initial_state(B), uniform),
        inputs,
        cotangents,
    )

    assert torch.equal(fused[0].z, reference[0].z), "the same noise must give the same samples"
    torch.testing.assert_close(fused[0].h, reference[0].h)
    torch.testing.assert_close(fused[1], reference[1])
    names = [name for name, _ in rssm.named_parameters()] + [f"input {i}" for i in range(len(inputs))]
    for name, got, want in zip(names, fused[2], reference[2], strict=True):
        if want is None:
            assert got is None or not got.any(), name
            continue
        assert got is not None, name
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_fused_filtering_runs_without_autograd() -> None:
    rssm = RSSM(E, 0, DreamerConfig(deterministic_size=8, stochastic_size=3, num_categories=4, hidden_size=6))
    with torch.no_grad():
        post, probs = rssm.observe(torch.randn(B, T, E))
    assert not post.h.requires_grad and torch.isfinite(probs).all()


def test_inference_keeps_no_trace_and_filters_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without gradients (a frozen model under no_grad, as in the backtest) the loop keeps no backward trace:
    the same states, samples and probabilities, and nothing saved for a backward pass."""
    torch.manual_seed(0)
    rssm = RSSM(E, 0, TINY)
    embed = torch.randn(B, 40, E)
    torch.manual_seed(1)
    traced, traced_probs = rssm.observe(embed)
    assert traced.h.grad_fn is not None
    rssm.requires_grad_(False)
    torch.manual_seed(1)
    with torch.no_grad():
        untraced, untraced_probs = rssm.observe(embed)
    assert untraced.h.grad_fn is None
    assert torch.equal(untraced.h, traced.h) and torch.equal(untraced.z, traced.z)
    assert torch.equal(untraced_probs, traced_probs)

    traces: list[object] = []  # the per-step records the backward pass would need

    def counted(*columns: object) -> object:
        traces.append(columns)
        return trace_type(*columns)

    trace_type = filtering._Trace
    monkeypatch.setattr(filtering, "_Trace", counted)
    with torch.no_grad():
        rssm.observe(embed)
    assert traces == []
    rssm.requires_grad_(True)
    rssm.observe(embed)  # training: one record a step, and one stacked
    assert len(traces) == 40 + 1
