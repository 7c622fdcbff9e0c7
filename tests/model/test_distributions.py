"""symlog/symexp, twohot over symlog-spaced bins, unimix categoricals and straight-through samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import (
    categorical_entropy,
    categorical_kl,
    categorical_mode,
    straight_through_sample,
    symexp,
    symlog,
    symlog_bins,
    twohot_cross_entropy,
    twohot_encode,
    twohot_mean,
    twohot_quantile,
    twohot_std,
    unimix_probs,
)

CFG = DreamerConfig()


def test_symlog_symexp_are_inverse_and_odd() -> None:
    x = torch.tensor([-1e6, -10.0, -1e-3, 0.0, 1e-3, 1.0, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(symlog(-x), -symlog(x))
    assert symlog(torch.tensor(np.e - 1.0)).item() == pytest.approx(1.0)


def test_bins_are_symmetric_symlog_spaced_and_contain_zero() -> None:
    bins = symlog_bins(CFG.num_bins, CFG.bins_low, CFG.bins_high)
    assert bins.shape == (255,)
    assert bins[127].item() == 0.0
    assert torch.equal(bins, -bins.flip(0))
    spacing = torch.diff(symlog(bins.double()))
    torch.testing.assert_close(spacing, torch.full_like(spacing, 40 / 254), rtol=1e-5, atol=1e-5)


def test_twohot_round_trips_values_inside_the_range() -> None:
    bins = symlog_bins(255, -20.0, 20.0)
    x = torch.tensor([-523.7, -12.5, -0.3, 0.0, 0.01, 3.0, 17.25, 999.0])  # basis points
    code = twohot_encode(x, bins)  # [8, 255]
    torch.testing.assert_close(code.sum(-1), torch.ones(8))
    assert ((code > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(twohot_mean(code, bins), x, rtol=1e-5, atol=1e-6)


def test_twohot_clips_outside_the_range() -> None:
    bins = symlog_bins(7, -2.0, 2.0)
    code = twohot_encode(torch.tensor([1e9, -1e9]), bins)
    assert code[0, -1] == 1.0 and code[1, 0] == 1.0


def test_twohot_cross_entropy_is_minimised_by_the_twohot_code() -> None:
    bins = symlog_bins(63, -20.0, 20.0)
    x = torch.tensor([4.2, -0.7])
    logits = torch.zeros(2, 63, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        optimiser.zero_grad()
        twohot_cross_entropy(logits, x, bins).sum().backward()
        optimiser.step()
    probs = torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(probs, twohot_encode(x, bins), atol=0.02, rtol=0)
    torch.testing.assert_close(twohot_mean(probs, bins), x, atol=0.05, rtol=0)


def test_uniform_distribution_has_exactly_zero_mean() -> None:
    """The zero-initialised head starts from a zero forecast, despite bins of ±5e8 in float32."""
    bins = symlog_bins(255, -20.0, 20.0)
    probs = torch.softmax(torch.zeros(3, 255), -1)
    assert torch.equal(twohot_mean(probs, bins), torch.zeros(3))


def realistic_returns(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """5-minute-like log returns: std ~1e-3 with fat tails (Student t, 3 d.o.f.)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(3, n) / np.sqrt(3.0) * 1e-3).astype(np.float32)


def histogram_stats(returns: np.ndarray, unit: float) -> tuple[float, float]:
    """Mean and std (natural units) of the returns' twohot histogram over the default bins in `unit`s."""
    bins = symlog_bins(CFG.num_bins, CFG.bins_low, CFG.bins_high).double()
    probs = twohot_encode(torch.from_numpy(returns).double() * unit, bins).mean(0)
    return twohot_mean(probs, bins).item() / unit, twohot_std(probs, bins).item() / unit


def test_bins_resolve_five_minute_returns_in_basis_points() -> None:
    """In bps (cfg.return_unit) the bins keep a realistic return distribution's mean and std; in natural
    units every return falls into the two bins around 0 (0.17 wide), inflating the std tenfold."""
    returns = realistic_returns()
    mean_bps, std_bps = histogram_stats(returns, CFG.return_unit)
    assert mean_bps == pytest.approx(float(returns.mean()), abs=1e-6)
    assert std_bps == pytest.approx(float(returns.std()), rel=0.01)
    _, std_natural = histogram_stats(returns, 1.0)
    assert std_natural > 10 * returns.std()


def test_twohot_head_learns_a_realistic_return_distribution() -> None:
    """Fit free logits to 20k realistic returns with the twohot loss: the learned distribution's mean
    matches the sample's to 0.1 bps and its quantiles (5 % … 95 %) to within one bin width, which is the
    resolution of 255 bins over ±20 in symlog space: 0.157·(1 + |r| in bps), 0.8 bps at the quartiles.

    The mean cross-entropy over the sample is linear in the twohot targets, so it equals the cross-entropy
    against their average (the sample's twohot histogram): same loss and gradients, 20k times cheaper."""
    returns = torch.from_numpy(realistic_returns())
    bins = symlog_bins(CFG.num_bins, CFG.bins_low, CFG.bins_high)
    histogram = twohot_encode(returns * CFG.return_unit, bins).mean(0)  # [K]
    logits = torch.zeros(CFG.num_bins, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(1500):
        optimiser.zero_grad()
        (-(histogram * torch.log_softmax(logits, -1)).sum()).backward()
        optimiser.step()
    probs = torch.softmax(logits.detach(), -1)
    values = bins / CFG.return_unit
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    learned = torch.stack([twohot_quantile(probs, values, q) for q in levels])
    expected = torch.quantile(returns, torch.tensor(levels))
    bin_width = (CFG.bins_high - CFG.bins_low) / (CFG.num_bins - 1) * (1 + expected.abs() * CFG.return_unit)
    assert ((learned - expected).abs() * CFG.return_unit <= bin_width).all(), (learned, expected)
    assert abs(twohot_mean(probs, values).item() - returns.mean().item()) < 1e-5


def test_unimix_keeps_every_class_and_normalises() -> None:
    logits = torch.tensor([[50.0, 0.0, -50.0, 0.0]])
    probs = unimix_probs(logits, 0.01)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    assert probs.min().item() >= 0.01 / 4 - 1e-9
    assert torch.isfinite(probs.log()).all()


def test_straight_through_sample_is_one_hot_with_probability_gradients() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 4, requires_grad=True)
    probs = unimix_probs(logits, 0.01)
    sample = straight_through_sample(probs, torch.rand(5, 3, 1))
    assert set(sample.detach().unique().tolist()) == {0.0, 1.0}
    assert torch.equal(sample.detach().sum(-1), torch.ones(5, 3))
    weights = torch.randn(5, 3, 4)
    (grad_sample,) = torch.autograd.grad((sample * weights).sum(), logits, retain_graph=True)
    (grad_probs,) = torch.autograd.grad((probs * weights).sum(), logits)
    torch.testing.assert_close(grad_sample, grad_probs)


def test_straight_through_samples_follow_the_probabilities() -> None:
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(200_000, 4)
    counts = straight_through_sample(probs, torch.rand(200_000, 1)).mean(0)
    torch.testing.assert_close(counts, probs[0], atol=0.005, rtol=0)


def test_kl_and_entropy_match_the_definitions() -> None:
    torch.manual_seed(0)
    p = unimix_probs(torch.randn(2, 3, 5), 0.01)
    q = unimix_probs(torch.randn(2, 3, 5), 0.01)
    reference_kl = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=p), torch.distributions.Categorical(probs=q)
    ).sum(-1)
    torch.testing.assert_close(categorical_kl(p, p.log(), q.log()), reference_kl)
    reference_entropy = torch.distributions.Categorical(probs=p).entropy().sum(-1)
    torch.testing.assert_close(categorical_entropy(p, p.log()), reference_entropy)
    assert torch.equal(categorical_mode(p).argmax(-1), p.argmax(-1))
