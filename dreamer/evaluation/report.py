"""Held-out evaluation of a trained agent: backtest, baselines, bootstrap comparison, plots.

The agent trades the evaluation split (the test split by default) with its deterministic policy. Its
latent state is warmed up on the bars just before the window (past data, never traded on); its account
starts flat. Every baseline (`dreamer.evaluation.baselines.BASELINE_NAMES`, and those trained in stages of
their own such as `ppo`) trades the same rows with the same costs and funding; the supervised one is
fitted on the train split and its band picked on the validation split (evaluated on `split="val"`, that
band is in-sample). The Sharpe ratio of the agent and of every baseline with one position path (all but
`random`) gets a block-bootstrap confidence interval and standard error, and each comparison with a
baseline a paired one (both series resampled with the same blocks): `beats` is the point estimate,
`significant` whether the whole interval of the Sharpe difference lies above zero.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dreamer.agent.policy import TradingPolicy
from dreamer.evaluation import baselines
from dreamer.evaluation.backtest import (
    BacktestResult,
    EvaluationWindow,
    evaluation_window,
    run_backtest,
    settled_funding,
)
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.metrics import (
    Metrics,
    bootstrap_sharpe,
    compute_metrics,
    confidence_interval,
    periods_per_year,
)
from dreamer.evaluation.plots import (
    plot_drawdown,
    plot_equity,
    plot_imagined_vs_real,
    plot_positions,
    plot_title,
)
from dreamer.features.dataset import MarketDataset
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.training.device import single_threaded


@dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]  # JSON-ready: agent, baselines, comparison, window
    results: dict[str, BacktestResult]  # agent and baselines (random: its first seed)
    window: EvaluationWindow
    inputs: torch.Tensor  # [N, I] the agent state of each decision (`TradingPolicy.decide`)


def evaluate_policy(
    policy: TradingPolicy,
    dataset: MarketDataset,
    cfg: EvaluationConfig,
    cost_rate: float,
    interval: str,
    *,
    split: str = "test",
    warm_up_bars: int = 64,
    seed: int = 0,
    trained_baselines: Mapping[str, np.ndarray] | None = None,
    supervised: baselines.SupervisedBaseline | None = None,
) -> Evaluation:
    """Backtest `policy` and the baselines on `split` of `dataset`. `trained_baselines`: the positions `[N]`
    that baselines trained elsewhere (e.g. `ppo`, `dreamer.evaluation.ppo`) take on the window's rows.
    `supervised`: the `fit_supervised_baseline` of `dataset` when it was fitted already (fitted here if None)."""
    window = evaluation_window(dataset, split)
    periods = periods_per_year(interval)
    first = int(window.rows[0])
    policy.reset(seed)
    policy.warm_up(dataset.obs[max(0, first - warm_up_bars) : first])
    settled = settled_funding(dataset, window.rows)  # [N]
    decided, inputs = policy.decide(dataset.obs[window.rows], dataset.close[window.rows], settled)  # [N], [N, I]
    positions = decided.cpu().numpy().astype(np.float64)
    agent = run_backtest(positions, window.log_returns, cost_rate, funding_rates=window.funding_rates)
    agent_metrics = compute_metrics(agent, periods)

    n = len(window.rows)
    if supervised is None:
        supervised = fit_supervised_baseline(dataset, cfg, cost_rate, interval)
    fixed = {
        "buy_and_hold": baselines.buy_and_hold(n),
        "flat": baselines.flat(n),
        "momentum": baselines.momentum(
            dataset.close, window.rows, cfg.momentum_lookback, cfg.volatility_window, cfg.momentum_band
        ),
        "vol_target": baselines.vol_target(
            dataset.close, window.rows, cfg.vol_target / math.sqrt(periods), cfg.volatility_window, cfg.vol_target_band
        ),
        "supervised": supervised.positions(window.rows),
        **(trained_baselines or {}),
    }
    results = {"agent": agent} | {
        name: run_backtest(p, window.log_returns, cost_rate, funding_rates=window.funding_rates)
        for name, p in fixed.items()
    }
    rng = np.random.default_rng(seed)
    random_runs = [
        run_backtest(
            baselines.random_trading(
                n, float(agent.position_changes.sum()), policy.cfg.position_levels, cfg.random_min_trades, rng
            ),
            window.log_returns,
            cost_rate,
            funding_rates=window.funding_rates,
        )
        for _ in range(cfg.random_baseline_seeds)
    ]
    results["random"] = random_runs[0]

    baseline_metrics: dict[str, Metrics] = {name: compute_metrics(results[name], periods) for name in fixed}
    baseline_metrics["supervised"] |= {"band": supervised.band, "validation_sharpe": supervised.validation_sharpe}
    baseline_metrics["random"] = _mean_metrics([compute_metrics(r, periods) for r in random_runs])

    series = {name: results[name].net_returns for name in ("agent", *fixed)}
    series |= {f"random_{i}": run.net_returns for i, run in enumerate(random_runs)}
    draws = bootstrap_sharpe(series, periods, cfg.bootstrap_block, cfg.bootstrap_samples, seed)
    draws["random"] = np.mean([draws.pop(f"random_{i}") for i in range(len(random_runs))], axis=0)
    for name in fixed:
        baseline_metrics[name] |= sharpe_uncertainty(draws[name], cfg.confidence)
    agent_report: dict[str, Any] = {
        **agent_metrics,
        **sharpe_uncertainty(draws["agent"], cfg.confidence),
        **position_concentration(positions),
    }
    comparison = paired_comparisons(draws, agent_metrics, baseline_metrics, cfg.confidence)
    report = {
        "agent": agent_report,
        "baselines": baseline_metrics,
        "comparison": comparison,
        "window": {
            "split": split,
            "start": _iso(int(window.open_time_ms[0])),
            "end": _iso(int(window.open_time_ms[-1])),
            "bars": n,
            "interval": interval,
            "periods_per_year": periods,
            "cost_rate": cost_rate,
            "bootstrap_block": cfg.bootstrap_block,
            "bootstrap_samples": cfg.bootstrap_samples,
        },
    }
    return Evaluation(jsonable(report), results, window, inputs)


def paired_comparisons(
    draws: Mapping[str, np.ndarray],
    agent_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Mapping[str, Any]],
    confidence: float,
) -> dict[str, dict[str, Any]]:
    """The agent against each baseline: its Sharpe minus the baseline's (`sharpe_diff`, `beats`) and the
    paired interval of that difference from bootstrap `draws` made with the same blocks for every series
    (`sharpe_diff_ci`; `significant`: the whole interval above zero)."""
    comparison = {}
    for name, metrics in baseline_metrics.items():
        low, high = confidence_interval(draws["agent"] - draws[name], confidence)
        sharpe_diff = float(agent_metrics["sharpe"] or 0.0) - float(metrics["sharpe"] or 0.0)
        comparison[name] = {
            "sharpe_diff": sharpe_diff,
            "sharpe_diff_ci": [low, high],
            "beats": sharpe_diff > 0,
            "significant": low > 0,
        }
    return comparison


def fit_supervised_baseline(
    dataset: MarketDataset, cfg: EvaluationConfig, cost_rate: float, interval: str
) -> baselines.SupervisedBaseline:
    """The `supervised` baseline of a report: `baselines.fit_supervised` with the evaluation config's settings."""
    return baselines.fit_supervised(
        dataset,
        cost_rate,
        periods_per_year(interval),
        horizon=cfg.supervised_horizon,
        ridge_alpha=cfg.supervised_ridge_alpha,
        band_quantiles=cfg.supervised_band_quantiles,
    )


def sharpe_uncertainty(draws: np.ndarray, confidence: float) -> dict[str, Any]:
    """`sharpe_ci` (the `confidence` interval of the block-bootstrap Sharpe `draws [S]`), its level, and
    `sharpe_se` (their standard deviation: the bootstrap standard error)."""
    low, high = confidence_interval(draws, confidence)
    return {"sharpe_ci": [low, high], "sharpe_ci_level": confidence, "sharpe_se": float(np.std(draws))}


DEGENERATE_SHARE = 0.95
"""A backtest that holds one position on at least this share of its bars is flagged "degenerate policy"."""
POSITION_GRID = 0.1
"""Positions are compared on this grid: a band actor's long that drifts between 0.96 and 0.99 is one position."""


def position_concentration(positions: np.ndarray) -> dict[str, Any]:
    """The position held most often (to the nearest `POSITION_GRID`), its share of the bars, and whether that
    makes the policy degenerate (one position nearly all the time: a constant bet, or no trading at all,
    rather than a decision rule)."""
    values, counts = np.unique(np.round(positions / POSITION_GRID) * POSITION_GRID, return_counts=True)
    top = int(np.argmax(counts))
    share = float(counts[top] / positions.size)
    return {
        "dominant_position": round(float(values[top]), 6) + 0.0,  # + 0.0: no "-0.0"
        "dominant_position_share": share,
        "degenerate": share >= DEGENERATE_SHARE,
    }


def write_plots(
    evaluation: Evaluation,
    dataset: MarketDataset,
    world_model: WorldModel,
    out_dir: Path,
    *,
    horizon: int,
    context: int,
    seed: int = 0,
) -> dict[str, str]:
    """equity.png, drawdown.png, positions.png and imagined_vs_real.png under `out_dir`, each titled with
    the market (`dataset.meta`) and the window."""
    window = evaluation.window
    times = window.open_time_ms  # [N + 1]
    equity = {name: result.equity for name, result in evaluation.results.items()}
    agent = evaluation.report["agent"]
    title = plot_title(dataset.meta, evaluation.report["window"]["split"], int(times[0]), int(times[-1]))
    sharpe = (
        f"net of costs and funding; agent Sharpe {agent['sharpe']:.2f} "
        f"(CI {agent['sharpe_ci'][0]:.2f} … {agent['sharpe_ci'][1]:.2f})"
    )
    rows = np.append(window.rows, window.rows[-1] + 1)
    rollouts = imagined_vs_real(world_model, dataset, window, horizon=horizon, context=context, seed=seed)
    paths = {
        "equity": plot_equity(times, equity, out_dir / "equity.png", title, sharpe),
        "drawdown": plot_drawdown(times, equity, out_dir / "drawdown.png", title),
        "positions": plot_positions(
            times, dataset.close[rows], evaluation.results["agent"].positions, out_dir / "positions.png", title
        ),
        "imagined_vs_real": plot_imagined_vs_real(rollouts, out_dir / "imagined_vs_real.png", title),
    }
    return {name: str(path) for name, path in paths.items()}


@torch.no_grad()
def imagined_vs_real(
    world_model: WorldModel,
    dataset: MarketDataset,
    window: EvaluationWindow,
    *,
    horizon: int,
    context: int,
    count: int = 6,
    particles: int = 64,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """From `count` start bars spread over the window: filter the posterior over the `context` bars up to
    the start, then imagine `particles` trajectories of `horizon` bars with the prior only, sampling each
    bar's return from the reward head. Returns per start the imagined cumulative log returns
    `[particles, horizon]` and the real returns of the same bars (natural log units).

    Sampled paths, summarised by quantiles, rather than mean ± std: a young twohot head keeps a little mass on
    its far bins (±symexp(20) bps), which dominates any std but not the quantiles."""
    device = next(world_model.parameters()).device
    rows, real = window.rows, window.log_returns
    candidates = np.arange(len(rows) - horizon + 1)
    picks = candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)]
    flat_action = None
    if world_model.action_dim:  # hold flat while imagining: the price taker's market ignores it anyway
        flat_index = torch.tensor([int(np.abs(np.asarray(world_model.cfg.position_levels)).argmin())], device=device)
        flat_action = torch.nn.functional.one_hot(flat_index, world_model.action_dim).float().expand(particles, -1)
    rollouts = []
    with single_threaded(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in picks:
            start_row = int(rows[i])
            obs = torch.from_numpy(dataset.obs[max(0, start_row - context + 1) : start_row + 1]).to(device)
            posterior = world_model.observe(obs[None])  # h [1, C, D], z [1, C, S·K]
            state = RSSMState(  # the same start state for every particle: h [P, D], z [P, S·K]
                posterior.h[:, -1].expand(particles, -1), posterior.z[:, -1].expand(particles, -1)
            )
            sampled = torch.empty(particles, horizon, device=device)  # [P, H] per-bar log returns
            for k in range(horizon):
                probs, values = world_model.return_distribution(world_model.features(state))  # [P, K], [K]
                sampled[:, k] = values[torch.multinomial(probs.float(), 1).squeeze(-1)]
                state = world_model.imagine_step(state, flat_action)
            rollouts.append(
                {
                    "start": _iso(int(dataset.open_time_ms[start_row])),
                    "imagined_paths": sampled.cumsum(-1).cpu().numpy(),
                    "real": real[i : i + horizon],
                }
            )
    return rollouts


def _mean_metrics(runs: list[Metrics]) -> Metrics:
    """Average of each metric over the random baseline's seeds (None where any seed's is undefined)."""
    out: Metrics = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        out[key] = (
            None if any(v is None for v in values) else float(np.mean([float(v) for v in values if v is not None]))
        )
    sharpes = [float(run["sharpe"] or 0.0) for run in runs]
    out["sharpe_std"] = float(np.std(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    out["seeds"] = len(runs)
    return out


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars, 0-dim tensors and paths converted); non-finite floats become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic | torch.Tensor):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON, atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(jsonable(payload), handle, indent=2, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
