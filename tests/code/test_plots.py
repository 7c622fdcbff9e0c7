"""Evaluation plots: titles that name the market and the window, and PNGs that render."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dreamer.evaluation.plots import (
    interval_label,
    plot_drawdown,
    plot_equity,
    plot_imagined_vs_real,
    plot_positions,
    plot_title,
)

START_MS = int(pd.Timestamp("2026-06-29 23:00", tz="UTC").value // 1_000_000)


def test_interval_labels():
    assert [interval_label(code) for code in ("1", "5", "60", "240", "90", "D", "W", "M")] == [
        "1m",
        "5m",
        "1h",
        "4h",
        "90m",
        "1d",
        "1w",
        "1M",
    ]


def test_title_names_the_market_and_the_window():
    meta = {"category": "linear", "symbol": "BTCUSDT", "interval": "5"}
    title = plot_title(meta, "test", START_MS, START_MS + 3 * 86_400_000 + 3_300_000)
    assert title == "BTCUSDT 5m (linear), test 2026-06-29 23:00 – 2026-07-02 23:55 UTC"
    assert plot_title({"interval": "60"}, "val", START_MS, START_MS).startswith("? 1h, val 2026-06-29 23:00")


def test_plots_render(tmp_path):
    n = 3 * 288  # three days of 5-minute bars, across a month's end
    times = START_MS + 300_000 * np.arange(n + 1)
    rng = np.random.default_rng(0)
    equity = {
        "agent": np.exp(np.concatenate([[0.0], np.cumsum(rng.normal(0, 1e-3, n))])),
        "flat": np.ones(n + 1),
    }
    title = plot_title({"symbol": "BTCUSDT", "interval": "5"}, "test", int(times[0]), int(times[-1]))
    rollouts = [
        {
            "start": "2026-06-30T12:00:00+00:00",
            "imagined_paths": rng.normal(0, 1e-3, (16, 5)).cumsum(-1),
            "real": rng.normal(0, 1e-3, 5),
        }
    ] * 2
    paths = [
        plot_equity(times, equity, tmp_path / "equity.png", title, "net of costs"),
        plot_drawdown(times, equity, tmp_path / "drawdown.png", title),
        plot_positions(times, 100 * equity["agent"], np.sign(rng.normal(size=n)), tmp_path / "positions.png", title),
        plot_imagined_vs_real(rollouts, tmp_path / "imagined_vs_real.png", title),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
