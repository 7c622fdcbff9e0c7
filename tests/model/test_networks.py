"""The one-hot first layer of the heads against the dense layer it replaces (float64, small sizes)."""

from __future__ import annotations

import torch

from dreamer.model.distributions import straight_through_sample, unimix_probs
from dreamer.model.networks import MLP, OneHotBlock, one_hot_linear

LEAD, DENSE, STOCH, CLASSES, HIDDEN = (3, 5), 4, 3, 6, 7


def straight_through_latent() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, straight-through one-hot `z [3, 5, S·K]`, hot classes `[3, 5, S]`), in float64."""
    logits = torch.randn(*LEAD, STOCH, CLASSES, dtype=torch.float64, requires_grad=True)
    probs = unimix_probs(logits, 0.01).double()
    z = straight_through_sample(probs, torch.rand(*LEAD, STOCH, 1, dtype=torch.float64))  # [3, 5, S, K]
    return logits, z.flatten(-2), z.detach().argmax(-1)


def test_one_hot_linear_matches_the_dense_layer_and_its_gradients() -> None:
    torch.manual_seed(0)
    logits, z, index = straight_through_latent()
    x = torch.randn(*LEAD, DENSE, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(HIDDEN, DENSE + STOCH * CLASSES, dtype=torch.float64, requires_grad=True)
    target = torch.randn(*LEAD, HIDDEN, dtype=torch.float64)

    def grads(out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad((out * target).sum(), (x, weight, logits), retain_graph=True)

    block = OneHotBlock.of(z, CLASSES)
    assert torch.equal(block.index, index)
    dense = torch.cat([x, z], -1) @ weight.T
    sparse = one_hot_linear(x, block, weight)
    torch.testing.assert_close(sparse, dense)
    for got, expected in zip(grads(sparse), grads(dense), strict=True):
        torch.testing.assert_close(got, expected)  # includes the straight-through gradient to the logits


def test_mlp_with_a_one_hot_block_equals_the_mlp_on_the_concatenation() -> None:
    torch.manual_seed(1)
    mlp = MLP(DENSE + STOCH * CLASSES, HIDDEN, 2, 2).double()
    logits, z, index = straight_through_latent()
    x = torch.randn(*LEAD, DENSE, dtype=torch.float64)
    dense = mlp(torch.cat([x, z], -1))
    sparse = mlp(x, OneHotBlock(z, index, CLASSES))
    torch.testing.assert_close(sparse, dense)
    expected = torch.autograd.grad(dense.square().sum(), [logits, *mlp.parameters()], retain_graph=True)
    got = torch.autograd.grad(sparse.square().sum(), [logits, *mlp.parameters()])
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
