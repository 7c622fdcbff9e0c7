"""Reference strategies: hand-computed cases, causality, the supervised baseline on known-answer markets,
and the report that trades them all next to the agent."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dreamer.errors import ConfigError
from dreamer.evaluation.backtest import evaluation_window, run_backtest
from dreamer.evaluation.baselines import (
    BASELINE_NAMES,
    band_positions,
    buy_and_hold,
    fit_supervised,
    flat,
    momentum,
    random_trading,
    trailing_volatility,
    vol_target,
)
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.metrics import compute_metrics, periods_per_year
from dreamer.evaluation.report import evaluate_policy
from dreamer.features.build import compute_features
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import MarketDataset
from dreamer.features.split import make_dataset
from dreamer.synthetic import market_from_spec
from tests.model.conftest import market_from_returns

PERIODS = periods_per_year("5")
COST = 0.00055 + 0.0001  # taker fee + slippage
LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)
STANDARD_ERRORS = 3.0  # the benchmark's bar for "significant" (dreamer.benchmark)


def closes(log_returns: list[float]) -> np.ndarray:
    """Closes from 100 whose row s > 0 has the one-bar log return `log_returns[s - 1]`."""
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))


def test_constant_baselines():
    assert (buy_and_hold(4) == 1).all() and (flat(4) == 0).all()


def test_band_positions_hold_inside_the_band():
    signal = np.array([np.nan, 0.5, 2.0, 0.5, -1.0, -2.0, np.nan, 0.0])
    assert band_positions(signal, 1.0).tolist() == [0, 0, 1, 1, 1, -1, -1, -1]
    assert band_positions(signal, math.inf).tolist() == [0] * 8


def test_trailing_volatility_is_the_rms_of_the_last_returns():
    vol = trailing_volatility(closes([0.01, -0.01, 0.02]), window=2)
    assert np.isnan(vol[:2]).all()  # rows 0 and 1 have fewer than two returns behind them
    assert vol[2:] == pytest.approx([0.01, math.sqrt((0.01**2 + 0.02**2) / 2)], rel=1e-9)


def test_momentum_by_hand():
    a = 0.01
    close = closes([a, a, a, -a, -a, -a, a, -a])  # rows 0..8
    # lookback 2, vol window 2: vol = a, score_t = (r_t + r_{t-1}) / (a·√2):
    # rows 2..8 -> √2, √2, 0, -√2, -√2, 0, 0
    assert momentum(close, np.arange(2, 9), 2, 2, band=1.0).tolist() == [1, 1, 1, -1, -1, -1, -1]
    assert momentum(close, np.arange(2, 9), 2, 2, band=1.5).tolist() == [0] * 7  # never leaves the band
    # a window starting at row 4 starts flat (score 0 there), its history still scores row 5
    assert momentum(close, np.arange(4, 9), 2, 2, band=1.0).tolist() == [0, -1, -1, -1, -1]
    assert momentum(close, np.arange(0, 3), 2, 2, band=1.0).tolist() == [0, 0, 1]  # no history yet: flat


def test_momentum_uses_only_the_past():
    rng = np.random.default_rng(0)
    close = closes(list(rng.normal(0, 0.01, 400)))
    rows = np.arange(100, 400)
    positions = momentum(close, rows, 24, 48, 0.5)
    assert np.abs(np.diff(positions)).sum() > 4  # it trades: the check below is not vacuous
    changed = close.copy()
    changed[250:] *= np.exp(rng.normal(0, 0.05, close.size - 250))  # the future cannot move a decision before row 250
    assert (momentum(changed, rows, 24, 48, 0.5)[:150] == positions[:150]).all()
    assert (momentum(close[:250], rows[:150], 24, 48, 0.5) == positions[:150]).all()


def test_vol_target_by_hand():
    # window 1: the trailing vol of row t is |r_t|; target 0.005 a bar
    close = closes([0.01, -0.01, 0.02, -0.0125, 0.011, -0.001, 0.0])  # rows 0..7
    # wanted: row 0 no estimate -> 0, then 0.5, 0.5, 0.25, 0.4, 0.4545, min(1, 5) = 1, 1 (no move)
    positions = vol_target(close, np.arange(8), 0.005, 1, band=0.1)
    # 0.4545 is within 0.1 of the 0.4 held: no trade
    assert positions == pytest.approx([0.0, 0.5, 0.5, 0.25, 0.4, 0.4, 1.0, 1.0])
    assert vol_target(close, np.arange(8), 0.005, 1, band=0.0)[5] == pytest.approx(0.005 / 0.011)
    # a window starting at row 3 starts flat and enters at once
    assert vol_target(close, np.arange(3, 8), 0.005, 1, band=0.1) == pytest.approx([0.25, 0.4, 0.4, 1.0, 1.0])


def test_vol_target_uses_only_the_past():
    rng = np.random.default_rng(1)
    close = closes(list(rng.normal(0, 0.01, 400) * np.repeat([1.0, 3.0, 0.5, 2.0], 100)))
    rows = np.arange(50, 400)
    positions = vol_target(close, rows, 0.01, 20, 0.05)
    assert np.unique(positions).size > 3
    changed = close.copy()
    changed[300:] *= np.exp(rng.normal(0, 0.1, close.size - 300))
    assert (vol_target(changed, rows, 0.01, 20, 0.05)[:250] == positions[:250]).all()


def turnover(positions: np.ndarray) -> float:
    return float(np.abs(np.diff(np.concatenate([[0.0], positions]))).sum())


@pytest.mark.parametrize("target", [0.0, 3.7, 50.0, 400.0])
def test_random_trading_matches_the_turnover(target):
    rng = np.random.default_rng(0)
    positions = random_trading(1000, target, LEVELS, 20, rng)
    trades = np.diff(np.concatenate([[0.0], positions])) != 0
    assert set(np.unique(positions)) <= set(LEVELS)
    if target / 2.0 > 20:  # more than 20 of the largest jumps needed: the turnover decides
        assert target <= turnover(positions) < target + 2.0  # stops at the trade that reaches it
    else:  # the minimum number of trades decides
        assert trades.sum() == 20


def test_random_trading_limits():
    rng = np.random.default_rng(1)
    assert (random_trading(50, 0.0, LEVELS, 0, rng) == 0).all()  # nothing to match, no minimum: flat
    everywhere = random_trading(5, 100.0, LEVELS, 20, rng)
    assert np.diff(np.concatenate([[0.0], everywhere])).all()  # capped at a trade every bar
    a, b = (random_trading(1000, 30.0, LEVELS, 20, np.random.default_rng(seed)) for seed in (2, 3))
    assert not np.array_equal(a, b)
    assert set(np.unique(random_trading(200, 10.0, (0.5, 1.0), 5, rng))) <= {0.0, 0.5, 1.0}  # no flat level


# --- supervised ---

SPLITS = {"train": (0, 3000), "val": (3100, 3800), "test": (3900, 5000)}


def noisy_market(seed: int = 0, n: int = 5000) -> MarketDataset:
    """Three features, the first a persistent signal (AR(1), φ = 0.95) of which each bar's return carries a
    little: predictable over an hour, not worth a fee over one bar."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(size=n)
    signal = np.empty(n)
    signal[0] = shocks[0]
    for t in range(1, n):
        signal[t] = 0.95 * signal[t - 1] + math.sqrt(1 - 0.95**2) * shocks[t]
    features = np.column_stack([signal, rng.normal(size=(n, 2))])
    next_returns = 0.0003 * signal + 0.001 * rng.normal(size=n)
    return market_from_returns(features, next_returns, SPLITS)


def test_supervised_recovers_an_exact_forecast():
    rng = np.random.default_rng(0)
    n = 5000
    signal = rng.choice([-1.0, 1.0], n) * rng.uniform(0.6, 1.5, n)
    signal[100] = 0.5  # the smallest |signal| of the train rows: band quantile 0
    features = np.column_stack([signal, rng.normal(size=n)])
    dataset = market_from_returns(features, 0.001 * signal, SPLITS)  # r_{t+1} = 0.001·signal_t
    fitted = fit_supervised(dataset, 0.0, PERIODS, horizon=1, ridge_alpha=1e-9, band_quantiles=(0.0, 0.5, 0.9))
    assert fitted.forecasts == pytest.approx(0.001 * signal, abs=1e-9)  # the ridge finds the exact slope
    assert fitted.band == pytest.approx(0.0005, rel=1e-6)  # without costs, trading every bar is best
    test_rows = np.arange(*SPLITS["test"])
    assert (fitted.positions(test_rows) == np.sign(signal[test_rows])).all()


def test_supervised_is_causal():
    """The positions of rows up to t do not move when the data after t changes or is cut off, and nothing
    after the train split reaches the model: its last `horizon` train rows, whose targets would end in the
    purge gap, are left out."""
    dataset = noisy_market()
    fit = dict(horizon=12, ridge_alpha=1.0, band_quantiles=(0.0, 0.5, 0.9, 0.99))
    test_rows = evaluation_window(dataset, "test").rows
    baseline = fit_supervised(dataset, COST, PERIODS, **fit)
    positions = baseline.positions(test_rows)
    assert math.isfinite(baseline.band) and np.abs(np.diff(positions)).sum() > 2  # it trades

    t = 4400
    rng = np.random.default_rng(9)
    after = len(dataset) - t - 1
    altered = dataclasses.replace(
        dataset,
        close=np.concatenate([dataset.close[: t + 1], dataset.close[t + 1 :] * np.exp(rng.normal(0, 0.05, after))]),
        obs=np.concatenate([dataset.obs[: t + 1], rng.normal(size=(after, 3)).astype(np.float32)]),
    )
    cut = t + 1 - test_rows[0]
    assert (fit_supervised(altered, COST, PERIODS, **fit).positions(test_rows)[:cut] == positions[:cut]).all()

    kept = slice(0, t + 2)  # rows up to t and the bar t+1 that row t earns
    truncated = MarketDataset(
        open_time_ms=dataset.open_time_ms[kept],
        close=dataset.close[kept],
        obs=dataset.obs[kept],
        next_log_return=dataset.next_log_return[kept],
        segment_id=dataset.segment_id[kept],
        funding=dataset.funding.take(np.arange(t + 2)),
        feature_names=dataset.feature_names,
        splits={**dataset.splits, "test": (SPLITS["test"][0], t + 2)},
        normaliser=dataset.normaliser,
        meta=dataset.meta,
    )
    assert (fit_supervised(truncated, COST, PERIODS, **fit).positions(test_rows[:cut]) == positions[:cut]).all()

    train_stop = SPLITS["train"][1]
    after_train = dataclasses.replace(
        dataset, close=np.concatenate([dataset.close[:train_stop], dataset.close[train_stop:] * 1.5])
    )
    assert np.array_equal(fit_supervised(after_train, COST, PERIODS, **fit).forecasts, baseline.forecasts)


def test_supervised_without_validation_rows_never_trades():
    no_validation = {"train": (0, 3000), "val": (3100, 3100), "test": (3200, 5000)}
    dataset = dataclasses.replace(noisy_market(), splits=no_validation)
    fitted = fit_supervised(dataset, COST, PERIODS, horizon=12, ridge_alpha=1.0, band_quantiles=(0.0,))
    assert fitted.band == math.inf and fitted.validation_sharpe is None
    assert (fitted.positions(np.arange(3200, 4999)) == 0).all()


def synthetic_dataset(name: str, seed: int, **parameters: float) -> MarketDataset:
    """A known-answer market's bars through the project's own features and purged splits."""
    series = market_from_spec(name, **parameters).generate(60_000, seed=seed)
    klines = series.to_frame()
    klines.insert(0, "open_time", pd.to_datetime(klines.pop("start_ms"), unit="ms", utc=True))
    return make_dataset(compute_features(klines, "5"), SplitConfig())


def supervised_on_test(dataset: MarketDataset, cfg: EvaluationConfig) -> tuple[float, float, float]:
    """Test Sharpe, its standard error under no edge, and the correlation of the forecasts with the
    realised next-`horizon` log returns over the test rows."""
    fitted = fit_supervised(
        dataset,
        COST,
        PERIODS,
        horizon=cfg.supervised_horizon,
        ridge_alpha=cfg.supervised_ridge_alpha,
        band_quantiles=cfg.supervised_band_quantiles,
    )
    window = evaluation_window(dataset, "test")
    result = run_backtest(fitted.positions(window.rows), window.log_returns, COST)
    sharpe = float(compute_metrics(result, PERIODS)["sharpe"] or 0.0)
    scored = window.rows[window.rows + cfg.supervised_horizon < dataset.splits["test"][1]]
    realised = np.log(dataset.close[scored + cfg.supervised_horizon] / dataset.close[scored])
    return sharpe, math.sqrt(PERIODS / window.rows.size), float(np.corrcoef(fitted.forecasts[scored], realised)[0, 1])


def test_supervised_finds_a_mean_reverting_edge_and_nothing_in_a_random_walk():
    cfg = EvaluationConfig()
    # OU at the fast end of the benchmark's range: the deviation from the mean (a feature) predicts the hour
    sharpe, standard_error, corr = supervised_on_test(synthetic_dataset("ou", 0, kappa=1 / 50), cfg)
    assert sharpe > STANDARD_ERRORS * standard_error and corr > 0.2, (sharpe, standard_error, corr)
    sharpe, standard_error, corr = supervised_on_test(synthetic_dataset("random_walk", 0), cfg)
    assert abs(sharpe) < STANDARD_ERRORS * standard_error and abs(corr) < 0.1, (sharpe, standard_error, corr)


# --- the report trades them all ---


class ScriptedPolicy:
    """What `evaluate_policy` needs of a `TradingPolicy`, trading given positions."""

    def __init__(self, positions: np.ndarray) -> None:
        self.positions = positions
        self.cfg = SimpleNamespace(position_levels=LEVELS)

    def reset(self, seed: int) -> None:
        pass

    def warm_up(self, obs: np.ndarray) -> None:
        pass

    def decide(self, obs: np.ndarray, close: np.ndarray, funding: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.positions[: len(close)]), torch.zeros(len(close), 1)


def test_evaluate_policy_reports_every_baseline():
    dataset = noisy_market()
    n = SPLITS["test"][1] - SPLITS["test"][0] - 1
    agent_positions = np.repeat([0.0, 1.0, -1.0, 0.5, 1.0, 0.0, -0.5, 1.0], -(-n // 8))[:n]  # turnover 8
    cfg = EvaluationConfig(bootstrap_samples=50, bootstrap_block=24, random_baseline_seeds=4, random_min_trades=20)
    evaluation = evaluate_policy(ScriptedPolicy(agent_positions), dataset, cfg, COST, "5")
    report = evaluation.report
    assert tuple(report["baselines"]) == BASELINE_NAMES
    assert tuple(report["comparison"]) == BASELINE_NAMES
    assert set(evaluation.results) == {"agent", *BASELINE_NAMES}
    for name in BASELINE_NAMES:
        low, high = report["comparison"][name]["sharpe_diff_ci"]
        assert low <= high
    # the agent's 8 of turnover is below 20 trades' worth: the minimum decides the random traders
    assert report["baselines"]["random"]["num_trades"] == 20
    assert report["baselines"]["random"]["seeds"] == 4
    supervised = report["baselines"]["supervised"]
    assert "band" in supervised and "validation_sharpe" in supervised


def test_evaluation_config_bounds():
    EvaluationConfig(momentum_band=0.0, vol_target_band=0.0, random_min_trades=0, supervised_ridge_alpha=0.0)
    for bad in (
        {"momentum_lookback": 0},
        {"momentum_band": -1.0},
        {"volatility_window": 1},
        {"vol_target": 0.0},
        {"vol_target": 11.0},
        {"vol_target_band": 1.5},
        {"supervised_horizon": 0},
        {"supervised_ridge_alpha": -1.0},
        {"supervised_band_quantiles": ()},
        {"supervised_band_quantiles": (0.5, 1.2)},
        {"random_min_trades": -1},
    ):
        with pytest.raises(ConfigError):
            EvaluationConfig(**bad)
