"""Data tier: funding charged on real BTCUSDT settlements, as the evaluation charges it."""

from __future__ import annotations

import numpy as np
import pytest

from dreamer.evaluation.backtest import evaluation_window, run_backtest
from dreamer.evaluation.metrics import compute_metrics
from dreamer.features.build import compute_features
from dreamer.features.config import SplitConfig
from dreamer.features.split import make_dataset
from tests.feature_fixtures import read_funding_csv, sample_klines


def test_a_constant_long_pays_the_real_rates_settled_in_its_window() -> None:
    funding = read_funding_csv()
    dataset = make_dataset(compute_features(sample_klines(), "5", funding), SplitConfig())
    window = evaluation_window(dataset, "test")
    # held from the close of the window's first bar to the close of the bar after its last one
    opened_ms = window.open_time_ms[0] + 300_000
    closed_ms = window.open_time_ms[-1] + 300_000
    inside = (funding["funding_time_ms"] > opened_ms) & (funding["funding_time_ms"] <= closed_ms)
    settled = funding.loc[inside, "funding_rate"].to_numpy()
    assert len(settled) > 80  # about a month of 8-hour settlements
    assert window.funding_rates.sum() == pytest.approx(settled.sum(), rel=1e-12)
    assert np.count_nonzero(window.funding_rates) == np.count_nonzero(settled)

    long = run_backtest(np.ones(len(window.rows)), window.log_returns, 0.00065, funding_rates=window.funding_rates)
    metrics = compute_metrics(long, 105_120)
    # each settlement is charged on the equity of the moment: the total equals the sum of the rates up to
    # the equity's drift over the window
    low, high = sorted([settled.sum() * long.equity.min(), settled.sum() * long.equity.max()])
    assert low <= metrics["funding_paid"] <= high
    assert metrics["funding_paid"] == pytest.approx(settled.sum(), rel=0.25)
    ex_funding = run_backtest(np.ones(len(window.rows)), window.log_returns, 0.00065)
    assert metrics["total_return_ex_funding"] == pytest.approx(ex_funding.equity[-1] - 1.0, rel=1e-12)
    short = compute_metrics(
        run_backtest(-np.ones(len(window.rows)), window.log_returns, 0.00065, funding_rates=window.funding_rates),
        105_120,
    )
    assert np.sign(short["funding_paid"]) == -np.sign(settled.sum())  # a short receives what longs pay
