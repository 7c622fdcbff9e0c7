"""Known-answer synthetic markets: the generators reproduce their parameters, the oracles are causal and
find the edge where there is one (and only there), and the files read back as valid klines."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from dreamer.data.files import read_kline_file
from dreamer.data.markets import parse_interval
from dreamer.errors import ConfigError
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.baselines import band_positions
from dreamer.evaluation.metrics import compute_metrics, periods_per_year
from dreamer.synthetic import (
    MARKETS,
    PARAMETER_RANGES,
    GarchMarket,
    OrnsteinUhlenbeckMarket,
    RandomWalkMarket,
    RegimeSwitchingMarket,
    SyntheticFileError,
    direction_accuracy,
    market_from_spec,
    oracle_metrics,
    read_series,
    sample_market,
    sidecar_path,
    vol_forecast_corr,
    write_csv,
)

COST = 0.00055 + 0.0001  # taker fee + slippage per unit traded, the 6.5 bp
LONG = 200_000  # bars for moment checks (~0.1 s to generate)
BENCH = 60_000  # the series length: ~7 months of 5-minute bars
FIT = 42_000  # train bars of a 70/30 split; the oracle is scored on the rest


@pytest.fixture(scope="module")
def benchmarks():
    """name -> (series, oracle) of every default market on BENCH bars, the band tuned on the first FIT."""
    out = {}
    for name in MARKETS:
        market = market_from_spec(name)
        series = market.generate(BENCH, seed=7)
        out[name] = (series, market.oracle(series, COST, FIT))
    return out


# --- the generators reproduce their parameters ---


def test_regime_drift_and_regime_length_match_the_parameters():
    market = RegimeSwitchingMarket(drift_bps=1.0, mean_regime_bars=600, noise_bps=12.0)
    series = market.generate(LONG, seed=1)
    regime, r = series.hidden["regime"], series.log_returns
    standard_error = 12e-4 / math.sqrt(LONG / 2)  # of a regime's mean return, ~0.04 bp
    assert r[regime > 0].mean() == pytest.approx(1e-4, abs=4 * standard_error)
    assert r[regime < 0].mean() == pytest.approx(-1e-4, abs=4 * standard_error)
    assert np.std(r - 1e-4 * regime) == pytest.approx(12e-4, rel=0.01)
    regimes = 1 + np.count_nonzero(np.diff(regime))  # ~333 geometric lengths: 1/sqrt(333) = 5.5 % noise
    assert LONG / regimes == pytest.approx(600, rel=0.2)


def test_ou_reversion_rate_by_regressing_the_return_on_the_deviation():
    market = OrnsteinUhlenbeckMarket(kappa=1 / 100, noise_bps=12.0)
    series = market.generate(LONG, seed=2)
    deviation = series.hidden["deviation"]
    np.testing.assert_allclose(np.log(series.close / series.initial_price), deviation, rtol=0, atol=1e-12)
    slope, intercept = np.polyfit(deviation[:-1], series.log_returns[1:], 1)  # r_{t+1} = −κ·y_t + σ·ε
    assert slope == pytest.approx(-1 / 100, rel=0.15)  # standard error ~3 % of κ
    residual = series.log_returns[1:] - (slope * deviation[:-1] + intercept)
    assert np.std(residual) == pytest.approx(12e-4, rel=0.01)
    stationary_std = 12e-4 / math.sqrt(1 - (1 - 1 / 100) ** 2)  # ~85 bp
    assert np.std(deviation) == pytest.approx(stationary_std, rel=0.2)


def test_garch_unconditional_variance_and_the_oracle_recovers_sigma_from_prices():
    market = GarchMarket(alpha=0.08, beta=0.9, long_run_vol_bps=12.0)
    assert market.omega == pytest.approx((12e-4) ** 2 * 0.02)
    series = market.generate(LONG, seed=3)
    assert np.var(series.log_returns) == pytest.approx(market.omega / (1 - 0.08 - 0.9), rel=0.1)
    sigma = series.hidden["sigma"]
    assert sigma.min() < 0.6 * 12e-4 < 1.8 * 12e-4 < sigma.max()  # the volatility does cluster
    standardised = series.log_returns / sigma
    assert np.std(standardised) == pytest.approx(1.0, rel=0.01)
    # What the oracle forecasts at the close of t, from the prices alone, is the σ that drew bar t+1.
    _, expected_vol = market.forecasts(series)
    np.testing.assert_allclose(expected_vol[:-1], sigma[1:], rtol=1e-9)


def test_random_walk_has_no_drift_and_its_volume_says_nothing_about_the_next_bar():
    series = RandomWalkMarket(noise_bps=12.0).generate(LONG, seed=4)
    r = series.log_returns
    assert abs(r.mean()) < 4 * 12e-4 / math.sqrt(LONG)
    assert np.std(r) == pytest.approx(12e-4, rel=0.01)
    assert abs(np.corrcoef(np.log(series.volume[:-1]), r[1:])[0, 1]) < 0.01


def test_ordinary_bars_carry_no_information_about_the_next_return(benchmarks):
    """Volume and range come from the bar's own draws: neither predicts the next return's direction."""
    for name in ("regime", "ou", "garch", "random_walk"):
        series, _ = benchmarks[name]
        following = series.log_returns[1:]
        close_position = (series.close - series.low) / (series.high - series.low)
        for own in (np.log(series.volume), np.log(series.high / series.low), close_position):
            assert abs(np.corrcoef(own[:-1], following)[0, 1]) < 0.02, name


def test_the_leaked_control_volume_encodes_the_next_return(benchmarks):
    series, _ = benchmarks["random_walk_leaked"]
    correlation = np.corrcoef(np.log(series.volume[:-1]), series.log_returns[1:])[0, 1]
    assert correlation == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(series.hidden["next_return"][:-1], series.log_returns[1:], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", MARKETS)
def test_bars_are_plausible_klines(name, benchmarks):
    series, _ = benchmarks[name]
    assert (np.diff(series.open_time_ms) == 5 * 60_000).all()
    assert series.open[0] == series.initial_price
    assert (series.open[1:] == series.close[:-1]).all()
    assert (series.high >= np.maximum(series.open, series.close)).all()
    assert (series.low <= np.minimum(series.open, series.close)).all()
    assert (series.volume > 0).all() and (series.turnover > 0).all()
    # The range of a Brownian bridge is ~1.25 noise std (E max = E |min| = sqrt(π/8)·s for r ≈ 0).
    range_in_noise_std = np.mean(np.log(series.high / series.low)) / (market_noise(series.market))
    assert 1.0 < range_in_noise_std < 1.8


def market_noise(market) -> float:
    scale = market.long_run_vol_bps if isinstance(market, GarchMarket) else market.noise_bps
    return scale * 1e-4


# --- determinism ---


@pytest.mark.parametrize("name", MARKETS)
def test_generation_is_a_function_of_the_seed_and_prefixes_agree(name):
    market = market_from_spec(name)
    first, again, other = market.generate(3_000, seed=5), market.generate(3_000, seed=5), market.generate(3_000, 6)
    shorter = market.generate(1_000, seed=5)
    for field in ("open_time_ms", "open", "high", "low", "close", "volume", "turnover", "log_returns"):
        assert np.array_equal(getattr(first, field), getattr(again, field)), field
        assert np.array_equal(getattr(shorter, field), getattr(first, field)[:1_000]), field
    assert not np.array_equal(first.close, other.close)
    for key, values in first.hidden.items():
        assert np.array_equal(shorter.hidden[key], values[:1_000]), key


def test_start_sets_the_candle_times():
    series = RandomWalkMarket().generate(10, seed=0, start="2024-03-01T00:05")
    assert series.open_time_ms[0] == 1_709_251_500_000
    assert series.rows_at(series.open_time_ms[[3, 7]]).tolist() == [3, 7]
    with pytest.raises(ConfigError):
        series.rows_at(np.array([series.open_time_ms[0] + 60_000]))


# --- the Bayes filter ---


def test_bayes_filter_is_a_calibrated_probability_that_beats_a_coin():
    market = RegimeSwitchingMarket()
    series = market.generate(LONG, seed=8)
    posterior = market.posterior_up(series.log_returns)
    up = series.hidden["regime"] > 0
    assert ((posterior >= 0) & (posterior <= 1)).all()
    accuracy = np.mean((posterior > 0.5) == up)
    assert accuracy > 0.7  # ~0.8 for 1 bp drift in 12 bp noise; a coin gets 0.5 (± 0.02 over ~333 regimes)
    # Calibrated: among bars where the filter says p, the regime is up a share p of the time.
    bins = np.digitize(posterior, [0.2, 0.4, 0.6, 0.8])
    for b in range(5):
        inside = bins == b
        assert inside.sum() > 5_000
        assert up[inside].mean() == pytest.approx(posterior[inside].mean(), abs=0.06)


def test_regime_forecast_is_the_drift_times_the_predicted_regime():
    market = RegimeSwitchingMarket(drift_bps=1.0, mean_regime_bars=600, noise_bps=12.0)
    series = market.generate(2_000, seed=9)
    expected_return, expected_vol = market.forecasts(series)
    posterior = market.posterior_up(series.log_returns)
    predicted_up = posterior * (1 - 1 / 600) + (1 - posterior) / 600  # P(up at t+1 | bars ≤ t)
    assert expected_return == pytest.approx(1e-4 * (2 * predicted_up - 1), abs=1e-15)
    assert (expected_vol >= 12e-4).all() and (expected_vol <= math.hypot(12e-4, 1e-4)).all()


# --- the oracle ---


@pytest.mark.parametrize("name", MARKETS)
def test_oracle_is_causal(name, benchmarks):
    """With the fit range fixed, the oracle's outputs on bars ≤ t ignore every later bar: removed or replaced."""
    series = benchmarks[name][0]
    fit = 5_000
    full = series.market.oracle(series, COST, fit)
    later = series.market.generate(series.num_bars, seed=99)
    for cut in (fit, 20_000, 45_000):
        truncated = series.market.oracle(series.head(cut), COST, fit)
        changed = series.market.oracle(splice(series, later, cut), COST, fit)
        for oracle in (truncated, changed):
            assert oracle.band == full.band
            for field in ("expected_return", "expected_vol", "positions"):
                assert np.array_equal(getattr(oracle, field)[:cut], getattr(full, field)[:cut]), (field, cut)
        if name != "random_walk":  # its forecasts are constants; the others do read the replaced bars
            forecasts = np.stack([changed.expected_return, changed.expected_vol])[:, cut:]
            assert not np.array_equal(forecasts, np.stack([full.expected_return, full.expected_vol])[:, cut:])


def splice(series, other, cut):
    """`series` up to bar `cut` − 1, then `other`'s bars (a different future after the same past)."""
    arrays = {
        field.name: np.concatenate([getattr(series, field.name)[:cut], getattr(other, field.name)[cut:]])
        for field in dataclasses.fields(series)
        if isinstance(getattr(series, field.name), np.ndarray)
    }
    hidden = {key: np.concatenate([values[:cut], other.hidden[key][cut:]]) for key, values in series.hidden.items()}
    return dataclasses.replace(series, **arrays, hidden=hidden)


@pytest.mark.parametrize("name", ["regime", "ou"])
def test_oracle_beats_the_market_net_of_costs_on_held_out_bars(name, benchmarks):
    series, oracle = benchmarks[name]
    held_out = oracle_metrics(series, oracle, slice(FIT, BENCH))
    assert held_out["sharpe"] > 5  # ~15 for the default parameters; buy and hold of a driftless market ~0
    assert held_out["total_return"] > 0 and held_out["num_trades"] > 5
    assert held_out["direction_accuracy"] > 0.51
    # The band is what makes it pay: trading every sign change of the same forecast loses to the costs.
    every_change = run_backtest(
        band_positions(oracle.expected_return, 0.0)[FIT : BENCH - 1], series.log_returns[FIT + 1 :], COST
    )
    assert compute_metrics(every_change, periods_per_year("5"))["sharpe"] < held_out["sharpe"] - 5


@pytest.mark.parametrize("name", ["garch", "random_walk"])
def test_oracle_stays_flat_without_a_directional_edge(name, benchmarks):
    series, oracle = benchmarks[name]
    assert oracle.band == math.inf
    assert not oracle.positions.any() and not oracle.expected_return.any()
    held_out = oracle_metrics(series, oracle, slice(FIT, BENCH))
    assert held_out["sharpe"] == 0 and held_out["total_return"] == 0
    assert held_out["direction_accuracy"] == 0.5  # no view counts ½


def test_garch_oracle_knows_when_the_market_is_volatile(benchmarks):
    series, oracle = benchmarks["garch"]
    held_out = oracle_metrics(series, oracle, slice(FIT, BENCH))
    assert 0.2 < held_out["vol_forecast_corr"] < 0.45  # ~0.3 for α = 0.08, β = 0.9
    random_walk = oracle_metrics(*benchmarks["random_walk"], slice(FIT, BENCH))
    assert math.isnan(random_walk["vol_forecast_corr"])  # a constant forecast has no correlation


def test_leaked_control_oracle_makes_a_profit(benchmarks):
    series, oracle = benchmarks["random_walk_leaked"]
    held_out = oracle_metrics(series, oracle, slice(FIT, BENCH))
    assert held_out["direction_accuracy"] == 1.0
    assert held_out["sharpe"] > 50 and held_out["total_return"] > 1
    assert 0 < oracle.band < math.inf  # it still waits for moves worth their cost


def test_oracle_metrics_are_the_backtest_of_the_rows():
    series, oracle = market_and_oracle("regime", bars=3_000, fit=2_000)
    metrics = oracle_metrics(series, oracle, slice(2_000, 3_000))
    by_hand = run_backtest(
        oracle.positions[2_000:2_999], np.log(series.close[2_001:] / series.close[2_000:2_999]), COST
    )
    assert metrics["num_bars"] == 999
    assert metrics["sharpe"] == pytest.approx(compute_metrics(by_hand, periods_per_year("5"))["sharpe"], rel=1e-9)


def market_and_oracle(name, bars, fit):
    market = market_from_spec(name)
    series = market.generate(bars, seed=0)
    return series, market.oracle(series, COST, fit)


# --- files ---


@pytest.mark.parametrize("name", MARKETS)
def test_csv_round_trip_through_the_kline_reader(name, tmp_path, benchmarks):
    series = benchmarks[name][0].head(3_000)
    path = tmp_path / f"{name}.csv.gz"
    write_csv(series, path)
    candles = read_kline_file(path, parse_interval("5"))  # raises on any row the project would reject
    assert np.array_equal(candles.open_time_ms, series.open_time_ms)
    assert np.array_equal(candles.values, series.to_frame().iloc[:, 1:].to_numpy())  # exact float64
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["synthetic"] is True and sidecar["market"] == name and sidecar["seed"] == 7
    again = read_series(path)
    assert again.market == series.market and np.array_equal(again.close, series.close)
    assert again.hidden.keys() == series.hidden.keys()


def test_read_series_refuses_files_that_are_not_what_the_sidecar_says(tmp_path):
    series = RegimeSwitchingMarket().generate(500, seed=1)
    path = tmp_path / "regime.csv"
    write_csv(series, path)
    sidecar = sidecar_path(path)
    spec = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**spec, "seed": 2}))
    with pytest.raises(SyntheticFileError, match="not those of the series"):
        read_series(path)
    sidecar.unlink()
    with pytest.raises(SyntheticFileError, match="no sidecar"):
        read_series(path)


# --- specs, sampling and validation ---


@pytest.mark.parametrize("name", MARKETS)
def test_spec_round_trip_and_sampling_within_the_ranges(name):
    default = market_from_spec(name)
    assert default.name == name
    assert market_from_spec(name, **default.parameters) == default
    sampled = [sample_market(name, seed) for seed in range(20)]
    assert sample_market(name, 3) == sampled[3]
    assert len(set(sampled)) == 20  # frozen dataclasses hash by value: every seed drew other parameters
    for market in sampled:
        assert market.name == name
        values = dict(market.parameters)
        if name == "garch":
            values["persistence"] = values.pop("beta") + values["alpha"]
        for key, (low, high) in PARAMETER_RANGES[name].items():
            assert low <= values[key] <= high, (key, values[key])


@pytest.mark.parametrize(
    "make",
    [
        lambda: RegimeSwitchingMarket(drift_bps=0.0),
        lambda: RegimeSwitchingMarket(mean_regime_bars=1.5),
        lambda: RegimeSwitchingMarket(noise_bps=math.nan),
        lambda: RegimeSwitchingMarket(noise_bps="12"),
        lambda: RegimeSwitchingMarket(drift_bps=True),
        lambda: OrnsteinUhlenbeckMarket(kappa=0.0),
        lambda: OrnsteinUhlenbeckMarket(kappa=1.5),
        lambda: GarchMarket(alpha=0.1, beta=0.9),
        lambda: GarchMarket(alpha=-0.01),
        lambda: GarchMarket(long_run_vol_bps=0.0),
        lambda: RandomWalkMarket(noise_bps=-1.0),
        lambda: RandomWalkMarket(leak_next_return=1),
        lambda: market_from_spec("brownian"),
        lambda: market_from_spec("ou", drift_bps=1.0),
        lambda: market_from_spec("random_walk_leaked", leak_next_return=False),
        lambda: sample_market("brownian", 0),
        lambda: RandomWalkMarket().generate(1, seed=0),
        lambda: RandomWalkMarket().generate(100, seed=-1),
        lambda: RandomWalkMarket().generate(100, seed=0, start="2025-01-01T00:01"),
        lambda: RandomWalkMarket().generate(100, seed=0, start="yesterday-ish"),
    ],
)
def test_bad_parameters_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_bad_oracle_arguments_raise_config_error():
    market = RegimeSwitchingMarket()
    series = market.generate(1_000, seed=0)
    for cost, fit in [(-0.001, 500), (math.nan, 500), (COST, 1), (COST, 1_001), (COST, slice(0, 500, 2))]:
        with pytest.raises(ConfigError):
            market.oracle(series, cost, fit)
    with pytest.raises(ConfigError, match="oracle of"):
        RegimeSwitchingMarket(drift_bps=2.0).oracle(series, COST, 500)
    with pytest.raises(ConfigError):
        oracle_metrics(series, market.oracle(series, COST, 500), slice(999, 1_000))


# --- forecast scores ---


def test_direction_accuracy_skips_flat_bars_and_counts_no_view_as_half():
    forecast = np.array([1.0, -1.0, 0.0, 2.0, -3.0])
    realised = np.array([2.0, 1.0, -1.0, 0.0, -1.0])
    assert direction_accuracy(forecast, realised) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert math.isnan(direction_accuracy(forecast, np.zeros(5)))


def test_vol_forecast_corr_is_pearson_with_the_absolute_return():
    spread = np.array([1.0, 2.0, 3.0, 4.0])
    realised = np.array([-1.0, 2.0, -3.0, 4.0])  # |r| = spread: perfect, whatever the signs
    assert vol_forecast_corr(spread, realised) == pytest.approx(1.0)
    assert vol_forecast_corr(spread, np.array([4.0, -3.0, 2.0, -1.0])) == pytest.approx(-1.0)
    assert math.isnan(vol_forecast_corr(np.full(4, 0.3), realised))
