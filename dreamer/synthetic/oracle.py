"""The best-informed trader of a synthetic market: forecasts from the true parameters, a no-trade-band
policy, and its scores computed by the project's own backtest and metrics.

An `Oracle` holds, for every bar t of a series, what can be known at the close of t from bars ≤ t and the
market's true parameters (each market's docstring says how it computes them):

    expected_return[t]  m_t = E[r_{t+1} | bars ≤ t], natural log-return units
    expected_vol[t]     std(r_{t+1} | bars ≤ t)
    positions[t]        in {−1, 0, +1}, decided at the close of t and held over bar t+1 (the timing of
                        `dreamer.evaluation.backtest`)

Policy. A one-bar edge m_t is a fraction of a basis point while a trade costs `cost_rate` (6.5 bp) per
unit of position, so the position must change only when the edge has clearly turned. The rule is a
no-trade band b (hysteresis), starting flat:

    p_t = +1 if m_t > b,   −1 if m_t < −b,   p_{t−1} otherwise.

Optimal policies of a drift that switches or reverts under proportional costs have this threshold form; a
rule with separate entry and exit thresholds (going flat in between) did no better on the OU market in our
trials, so one band serves every market, which makes the oracle "best known" rather than proven optimal.
`tune_band` picks b among the quantiles of |m_t| on the fit rows (and b = ∞, never trading) to maximise the
net log growth of the policy on those rows with the real cost, ties going to the wider band. The fit rows
are the benchmark's training bars, so the oracle never sees the bars it is scored on. Given b, p_t uses
m_0 … m_t only, which use bars ≤ t only: the oracle is strictly causal. A market with no directional edge
(m ≡ 0) never trades.

Scores (`oracle_metrics`) on rows [start, stop) follow `dreamer.evaluation.backtest.evaluation_window`:
the positions of rows start … stop − 2 earn r_{t+1}, the account starts flat (and pays to enter), and the
metrics are `compute_metrics` at the 5-minute, 24/7 annualisation, with the forecast scores of
`dreamer.synthetic.scoring` over the same rows, so an agent's held-out numbers and the oracle's compare like
with like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dreamer.errors import ConfigError
from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.baselines import band_positions
from dreamer.evaluation.metrics import Metrics, compute_metrics, periods_per_year
from dreamer.evaluation.scoring import direction_accuracy, vol_forecast_corr
from dreamer.synthetic.series import BAR_INTERVAL, SyntheticSeries
from dreamer.trading import net_log_return

BAND_QUANTILES = np.linspace(0.0, 0.995, 200)
"""Candidate bands: these quantiles of |m_t| on the fit rows (0 trades every sign change)."""


@dataclass(frozen=True)
class Oracle:
    expected_return: np.ndarray  # [N] E[r_{t+1} | bars ≤ t]
    expected_vol: np.ndarray  # [N] std(r_{t+1} | bars ≤ t)
    positions: np.ndarray  # [N] decided at the close of t, held over bar t+1
    band: float  # no-trade band on expected_return (inf: never trades)
    fit_rows: tuple[int, int]  # [start, stop) the band was tuned on
    cost_rate: float  # cost per unit of position traded, as in the backtest


def row_range(rows: slice | int, num_bars: int, what: str) -> tuple[int, int]:
    """`[start, stop)` of `rows` (an int n means the first n bars) within `num_bars`, at least 2 bars long
    (a backtest needs a bar t and the bar t+1 it earns)."""
    window = slice(0, rows) if isinstance(rows, int) else rows
    if window.step not in (None, 1):
        raise ConfigError(f"{what}: a row range has no step, got {window}")
    start = 0 if window.start is None else window.start
    stop = num_bars if window.stop is None else window.stop
    if not 0 <= start < stop - 1 < num_bars:
        raise ConfigError(f"{what}: rows [{start}, {stop}) must lie in [0, {num_bars}) and hold at least 2 bars")
    return int(start), int(stop)


def tune_band(
    expected_return: np.ndarray, log_returns: np.ndarray, cost_rate: float, fit_rows: tuple[int, int]
) -> float:
    """The band with the largest net log growth on `fit_rows` (starting flat there), or inf when no band
    beats staying flat. `log_returns [N]` are the bars' own returns: position t earns log_returns[t + 1]."""
    start, stop = fit_rows
    quantiles = np.quantile(np.abs(expected_return[start:stop]), BAND_QUANTILES)
    bands = np.append(np.unique(quantiles[quantiles > 0]), math.inf)  # no positive band when m ≡ 0
    earned = log_returns[start + 1 : stop]  # [n − 1]
    growth = np.empty(bands.shape[0])
    for i, band in enumerate(bands):
        held = band_positions(expected_return, band)[start : stop - 1]  # [n − 1]
        previous = np.concatenate([[0.0], held[:-1]])
        growth[i] = net_log_return(previous, held, earned, cost_rate).sum()
    return float(bands[bands.shape[0] - 1 - np.argmax(growth[::-1])])  # the widest of equally good bands


def oracle_from_forecasts(
    series: SyntheticSeries,
    expected_return: np.ndarray,
    expected_vol: np.ndarray,
    cost_rate: float,
    fit_bars: slice | int,
) -> Oracle:
    """The oracle of `series` whose forecasts are given: tunes the band on `fit_bars` and applies it to all bars."""
    if not (math.isfinite(cost_rate) and cost_rate >= 0):
        raise ConfigError(f"cost_rate must be a finite number >= 0, got {cost_rate}")
    fit_rows = row_range(fit_bars, series.num_bars, "fit_bars")
    band = tune_band(expected_return, series.log_returns, cost_rate, fit_rows)
    return Oracle(
        expected_return=expected_return,
        expected_vol=expected_vol,
        positions=band_positions(expected_return, band),
        band=band,
        fit_rows=fit_rows,
        cost_rate=cost_rate,
    )


def oracle_metrics(series: SyntheticSeries, oracle: Oracle, rows: slice | int) -> Metrics:
    """Backtest metrics (`compute_metrics`: sharpe, total_return, …) and forecast scores
    (`direction_accuracy`, `vol_forecast_corr`) of the oracle on `rows` of `series` (module docstring)."""
    start, stop = row_range(rows, series.num_bars, "rows")
    earned = series.log_returns[start + 1 : stop]  # [n − 1] r_{t+1} of rows t = start … stop − 2
    decided = slice(start, stop - 1)
    result = run_backtest(oracle.positions[decided], earned, oracle.cost_rate)
    metrics = compute_metrics(result, periods_per_year(BAR_INTERVAL))
    metrics["direction_accuracy"] = direction_accuracy(oracle.expected_return[decided], earned)
    metrics["vol_forecast_corr"] = vol_forecast_corr(oracle.expected_vol[decided], earned)
    return metrics
