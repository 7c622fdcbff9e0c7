"""The world model's API contract (docs/ARCHITECTURE.md) and its loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dreamer.model.distributions import twohot_mean
from dreamer.model.kl import kl_weights
from dreamer.model.world_model import WorldModel
from tests.model.conftest import LOSS_TERMS, TINY

B, T, F = 3, 6, 4


def make_model(**overrides: object) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(F, dataclasses.replace(TINY, **overrides))  # type: ignore[arg-type]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(B, T, F, generator=generator), torch.randn(B, T, generator=generator) * 1e-3


def test_api_shapes() -> None:
    model = make_model()
    obs, _ = batch()
    d, stoch = TINY.deterministic_size, TINY.stochastic_size * TINY.num_categories
    assert model.feature_size == d + stoch and model.action_dim == 0
    post = model.observe(obs)
    assert post.h.shape == (B, T, d) and post.z.shape == (B, T, stoch)
    assert model.features(post).shape == (B, T, d + stoch)
    state = model.observe_step(model.initial_state(B), obs[:, 0])
    assert state.h.shape == (B, d) and state.z.shape == (B, stoch)
    imagined = model.imagine_step(post.flatten())
    assert imagined.h.shape == (B * T, d)
    features = model.features(imagined)
    assert model.predict_return(features).shape == (B * T,)
    probs, values = model.return_distribution(features)
    assert probs.shape == (B * T, TINY.num_bins) and values.shape == (TINY.num_bins,)


def test_loss_terms_are_named_and_combine_as_in_the_paper() -> None:
    model = make_model()
    loss, metrics, post = model.loss(*batch())
    assert loss.shape == () and set(metrics) == LOSS_TERMS
    assert post.h.shape == (B, T, TINY.deterministic_size)
    torch.testing.assert_close(metrics["loss/pred"], metrics["loss/decoder"] + metrics["loss/reward"])
    w_dyn, w_rep = kl_weights(TINY)
    expected = TINY.beta_pred * metrics["loss/pred"] + w_dyn * metrics["loss/dyn"] + w_rep * metrics["loss/rep"]
    torch.testing.assert_close(metrics["loss/total"], expected)
    assert all(not value.requires_grad for value in metrics.values())


def test_one_backward_reaches_every_parameter() -> None:
    model = make_model()
    loss, _, _ = model.loss(*batch())
    loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    # The zero output layer of the return head blocks the first gradient into the layers below it.
    zero = {name for name, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0}
    assert zero == {name for name, _ in model.reward.mlp.body.named_parameters(prefix="reward.mlp.body")}


def test_return_head_starts_at_a_zero_forecast_in_natural_units() -> None:
    model = make_model(num_bins=255)
    features = model.features(model.observe(batch()[0]))
    assert torch.equal(model.predict_return(features), torch.zeros(B, T))
    probs, values = model.return_distribution(features)
    torch.testing.assert_close(probs, torch.full_like(probs, 1 / 255))
    torch.testing.assert_close(values, model.reward.bins / TINY.return_unit)


def test_predict_return_is_the_mean_of_return_distribution() -> None:
    model = make_model()
    with torch.no_grad():
        model.reward.mlp.out.bias.copy_(torch.linspace(-3.0, 1.0, TINY.num_bins))  # type: ignore[union-attr]
    features = model.features(model.observe(batch()[0]))
    probs, values = model.return_distribution(features)
    prediction = model.predict_return(features)
    torch.testing.assert_close(prediction, twohot_mean(probs, values))
    assert prediction.abs().max() > 0


def test_missing_returns_are_masked_out_of_the_reward_loss() -> None:
    model = make_model()
    obs, returns = batch()
    returns[:, -1] = float("nan")  # the last bar of a segment has no next return
    torch.manual_seed(5)
    loss, metrics, post = model.loss(obs, returns)
    assert torch.isfinite(loss)
    nll = model.reward.loss(model.features(post), returns.nan_to_num(0.0))
    torch.testing.assert_close(metrics["loss/reward"], nll[:, :-1].mean().detach())


def test_encoder_reads_symlog_inputs_so_outliers_stay_finite() -> None:
    model = make_model()
    obs, returns = batch()
    obs[0, 0, 0] = 1e30
    loss, _, _ = model.loss(obs, returns)
    assert torch.isfinite(loss)


def test_actions_feed_the_dynamics_only_when_configured() -> None:
    model = make_model(world_model_uses_action=True, actor_grad="reinforce")
    assert model.action_dim == len(TINY.position_levels)
    obs, returns = batch()
    with pytest.raises(ValueError, match="uses_action"):
        model.loss(obs, returns)
    actions = torch.nn.functional.one_hot(torch.randint(model.action_dim, (B, T)), model.action_dim).float()
    loss, _, _ = model.loss(obs, returns, actions)
    assert torch.isfinite(loss)
