"""PNG plots of an evaluation, and the sample-efficiency experiment's figure (matplotlib, Agg backend: no
display needed).

Returns and drawdowns are in percent on linear axes (a month's ±10 % reads better than a log scale of
equity multiples). Time axes place their ticks with matplotlib's `AutoDateLocator` and label them with the
`ConciseDateFormatter` (the month or year once, at its first tick and in the axis offset, not on every
label), so labels do not run into each other at any window length. Every figure's title names the market
and the window (`plot_title`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dreamer.evaluation.metrics import drawdown_curve

_CALENDAR_INTERVALS = {"D": "1d", "W": "1w", "M": "1M"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _times(open_time_ms: np.ndarray) -> np.ndarray:
    return open_time_ms.astype("datetime64[ms]")


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def interval_label(interval: str) -> str:
    """A Bybit interval code as people write it: "5" -> "5m", "240" -> "4h", "D" -> "1d"."""
    code = str(interval).strip().upper()
    if code.isdigit():
        minutes = int(code)
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    return _CALENDAR_INTERVALS.get(code, code)


def plot_title(meta: Mapping[str, Any], split: str, start_ms: int, end_ms: int) -> str:
    """ "BTCUSDT 5m (linear), test 2026-06-24 12:00 – 2026-07-21 23:55 UTC": the market (from a dataset's
    `meta`) and the window's first and last bar."""

    def stamp(ms: int) -> str:
        return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")

    market = f"{meta.get('symbol', '?')} {interval_label(str(meta.get('interval', '?')))}"
    if meta.get("category"):
        market += f" ({meta['category']})"
    return f"{market}, {split} {stamp(start_ms)} – {stamp(end_ms)} UTC"


def _line_width(name: str) -> float:
    return 2.0 if name == "agent" else 1.0


def plot_equity(
    open_time_ms: np.ndarray, equity: Mapping[str, np.ndarray], path: Path, title: str, subtitle: str = ""
) -> Path:
    """Cumulative return in % (net of costs and funding) of the agent and the baselines, from equity
    curves `[N + 1]` that start at 1."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    times = _times(open_time_ms)
    for name, curve in equity.items():
        ax.plot(times, 100.0 * (curve - 1.0), label=name, linewidth=_line_width(name))
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel("cumulative return (%, net)")
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title)
    _date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a curve
    return _save(fig, path)


def plot_drawdown(open_time_ms: np.ndarray, equity: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    """Drawdown in % below the running peak of each equity curve (0 at a new high, negative below it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    times = _times(open_time_ms)
    for name, curve in equity.items():
        ax.plot(times, -100.0 * drawdown_curve(curve), label=name, linewidth=_line_width(name))
    ax.set_ylabel("drawdown (%)")
    ax.set_title(f"{title}\ndrawdown below the running peak, net of costs and funding")
    _date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a curve
    return _save(fig, path)


def plot_positions(open_time_ms: np.ndarray, close: np.ndarray, positions: np.ndarray, path: Path, title: str) -> Path:
    """The agent's position over time under the price (`open_time_ms [N + 1]`, `close [N + 1]`, `positions [N]`)."""
    plt = _pyplot()
    fig, (price_ax, pos_ax) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[2, 1])
    times = _times(open_time_ms)
    price_ax.plot(times, close, color="black", linewidth=0.8)
    price_ax.set_ylabel("close")
    price_ax.set_title(f"{title}\nclose and the agent's position")
    price_ax.grid(alpha=0.3)
    pos_ax.step(times[:-1], positions, where="post", linewidth=0.8)
    pos_ax.set_ylabel("position")
    pos_ax.set_ylim(-1.1, 1.1)
    pos_ax.grid(alpha=0.3)
    _date_axis(pos_ax)  # shared with the price axis
    return _save(fig, path)


def plot_imagined_vs_real(rollouts: list[dict[str, Any]], path: Path, title: str) -> Path:
    """For each start state: the cumulative log return of the world model's sampled imagined paths (median
    and 10th-90th percentile band) against what the market then did."""
    plt = _pyplot()
    cols = min(len(rollouts), 3)
    rows = -(-len(rollouts) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.6), squeeze=False)
    for ax, rollout in zip(axes.flat, rollouts, strict=False):
        steps = np.arange(1, len(rollout["real"]) + 1)
        low, median, high = np.quantile(rollout["imagined_paths"] * 1e4, [0.1, 0.5, 0.9], axis=0)  # [H] each
        ax.plot(steps, np.cumsum(rollout["real"]) * 1e4, color="black", label="real")
        ax.plot(steps, median, color="tab:blue", label="imagined (median)")
        ax.fill_between(steps, low, high, color="tab:blue", alpha=0.2, label="imagined 10-90 %")
        ax.set_title(f"from {pd.Timestamp(rollout['start']).strftime('%Y-%m-%d %H:%M')} UTC", fontsize=9)
        ax.set_xlabel("bars ahead")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("cumulative log return (bps)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rollouts) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}\nworld model: imagined vs real returns")
    return _save(fig, path)


def plot_sample_efficiency(
    summary: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], path: Path, title: str
) -> Path:
    """The sample-efficiency experiment's figure (`dreamer.sample_efficiency.summarise`): one panel per
    market, held-out Sharpe against the train bars used (log x axis), per method in `labels` (method ->
    legend text) each seed's Sharpe with its bootstrap CI as an error bar and a line through the medians
    over the seeds; the oracle's Sharpe (synthetic markets), buy-and-hold's and zero as horizontal lines.
    Methods and seeds are spread a little sideways so that their bars do not hide each other."""
    from matplotlib.ticker import FixedLocator, NullLocator

    plt = _pyplot()
    columns = 1 if len(summary) == 1 else 2
    rows = -(-len(summary) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(summary) :]:
        ax.set_visible(False)
    for ax, (market, entry) in zip(axes.flat, summary.items(), strict=False):
        points = entry["rows"]
        bars = np.array([row["train_rows"] for row in points], dtype=np.float64)  # [K]
        for index, (method, label) in enumerate(labels.items()):
            color = f"C{index}"
            shift = math.exp((index - (len(labels) - 1) / 2) * 0.07)  # sideways, by a factor: the axis is log
            medians = [row["methods"][method]["sharpe"]["median"] for row in points]
            known = [m is not None for m in medians]
            ax.plot(bars[known] * shift, [m for m in medians if m is not None], "-", color=color, label=label)
            for row, x in zip(points, bars * shift, strict=True):
                seeds = row["methods"][method]["points"]
                for j, point in enumerate(seeds):
                    if point["sharpe"] is None:
                        continue
                    xj = x * math.exp((j - (len(seeds) - 1) / 2) * 0.025)
                    low, high = point["ci"]
                    error = None if low is None or high is None else [[point["sharpe"] - low], [high - point["sharpe"]]]
                    ax.errorbar(xj, point["sharpe"], yerr=error, fmt="o", ms=3.5, color=color, capsize=2.5, lw=1)
        ax.axhline(0.0, color="0.6", lw=0.8)
        if entry.get("oracle_sharpe") is not None:
            ax.axhline(entry["oracle_sharpe"], color="k", ls="--", lw=1, label="oracle (knows the true parameters)")
        if entry.get("buy_and_hold_sharpe") is not None:
            ax.axhline(entry["buy_and_hold_sharpe"], color="0.4", ls=":", lw=1.2, label="buy & hold")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(bars.tolist()))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([_bars_label(row["train_bars"], row["train_rows"]) for row in points])
        ax.set_xlim(bars.min() / 1.5, bars.max() * 1.5)
        test = entry["test"]
        kind = "synthetic" if entry["synthetic"] else "real"
        ax.set_title(f"{market} ({kind}), test {test['start'][:10]} – {test['end'][:10]}", fontsize=10)
        ax.set_xlabel("train bars used: the last N of the train split (log scale)", fontsize=9)
        ax.set_ylabel("held-out Sharpe (annualised), 95% CI", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1 : len(summary)]:  # the oracle line appears only on the synthetic panels
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.suptitle(textwrap.fill(title, 60 * columns), fontsize=11)
    fig.tight_layout()
    # below the panels, and saved with a tight box: a legend or title of any length stays in the picture
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=9, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _bars_label(train_bars: Any, train_rows: int) -> str:
    """ "5k" for N = 5,000; "all\n65.8k" for the whole train split."""
    rows = f"{train_rows / 1000:.3g}k" if train_rows >= 1000 else str(train_rows)
    return f"all\n{rows}" if train_bars == "all" else rows
