"""Forecast evaluation on held-out data, and what a trained world model must show there."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dreamer.evaluation.forecast import ForecastError, forecast_metrics
from dreamer.features.dataset import MarketDataset
from dreamer.model.world_model import WorldModel
from dreamer.training import load_world_model
from tests.model.conftest import TINY

NAMES = ("next_return_mse", "zero_forecast_mse", "direction_accuracy", "vol_forecast_corr", "num_forecasts")


def untrained(cfg: Any = TINY, obs_dim: int = 4) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(obs_dim, cfg)


def test_metric_names_and_counts(small_market: MarketDataset) -> None:
    metrics = forecast_metrics(untrained(), small_market, "test", horizon=3, particles=2)
    expected = {f"{prefix}{name}" for prefix in ("", "prior_", "open_loop_") for name in NAMES}
    assert set(metrics) == expected | {"open_loop_return_iqr_ratio", "open_loop_finite_fraction", "horizon"}
    # Every bar after the burn-in of each window is scored once (context 8, burn-in 2: stride 6).
    start, stop = small_market.splits["test"]
    windows = len(range(start, stop - (TINY.sequence_length + 3) + 1, 6))
    assert metrics["num_forecasts"] == windows * 6
    assert metrics["open_loop_num_forecasts"] == 3 * metrics["num_forecasts"]
    assert metrics["horizon"] == 3.0


def test_an_untrained_model_forecasts_exactly_zero(small_market: MarketDataset) -> None:
    metrics = forecast_metrics(untrained(), small_market, "test", particles=2)
    assert metrics["next_return_mse"] == metrics["zero_forecast_mse"]
    assert metrics["direction_accuracy"] == 0.5  # every forecast is a tie
    assert math.isnan(metrics["vol_forecast_corr"])  # a constant spread predicts nothing


def test_evaluation_leaves_the_random_state_and_mode_alone(small_market: MarketDataset) -> None:
    model = untrained().train()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    first = forecast_metrics(model, small_market, "val", particles=2)
    assert torch.equal(torch.get_rng_state(), before) and model.training
    assert forecast_metrics(model, small_market, "val", particles=2) == pytest.approx(first, rel=0, abs=0, nan_ok=True)


def test_models_with_action_input_are_fed_the_flat_position(small_market: MarketDataset) -> None:
    model = untrained(dataclasses.replace(TINY, world_model_uses_action=True, actor_grad="reinforce"))
    metrics = forecast_metrics(model, small_market, "test", particles=1)
    assert metrics["open_loop_finite_fraction"] == 1.0


def test_a_split_without_a_window_is_a_clear_error(small_market: MarketDataset) -> None:
    with pytest.raises(ForecastError, match="no gap-free stretch"):
        forecast_metrics(untrained(), small_market, "test", context=500)
    with pytest.raises(ForecastError, match="burn_in"):
        forecast_metrics(untrained(), small_market, "test", burn_in=8)


@pytest.mark.slow
def test_a_trained_world_model_forecasts_the_synthetic_market(trained: tuple[Any, Path], market: MarketDataset) -> None:
    """One-step and the prior's one-step forecasts beat the zero forecast; the forecast spread tracks the
    volatility regime; open-loop imagination stays finite and keeps the marginal scale of returns."""
    model, _, _ = load_world_model(trained[1])
    metrics = forecast_metrics(model, market, "test")
    assert metrics["next_return_mse"] < 0.85 * metrics["zero_forecast_mse"]
    assert metrics["direction_accuracy"] > 0.65
    assert metrics["prior_next_return_mse"] < 0.97 * metrics["prior_zero_forecast_mse"]
    assert metrics["prior_direction_accuracy"] > 0.55
    assert metrics["vol_forecast_corr"] > 0.3 and metrics["open_loop_vol_forecast_corr"] > 0.3
    assert metrics["open_loop_finite_fraction"] == 1.0
    assert 0.7 < metrics["open_loop_return_iqr_ratio"] < 1.4


@pytest.mark.slow
def test_long_open_loop_imagination_stays_finite_and_in_scale(trained: tuple[Any, Path], market: MarketDataset) -> None:
    model, _, _ = load_world_model(trained[1])
    metrics = forecast_metrics(model, market, "test", horizon=64, particles=2)
    assert metrics["open_loop_finite_fraction"] == 1.0
    assert 0.6 < metrics["open_loop_return_iqr_ratio"] < 1.6
