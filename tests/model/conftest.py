"""Fixtures of the world-model tests: single-threaded torch, small configs and a learnable synthetic market.

The synthetic market is what the world model must be able to learn: 5-minute-like log returns
(std ~1e-3) with AR(1) autocorrelation and two persistent volatility regimes,

    r_t = φ·r_{t−1} + σ_t·ε_t,    σ_t ∈ {σ_calm, σ_wild} switching with probability 1 − p_stay per bar,

observed through causal features of the bars up to t (the last return, a short mean of returns, a
realised volatility and a pure-noise feature), symlog-scaled in basis points like the real features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.features.dataset import MarketDataset
from dreamer.model.config import DreamerConfig
from dreamer.model.distributions import twohot_encode
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.training.device import single_threaded

SYNTHETIC_PHI = 0.6
SYNTHETIC_SIGMAS = (5e-4, 2e-3)
FIVE_MINUTES_MS = 300_000

# Small enough for seconds of CPU training, large enough to learn the synthetic market.
SMALL = DreamerConfig(
    deterministic_size=64,
    stochastic_size=8,
    num_categories=8,
    hidden_size=64,
    batch_size=16,
    sequence_length=32,
    imagination_horizon=5,
    learning_rate=1e-3,
    world_model_steps=400,
    device="cpu",
)
# For mechanics (shapes, resume, errors): a few milliseconds per update.
TINY = DreamerConfig(
    deterministic_size=16,
    stochastic_size=4,
    num_categories=4,
    hidden_size=16,
    num_bins=63,
    batch_size=4,
    sequence_length=8,
    imagination_horizon=3,
    world_model_steps=6,
    device="cpu",
)
# For the actor-critic on hand-made world models: a longer imagination from more start states.
TINY_AGENT = dataclasses.replace(TINY, imagination_horizon=6, imagination_starts=32)

# What `WorldModel.loss` reports for every update.
LOSS_TERMS = {
    "loss/total",
    "loss/pred",
    "loss/decoder",
    "loss/reward",
    "loss/dyn",
    "loss/rep",
    "kl/raw",
    "kl/free_bits_active",
    "entropy/prior",
    "entropy/posterior",
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with single_threaded():
        yield


def market_from_returns(
    features: np.ndarray,
    next_returns: np.ndarray,
    splits: dict[str, tuple[int, int]],
    feature_names: list[str] | None = None,
    meta: dict[str, str] | None = None,
) -> MarketDataset:
    """A dataset whose row t holds `features[t]` and earns `next_returns[t]` over bar t+1 (close from 100)."""
    n = len(next_returns)
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(next_returns[:-1])]))
    return MarketDataset.from_arrays(
        open_time_ms=np.arange(n, dtype=np.int64) * FIVE_MINUTES_MS,
        close=close,
        features=features,
        next_log_return=np.append(next_returns[:-1], np.nan),  # the last bar has no next bar
        segment_id=np.zeros(n, dtype=np.int32),
        feature_names=feature_names or [f"f{i}" for i in range(features.shape[1])],
        splits=splits,
        meta=meta or {"interval": "5"},
    )


def synthetic_market(
    bars: int = 6000, seed: int = 0, phi: float = SYNTHETIC_PHI, p_stay: float = 0.99
) -> MarketDataset:
    """A `MarketDataset` of the synthetic market above (train 70 %, val 10 %, test 20 %, purge 32 bars)."""
    rng = np.random.default_rng(seed)
    warm_up = 16
    total = bars + warm_up
    wild = np.zeros(total, dtype=bool)
    for t in range(1, total):
        wild[t] = wild[t - 1] if rng.random() < p_stay else not wild[t - 1]
    sigma = np.where(wild, SYNTHETIC_SIGMAS[1], SYNTHETIC_SIGMAS[0])
    shocks = rng.standard_normal(total) * sigma
    returns = np.zeros(total)  # returns[t] = log(close[t] / close[t-1])
    for t in range(1, total):
        returns[t] = phi * returns[t - 1] + shocks[t]
    close = 100.0 * np.exp(np.cumsum(returns))

    def bps_symlog(x: np.ndarray) -> np.ndarray:
        return np.sign(x) * np.log1p(np.abs(x * 1e4))

    def trailing(fn: str, width: int) -> np.ndarray:
        out = np.full(total, np.nan)
        windows = np.lib.stride_tricks.sliding_window_view(returns, width)  # row i covers [i, i + width)
        out[width - 1 :] = getattr(windows, fn)(axis=1)
        return out

    features = np.stack(
        [
            bps_symlog(returns),
            bps_symlog(trailing("mean", 4)),
            bps_symlog(trailing("std", 16)),
            rng.standard_normal(total),
        ],
        axis=1,
    )[warm_up:]
    next_log_return = np.append(returns[1:], np.nan)[warm_up:].astype(np.float32)
    train_end, val_end = int(bars * 0.7), int(bars * 0.8)
    purge = 32
    return MarketDataset.from_arrays(
        open_time_ms=np.arange(bars, dtype=np.int64) * FIVE_MINUTES_MS,
        close=close[warm_up:],
        features=features,
        next_log_return=next_log_return,
        segment_id=np.zeros(bars, dtype=np.int32),
        feature_names=["ret_1", "ret_mean_4", "vol_16", "noise"],
        splits={"train": (0, train_end), "val": (train_end + purge, val_end), "test": (val_end + purge, bars)},
        meta={"symbol": "SYNTH", "interval": "5"},
    )


@pytest.fixture(scope="session")
def market() -> MarketDataset:
    return synthetic_market()


@pytest.fixture(scope="session")
def small_market() -> MarketDataset:
    """A short market for mechanics tests."""
    return synthetic_market(bars=600, seed=1)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, market: MarketDataset) -> tuple[object, Path]:
    """`SMALL` trained on `market` once per session: (training result, output directory)."""
    from dreamer.training import train_world_model

    out = tmp_path_factory.mktemp("trained_world_model")
    with single_threaded():  # session fixtures run before the per-test `_single_thread`
        result = train_world_model(market, SMALL, out)
    return result, out


def constant_forecast_world_model(cfg: DreamerConfig, bps: float, obs_dim: int = 3) -> WorldModel:
    """A world model whose return head forecasts `bps` basis points for every state (zero output weights,
    bias = log of the twohot code of the forecast)."""
    torch.manual_seed(0)
    model = WorldModel(obs_dim, cfg)
    head = model.reward.mlp.out
    assert head is not None
    code = twohot_encode(torch.tensor(bps), model.reward.bins)  # [K]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.where(code > 0, code.clamp_min(1e-30).log(), torch.tensor(-1e4)))
    return model.eval().requires_grad_(False)


def start_states(model: WorldModel, n: int) -> RSSMState:
    with torch.no_grad():
        return model.observe(torch.randn(1, n, model.obs_dim)).flatten()
