"""The tear sheet: its pure computations on hand-made inputs, and one sheet rendered from a small
synthetic evaluation (sections, every strategy, nothing referenced outside the file)."""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dreamer.errors import ConfigError
from dreamer.evaluation import tearsheet
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.metrics import compute_metrics, periods_per_year, sharpe_ratio
from dreamer.evaluation.report import Evaluation, evaluate_policy, jsonable
from dreamer.evaluation.tearsheet import (
    DrawdownPeriod,
    default_rolling_window,
    drawdown_periods,
    monthly_returns,
    rolling_sharpe,
    trade_list,
    write_tearsheet,
)
from dreamer.features.dataset import BarFunding, MarketDataset


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def test_monthly_returns_compound_each_calendar_month_in_utc():
    bars = [
        ("2025-12-31T23:55", 0.02),
        ("2026-01-01T00:00", 0.10),
        ("2026-01-15T12:00", -0.10),
        ("2026-01-31T23:55", 0.0),  # the last bar of January is still January
        ("2026-03-01T00:00", 0.05),
        ("2026-03-02T00:00", 0.05),
    ]
    table = monthly_returns(np.array([ms(t) for t, _ in bars]), np.array([r for _, r in bars]))
    assert list(table.index) == [2025, 2026]
    assert list(table.columns) == [*tearsheet.MONTHS, "Year"]
    assert table.loc[2025, "Dec"] == pytest.approx(0.02)
    assert table.loc[2025, "Year"] == pytest.approx(0.02)
    assert table.loc[2026, "Jan"] == pytest.approx(1.1 * 0.9 - 1)
    assert math.isnan(table.loc[2026, "Feb"])  # no bar in February
    assert table.loc[2026, "Mar"] == pytest.approx(1.05**2 - 1)
    assert table.loc[2026, "Year"] == pytest.approx(1.1 * 0.9 * 1.05**2 - 1)
    assert table.loc[2025, ["Jan", "Jun", "Nov"]].isna().all()


def test_drawdown_periods_of_a_known_curve():
    #           0    1    2     3     4    5    6     7     8     9
    equity = [1.0, 1.1, 0.99, 1.05, 1.1, 1.2, 1.08, 1.14, 0.96, 1.0]
    periods = drawdown_periods(np.array(equity))
    # the deepest first: from the 1.2 peak down to 0.96, never back (-20 %); then 1.1 -> 0.99, back at 4 (-10 %)
    assert [(p.start, p.trough, p.recovery) for p in periods] == [(5, 8, None), (1, 2, 4)]
    assert [p.depth for p in periods] == pytest.approx([0.2, 0.1])
    assert [p.bars(len(equity)) for p in periods] == [4, 3]  # to the end of the curve; to the recovery
    assert drawdown_periods(np.array(equity), top=1) == [periods[0]]
    assert drawdown_periods(np.array([1.0, 1.0, 1.1, 1.2])) == []  # never below a peak


def test_drawdown_period_that_recovers_at_the_last_point():
    (period,) = drawdown_periods(np.array([1.0, 0.5, 1.0]))
    assert period == DrawdownPeriod(start=0, trough=1, recovery=2, depth=0.5)


def test_trade_list_lists_every_change_of_position_with_its_fee():
    times = np.array([ms("2026-01-01") + 300_000 * i for i in range(7)])  # [N + 1] 5-minute bars
    positions = np.array([0.0, 1.0, 1.0, -0.5, -0.5, 0.0])
    result = run_backtest(positions, np.full(6, 0.01), cost_rate=0.001)
    trades = trade_list(times, result.positions, result.fees)
    assert list(trades["time"]) == [pd.Timestamp(times[i], unit="ms", tz="UTC") for i in (1, 3, 5)]
    assert list(trades["from_position"]) == [0.0, 1.0, -0.5]
    assert list(trades["to_position"]) == [1.0, -0.5, 0.0]
    assert list(trades["fee"]) == list(result.fees[[1, 3, 5]])
    assert trades["fee"].to_numpy() == pytest.approx(0.001 * np.array([1.0, 1.5, 0.5]) * result.equity[[1, 3, 5]])
    # an account that starts long trades out of it at the first bar
    assert list(trade_list(times, positions, result.fees, initial_position=1.0)["to_position"]) == [0.0, 1.0, -0.5, 0.0]


def test_rolling_sharpe_is_the_sharpe_ratio_of_each_window():
    periods = 4.0
    returns = np.array([0.01, 0.02, 0.03, 0.03])
    rolled = rolling_sharpe(returns, 3, periods)
    assert np.isnan(rolled[:2]).all()
    assert rolled[2] == pytest.approx(0.02 / 0.01 * 2)  # mean 0.02, sample std 0.01, sqrt(4)
    mean, std = np.mean(returns[1:]), np.std(returns[1:], ddof=1)
    assert rolled[3] == pytest.approx(mean / std * 2)
    assert np.isnan(rolling_sharpe(returns, 5, periods)).all()  # shorter than one window
    with pytest.raises(ConfigError):
        rolling_sharpe(returns, 1, periods)


def test_rolling_sharpe_is_the_same_in_chunks(monkeypatch):
    returns = np.random.default_rng(0).normal(0.0, 0.01, 500)
    whole = rolling_sharpe(returns, 24, 8760.0)
    expected = [float(sharpe_ratio(returns[i - 23 : i + 1], 8760.0)) for i in range(23, 500)]
    assert whole[23:] == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(tearsheet, "_ROLLING_CHUNK_ELEMENTS", 24 * 7)  # 7 windows a chunk, the last one short
    assert np.array_equal(rolling_sharpe(returns, 24, 8760.0), whole, equal_nan=True)


def test_default_rolling_window_is_a_day_of_bars():
    assert default_rolling_window(periods_per_year("5")) == 288
    assert default_rolling_window(periods_per_year("1")) == 1440
    assert default_rolling_window(periods_per_year("60")) == tearsheet.MIN_ROLLING_BARS  # 24 a day is too few


# --- one rendered sheet --------------------------------------------------------------------------------

SECTIONS = ("summary", "equity", "decomposition", "monthly", "rolling-sharpe", "drawdowns", "exposure", "trades")
HOUR_MS = 3_600_000
BARS = 24 * 120  # 120 days of hourly bars from May 1st, the test split in July and August
SPLITS = {"train": (0, 1200), "val": (1210, 1500), "test": (1510, BARS)}


class ScriptedPolicy:
    """What `evaluate_policy` needs of a `TradingPolicy`: long after a rising bar, short after a falling one."""

    cfg = SimpleNamespace(position_levels=(-1.0, 0.0, 1.0))

    def reset(self, seed: int | None = None) -> None:
        pass

    def warm_up(self, obs: np.ndarray) -> None:
        pass

    def decide(self, obs: np.ndarray, close: np.ndarray, funding: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        positions = np.where(obs[:, 0] > 0, 1.0, -1.0)
        return torch.from_numpy(positions), torch.zeros(len(close), 1)


def synthetic_market() -> MarketDataset:
    rng = np.random.default_rng(3)
    log_returns = rng.normal(0.0, 0.01, BARS)  # log_returns[t]: bar t's close over bar t-1's
    close = 100.0 * np.exp(np.cumsum(log_returns))
    settles = (np.arange(BARS) + 1) % 8 == 0  # a settlement every 8 hours, in the bar after t
    funding = BarFunding(
        known_rate=np.full(BARS, 1e-4),
        next_rate=np.append(np.where(settles, 1e-4, 0.0)[:-1], np.nan),
        next_settlements=np.append(settles[:-1], 0).astype(np.int32),
    )
    return MarketDataset.from_arrays(
        open_time_ms=ms("2026-05-01") + HOUR_MS * np.arange(BARS),
        close=close,
        features=log_returns[:, None],
        next_log_return=np.append(np.diff(np.log(close)), np.nan),
        segment_id=np.zeros(BARS),
        feature_names=["ret_1"],
        splits=SPLITS,
        meta={"category": "linear", "symbol": "ETHUSDT", "interval": "60", "source": "synthetic"},
        funding=funding,
    )


def with_extra_baseline(evaluation: Evaluation, name: str, positions: np.ndarray) -> Evaluation:
    """`evaluation` plus one more baseline the sheet has never heard of: it must show it like the others."""
    window = evaluation.window
    result = run_backtest(positions, window.log_returns, 0.00065, funding_rates=window.funding_rates)
    report = dict(evaluation.report)
    periods = report["window"]["periods_per_year"]
    report["baselines"] = {**report["baselines"], name: jsonable(compute_metrics(result, periods))}
    report["comparison"] = {
        **report["comparison"],
        name: {"sharpe_diff": 0.5, "sharpe_diff_ci": [-0.1, 1.1], "beats": True, "significant": False},
    }
    return dataclasses.replace(evaluation, report=report, results={**evaluation.results, name: result})


def test_rendered_sheet_has_every_section_and_references_nothing_outside(tmp_path):
    dataset = synthetic_market()
    evaluation = evaluate_policy(
        ScriptedPolicy(),  # type: ignore[arg-type]
        dataset,
        EvaluationConfig(bootstrap_samples=50, bootstrap_block=24, random_baseline_seeds=2),
        0.00065,
        "60",
    )
    evaluation = with_extra_baseline(evaluation, "always_short", -np.ones(len(evaluation.window.rows)))
    path = write_tearsheet(evaluation, dataset, tmp_path / "tearsheet.html", config_name="tiny")
    html = path.read_text(encoding="utf-8")

    sections = re.findall(r'<section id="([a-z-]+)">', html)
    assert sections == [*SECTIONS]
    assert "ETHUSDT" in html and "tiny" in html
    assert "yes: 171 settlements in the window" in html  # 1,369 traded hours, a settlement every 8
    for name in evaluation.results:  # agent, every baseline of the evaluation, and the one added here
        assert html.count(f"<td>{name}</td>") == 3  # summary, decomposition, exposure
    assert "random: the curves show its first seed, the tables the mean over 2 seeds." in html
    (months,) = re.findall(r"<tr><td>2026</td>(.*?)</tr>", html)
    assert months.count("%") == 3  # July, August (the test window's months) and the year
    num_trades = int(evaluation.report["agent"]["num_trades"])
    assert num_trades > tearsheet.MAX_TRADES_LISTED  # the scripted policy flips often: the list is cut
    assert f"The first {tearsheet.MAX_TRADES_LISTED} of {num_trades:,} trades." in html
    assert html.count("fills at its close") == 1

    # self-contained: every src / href is a data URI, and no URL appears anywhere
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4 and len(references) == 4
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 may hold "//"
    assert not re.search(r"https?:|//[a-z]|url\(|@import|<script|<link|<iframe", text, re.IGNORECASE)
