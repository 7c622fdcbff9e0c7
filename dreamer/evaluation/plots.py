"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dreamer.evaluation.metrics import drawdown_curve


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _times(open_time_ms: np.ndarray) -> np.ndarray:
    return open_time_ms.astype("datetime64[ms]")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_equity(open_time_ms: np.ndarray, equity: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    """Equity curves `[N + 1]` (net of costs) of the agent and the baselines on one log-scale axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    times = _times(open_time_ms)
    for name, curve in equity.items():
        ax.plot(times, curve, label=name, linewidth=2.0 if name == "agent" else 1.0)
    ax.set_yscale("log")
    ax.set_ylabel("equity (start = 1, net of costs)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_drawdown(open_time_ms: np.ndarray, equity: Mapping[str, np.ndarray], path: Path) -> Path:
    """Drawdown below the running peak of each equity curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    times = _times(open_time_ms)
    for name, curve in equity.items():
        ax.plot(times, -100.0 * drawdown_curve(curve), label=name, linewidth=2.0 if name == "agent" else 1.0)
    ax.set_ylabel("drawdown (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_positions(open_time_ms: np.ndarray, close: np.ndarray, positions: np.ndarray, path: Path) -> Path:
    """The agent's position over time under the price (`open_time_ms [N + 1]`, `close [N + 1]`, `positions [N]`)."""
    plt = _pyplot()
    fig, (price_ax, pos_ax) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[2, 1])
    times = _times(open_time_ms)
    price_ax.plot(times, close, color="black", linewidth=0.8)
    price_ax.set_ylabel("close")
    price_ax.grid(alpha=0.3)
    pos_ax.step(times[:-1], positions, where="post", linewidth=0.8)
    pos_ax.set_ylabel("position")
    pos_ax.set_ylim(-1.1, 1.1)
    pos_ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_imagined_vs_real(rollouts: list[dict[str, Any]], path: Path) -> Path:
    """For each start state: the cumulative log return of the world model's sampled imagined paths (median
    and 10th-90th percentile band) against what the market then did."""
    plt = _pyplot()
    cols = min(len(rollouts), 3)
    rows = -(-len(rollouts) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, rollout in zip(axes.flat, rollouts, strict=False):
        steps = np.arange(1, len(rollout["real"]) + 1)
        low, median, high = np.quantile(rollout["imagined_paths"] * 1e4, [0.1, 0.5, 0.9], axis=0)  # [H] each
        ax.plot(steps, np.cumsum(rollout["real"]) * 1e4, color="black", label="real")
        ax.plot(steps, median, color="tab:blue", label="imagined (median)")
        ax.fill_between(steps, low, high, color="tab:blue", alpha=0.2, label="imagined 10-90 %")
        ax.set_title(rollout["start"], fontsize=8)
        ax.set_xlabel("bars ahead")
        ax.set_ylabel("cumulative log return (bps)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rollouts) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)
