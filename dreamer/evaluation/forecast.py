"""How well the world model forecasts returns on held-out data.

Windows of `context` bars of the split are filtered with the posterior from the learned initial state.
Every bar t after the first `burn_in` bars of a window (so each forecast rests on at least `burn_in` bars
of context; consecutive windows overlap so that each bar is scored once) yields

* the one-step forecast: the return head at the posterior state s_t forecasts r_t = log(c_{t+1}/c_t);
* open-loop forecasts: imagining k = 1 … H steps with the prior only (no further observation), the return
  head at ŝ_{t+k} forecasts r_{t+k}. `prior_…` metrics score the first imagined step alone (the prior's
  one-step forecast), `open_loop_…` metrics pool all H steps.

The latent state is sampled, so every forecast is a predictive distribution averaged over `particles`
independent latent samples (whole filtering paths and imagined paths): its mean is the point forecast and
its interquartile range the spread. Without the averaging, an imagined forecast would be the forecast *as
if* one sampled future had been observed, whose extra variance no real forecaster would accept.

    next_return_mse     mean (r̂ − r)²
    zero_forecast_mse   mean r², the MSE of always forecasting 0 (the baseline to beat)
    direction_accuracy  share of bars with sign(r̂) = sign(r) (bars with r = 0 skipped, r̂ = 0 counts ½)
    vol_forecast_corr   Pearson correlation between the predicted spread (IQR / 1.349, i.e. the std of a
                        normal with that IQR) and |r|: does the model know when the market is volatile
    open_loop_return_iqr_ratio  IQR of returns *sampled* from the imagined distributions / IQR of the
                        realised returns: ~1 when imagination keeps the marginal scale of returns
    open_loop_finite_fraction   share of imagined forecasts that are finite

Spreads use quantiles rather than the distribution's std: a young twohot head keeps a little mass on its
far bins (±symexp(20) bps), which dominates the std but not the quantiles. A world model with
`world_model_uses_action` is fed the flat position throughout (a price taker's market ignores it anyway).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dreamer.errors import DreamerError
from dreamer.evaluation.scoring import direction_accuracy, vol_forecast_corr
from dreamer.features.dataset import MarketDataset
from dreamer.features.sampler import valid_window_starts
from dreamer.model.distributions import twohot_mean, twohot_quantile
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.training.device import single_threaded

_IQR_OF_UNIT_NORMAL = 1.3489795


class ForecastError(DreamerError):
    """The split is too short to score any forecast, or the arguments are out of range."""


@torch.no_grad()
def forecast_metrics(
    world_model: WorldModel,
    dataset: MarketDataset,
    split: str = "test",
    horizon: int | None = None,
    *,
    context: int | None = None,
    burn_in: int | None = None,
    particles: int = 8,
    batch_windows: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """Forecast metrics of `world_model` on `split` of `dataset` (see the module docstring).

    `horizon` defaults to `cfg.imagination_horizon`, `context` (bars filtered per window) to
    `cfg.sequence_length` (the length the model was trained on), `burn_in` to a quarter of `context`.
    Latent samples come from a private random stream seeded with `seed`; the global random state is
    left untouched, so evaluating never changes what a training run does next.
    """
    cfg = world_model.cfg
    horizon = cfg.imagination_horizon if horizon is None else horizon
    context = cfg.sequence_length if context is None else context
    burn_in = context // 4 if burn_in is None else burn_in
    if horizon < 1 or particles < 1 or batch_windows < 1 or not 0 <= burn_in < context:
        raise ForecastError(
            f"need horizon, particles, batch_windows >= 1 and 0 <= burn_in < context; got horizon={horizon}, "
            f"particles={particles}, batch_windows={batch_windows}, burn_in={burn_in}, context={context}"
        )
    starts = _scoring_window_starts(dataset, split, context + horizon, stride=context - burn_in)
    if starts.size == 0:
        raise ForecastError(f"split {split!r} has no gap-free stretch of {context + horizon} bars to forecast on")

    device = next(world_model.parameters()).device
    obs_all = torch.from_numpy(dataset.obs).to(device)  # [N, F]
    returns_all = torch.from_numpy(dataset.next_log_return).to(device)  # [N]
    offsets = torch.arange(context + horizon, device=device)  # [L]
    flat = _flat_action(world_model, device)
    scored: list[list[torch.Tensor]] = [[] for _ in range(horizon + 1)]  # k -> [4, n] per batch of windows

    was_training = world_model.training
    world_model.eval()
    try:  # a window's steps run one after another on small batches: extra CPU threads only spin-wait
        with single_threaded(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for first in range(0, starts.size, batch_windows):
                rows = torch.from_numpy(starts[first : first + batch_windows]).to(device)[:, None] + offsets  # [W, L]
                obs, realised = obs_all[rows], returns_all[rows]  # [W, L, F], [W, L]
                paths = obs.shape[0] * particles  # particle p of window w is path p·W + w
                actions = None if flat is None else flat.expand(paths, context, -1)
                post = world_model.observe(obs[:, :context].repeat(particles, 1, 1), actions)  # [P·W, C, ·]
                state = RSSMState(post.h[:, burn_in:], post.z[:, burn_in:]).flatten()  # [P·n, ·], n = W·(C − b)
                for k in range(horizon + 1):
                    if k > 0:
                        action = None if flat is None else flat.expand(state.h.shape[0], -1)
                        state = world_model.imagine_step(state, action)
                    target = realised[:, burn_in + k : context + k].reshape(-1)  # [n]
                    scored[k].append(_score(world_model, state, target, particles))
    finally:
        world_model.train(was_training)

    one_step, prior = (torch.cat(scored[k], 1).cpu().double().numpy() for k in (0, 1))
    pooled = torch.cat([torch.cat(scored[k], 1) for k in range(1, horizon + 1)], 1).cpu().double().numpy()
    metrics = {**_metrics(one_step, ""), **_metrics(prior, "prior_"), **_metrics(pooled, "open_loop_")}
    realised_iqr = _iqr(pooled[2])
    metrics["open_loop_return_iqr_ratio"] = _iqr(pooled[3]) / realised_iqr if realised_iqr > 0 else float("nan")
    metrics["open_loop_finite_fraction"] = float(np.isfinite(pooled[[0, 1, 3]]).all(0).mean())
    metrics["horizon"] = float(horizon)
    return metrics


def _score(world_model: WorldModel, state: RSSMState, realised: torch.Tensor, particles: int) -> torch.Tensor:
    """(forecast, spread, realised, one sampled return) for states `[P·n, ·]` and `realised [n]`: `[4, n]`."""
    probs, values = world_model.return_distribution(world_model.features(state))  # [P·n, K], [K]
    predictive = probs.unflatten(0, (particles, -1)).mean(0)  # [n, K], mixture over the particles
    quartiles = [twohot_quantile(predictive, values, q) for q in (0.25, 0.75)]
    spread = (quartiles[1] - quartiles[0]) / _IQR_OF_UNIT_NORMAL
    sampled = values[torch.multinomial(predictive.nan_to_num(0.0).clamp_min(1e-30), 1).squeeze(-1)]
    return torch.stack([twohot_mean(predictive, values), spread, realised, sampled])


def _metrics(scored: np.ndarray, prefix: str) -> dict[str, float]:
    forecast, spread, realised = scored[:3]
    return {
        f"{prefix}next_return_mse": float(np.mean((forecast - realised) ** 2)),
        f"{prefix}zero_forecast_mse": float(np.mean(realised**2)),
        f"{prefix}direction_accuracy": direction_accuracy(forecast, realised),
        f"{prefix}vol_forecast_corr": vol_forecast_corr(spread, realised),
        f"{prefix}num_forecasts": float(realised.size),
    }


def _iqr(values: np.ndarray) -> float:
    q25, q75 = np.percentile(values, [25, 75])
    return float(q75 - q25)


def _scoring_window_starts(dataset: MarketDataset, split: str, length: int, stride: int) -> np.ndarray:
    """Starts of `length`-bar windows, `stride` apart within each run of consecutive valid windows."""
    valid = valid_window_starts(dataset, split, length)
    if valid.size == 0:
        return valid
    run_first = np.flatnonzero(np.diff(valid, prepend=valid[0] - 2) != 1)
    run_last = np.append(run_first[1:], valid.size) - 1
    runs = [np.arange(valid[a], valid[b] + 1, stride) for a, b in zip(run_first, run_last, strict=True)]
    return np.concatenate(runs).astype(np.int64)


def _flat_action(world_model: WorldModel, device: torch.device) -> torch.Tensor | None:
    """One-hot of the position level nearest to 0, `[1, A]`, or None for a model without action input."""
    if world_model.action_dim == 0:
        return None
    levels = torch.tensor(world_model.cfg.position_levels)
    return F.one_hot(levels.abs().argmin(), len(levels)).float().to(device)[None]
