"""Plain tensor functions for DreamerV3's distributions: symlog, twohot and unimix categoricals.

No `torch.distributions` objects: the RSSM calls these inside its per-step loop, where constructing
distribution objects (argument validation, broadcasting checks) would dominate the cost of the maths.

Conventions: categorical latents are carried as probabilities `[..., S, K]` *after* the 1 % uniform mix
(and their logarithms where needed), so every KL and entropy below is finite by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1 + |x|): compresses large magnitudes, identity-like near zero."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of `symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


# --- twohot over symlog-spaced bins ---------------------------------------------------------------


def symlog_bins(num_bins: int, low: float, high: float, device: torch.device | str | None = None) -> Tensor:
    """`[num_bins]` bin values `symexp(linspace(low, high, num_bins))`: equally spaced in symlog space.

    With `low == -high` the bins are exactly symmetric around a zero bin, which `twohot_mean` relies on to
    return exactly 0 for a symmetric (e.g. freshly initialised) distribution.
    """
    grid = torch.linspace(low, high, num_bins, dtype=torch.float64)
    if low == -high:  # linspace is symmetric only up to rounding; make it exact (and the middle bin 0)
        grid = (grid - grid.flip(0)) / 2
    return symexp(grid).to(dtype=torch.float32, device=device)


def twohot_weights(x: Tensor, bins: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Twohot code of `x [...]` over sorted `bins [K]` as (below [...] long, above [...] long, w_above [...]).

    The mass `1 - w_above` sits on `bins[below]` and `w_above` on `bins[above]`, linear in value space, so
    `(1 - w)·bins[below] + w·bins[above] == x` exactly for x inside the bin range (clipped outside it).
    """
    x = x.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, x.detach().contiguous()).clamp(1, bins.shape[0] - 1)  # [...]
    below = above - 1
    low, high = bins[below], bins[above]
    w_above = ((x - low) / (high - low)).clamp(0.0, 1.0)
    return below, above, w_above


def twohot_encode(x: Tensor, bins: Tensor) -> Tensor:
    """`x [...]` -> twohot target `[..., K]` (used by tests and for building histograms)."""
    below, above, w_above = twohot_weights(x, bins)
    target = torch.zeros(*x.shape, bins.shape[0], dtype=bins.dtype, device=x.device)
    target.scatter_(-1, below.unsqueeze(-1), (1.0 - w_above).unsqueeze(-1))
    target.scatter_add_(-1, above.unsqueeze(-1), w_above.unsqueeze(-1))
    return target


def twohot_cross_entropy(logits: Tensor, x: Tensor, bins: Tensor) -> Tensor:
    """−log-likelihood of the twohot code of `x [...]` under `logits [..., K]`; returns `[...]`.

    Gathers the two log-probabilities instead of materialising the `[..., K]` target.
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # [..., K]
    below, above, w_above = twohot_weights(x, bins)
    logp_below = logp.gather(-1, below.unsqueeze(-1)).squeeze(-1)
    logp_above = logp.gather(-1, above.unsqueeze(-1)).squeeze(-1)
    return -((1.0 - w_above) * logp_below + w_above * logp_above)


def twohot_mean(probs: Tensor, bins: Tensor) -> Tensor:
    """Expected value `Σ_k probs_k·bins_k` of `probs [..., K]`; returns `[...]`.

    The symlog bins reach ±symexp(20) ≈ ±5e8, so a naive float32 sum of a symmetric distribution does not
    cancel to 0. As in DreamerV3, the negative half is added to the mirrored positive half first.
    """
    half = (bins.shape[0] - 1) // 2
    weighted = probs * bins  # [..., K]
    negative = weighted[..., :half].flip(-1)
    positive = weighted[..., half + 1 :]
    return (negative + positive).sum(-1) + weighted[..., half]


def twohot_std(probs: Tensor, bins: Tensor) -> Tensor:
    """Standard deviation of `probs [..., K]` over `bins`; returns `[...]`."""
    mean = twohot_mean(probs, bins)
    variance = (probs * (bins - mean.unsqueeze(-1)).square()).sum(-1)
    return variance.clamp_min(0.0).sqrt()


def twohot_quantile(probs: Tensor, bins: Tensor, q: float | Tensor) -> Tensor:
    """The q-quantile of `probs [..., K]` over `bins`, with the CDF linear between bins: `[...]`. `q` is
    one level or a level per distribution (`[...]`: with uniform levels, an inverse-CDF sample).

    Unlike `twohot_std`, quantiles are not dominated by the small mass that a young head still puts on
    the far bins (±symexp(20)), so they measure the spread that the head actually predicts.
    """
    cdf = probs.cumsum(-1)  # [..., K]
    target = torch.as_tensor(q, dtype=cdf.dtype, device=cdf.device).expand(cdf.shape[:-1]).unsqueeze(-1)
    above = torch.searchsorted(cdf.contiguous(), target.contiguous()).clamp(1, bins.shape[0] - 1)  # [..., 1]
    cdf_below = cdf.gather(-1, above - 1)
    mass = probs.gather(-1, above).clamp_min(1e-12)
    fraction = ((target - cdf_below) / mass).clamp(0.0, 1.0)
    low, high = bins[above - 1], bins[above]
    return (low + fraction * (high - low)).squeeze(-1)


# --- categoricals with uniform mixing -------------------------------------------------------------


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """(1 − u)·softmax(logits) + u/K over the last axis: `[..., K] -> [..., K]` (float32).

    The mixture keeps every class probability ≥ u/K, so KL terms and straight-through gradients stay
    bounded when the network becomes confident. Callers take `.log()` for the log-probabilities.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if unimix > 0.0:
        probs = probs.mul(1.0 - unimix).add_(unimix / logits.shape[-1])
    return probs


def straight_through_sample(probs: Tensor, uniform: Tensor) -> Tensor:
    """One-hot sample of `probs [..., K]` with straight-through gradients; `uniform [..., 1]` is U[0, 1).

    Inverse-CDF sampling needs one uniform number per categorical (not one per class as Gumbel-max does),
    so the noise of a whole sequence is drawn in one cheap call before the RSSM loop. Forward: the one-hot;
    backward: d/d probs (Bengio et al. 2013). `probs − sg(probs)` is exactly 0, so the value is one-hot.
    """
    cdf = probs.detach().cumsum(-1)  # [..., K]
    index = torch.searchsorted(cdf, uniform, right=True).clamp_max_(probs.shape[-1] - 1)  # [..., 1]
    one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return one_hot + (probs - probs.detach())


def categorical_mode(probs: Tensor) -> Tensor:
    """One-hot of the most likely class of `probs [..., K]` (no gradient)."""
    index = torch.argmax(probs, dim=-1, keepdim=True)
    return torch.zeros_like(probs).scatter_(-1, index, 1.0)


def categorical_kl(lhs_probs: Tensor, lhs_logp: Tensor, rhs_logp: Tensor) -> Tensor:
    """KL[lhs ‖ rhs] of independent categoricals `[..., S, K]`, summed over the S latents: `[...]`.

    `lhs` comes as probabilities and their log (both at hand in the RSSM) to save an `exp` per call.
    """
    return (lhs_probs * (lhs_logp - rhs_logp)).sum((-2, -1))


def categorical_entropy(probs: Tensor, logp: Tensor) -> Tensor:
    """Entropy of independent categoricals `[..., S, K]`, summed over the S latents: `[...]`."""
    return -(probs * logp).sum((-2, -1))
