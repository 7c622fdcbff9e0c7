"""Reference strategies, traded on the same window with the same costs as the agent.

Each returns `positions [N]` for the evaluation rows, with the backtest's timing (decided at the close of
bar t from data up to t, held over bar t+1). Like the agent, every baseline's account starts flat at the
window's first row; history before the window is past data, so signals may use it.

    buy_and_hold  fully long throughout.
    flat          never in the market.
    momentum      the return over `lookback` bars in units of its trailing volatility, long once it rises
                  above `band`, short once it falls below −band, held in between (a no-trade band).
    vol_target    long min(1, target vol / trailing realised vol), rebalanced only when that drifts more
                  than `band` from the position held.
    supervised    a ridge regression of the next `horizon` bars' log return on the agent's observations,
                  fitted on the train split, its no-trade band chosen on the validation split by net Sharpe.
    random        random trades between position levels until the agent's turnover is reached (at least
                  `min_trades` of them); averaged over seeds by the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dreamer.evaluation.backtest import BacktestError, evaluation_window, run_backtest
from dreamer.evaluation.metrics import sharpe_ratio
from dreamer.features.dataset import MarketDataset

DETERMINISTIC_BASELINES = ("buy_and_hold", "flat", "momentum", "vol_target", "supervised")
"""The baselines with one position path each."""
BASELINE_NAMES = (*DETERMINISTIC_BASELINES, "random")
"""Every baseline of a report, in its order; `random` is the mean over `random_baseline_seeds` paths."""


def buy_and_hold(num_bars: int) -> np.ndarray:
    """Fully long from the first close on (pays the entry fee once)."""
    return np.ones(num_bars)


def flat(num_bars: int) -> np.ndarray:
    """Never in the market: zero return, zero risk, zero fees."""
    return np.zeros(num_bars)


def band_positions(signal: np.ndarray, band: float) -> np.ndarray:
    """`[N]` positions of the no-trade band rule (hysteresis) on `signal [N]`, starting flat:
    `p_t = +1 if signal_t > band, −1 if signal_t < −band, p_{t−1} otherwise` (NaN: no signal, hold).
    Vectorised as a forward fill of the last bar whose signal left the band; `band = inf` never trades."""
    target = np.select([signal > band, signal < -band], [1.0, -1.0], np.nan)  # [N]
    bars = np.arange(signal.shape[0])
    last_signal = np.maximum.accumulate(np.where(np.isnan(target), -1, bars))  # [N], -1 before the first
    return np.where(last_signal >= 0, target[np.maximum(last_signal, 0)], 0.0)


def trailing_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """`[N]` realised volatility per bar known at the close of each row t: the root mean square of the
    `window` one-bar log returns ending at t (`log(close[s] / close[s−1])`, t − window < s ≤ t); NaN where
    fewer than `window` returns exist. Root mean square, not a demeaned std: a bar's mean return is far
    below its noise, and it makes the estimate a difference of one running sum."""
    squared = np.diff(np.log(close)) ** 2  # [N − 1], squared[s − 1] belongs to row s
    running = np.concatenate([[0.0], np.cumsum(squared)])  # [N], running[t]: rows 1 … t
    vol = np.full(close.shape[0], np.nan)
    vol[window:] = np.sqrt((running[window:] - running[:-window]) / window)
    return vol


def momentum(close: np.ndarray, rows: np.ndarray, lookback: int, vol_window: int, band: float) -> np.ndarray:
    """Trend following with a no-trade band. The score at row t is `log(close[t] / close[t − lookback])`
    divided by the standard deviation a `lookback`-bar return has at the trailing volatility
    (`trailing_volatility(close, vol_window)[t] · sqrt(lookback)`); `band_positions(score, band)` over the
    evaluation `rows [N]` (flat until the score first leaves the band; no score before enough history).
    `close` is the whole series; only rows up to the window's last are read."""
    history = close[: rows[-1] + 1]
    vol = trailing_volatility(history, vol_window)[rows]  # [N]
    past = rows - lookback
    score = np.full(rows.shape[0], np.nan)
    known = (past >= 0) & (vol > 0)  # NaN vol compares False
    score[known] = np.log(history[rows[known]] / history[past[known]]) / (vol[known] * math.sqrt(lookback))
    return band_positions(score, band)


def vol_target(close: np.ndarray, rows: np.ndarray, target_vol: float, vol_window: int, band: float) -> np.ndarray:
    """A long sized to a volatility target: the wanted position at row t is
    `min(1, target_vol / trailing_volatility(close, vol_window)[t])` (`target_vol` per bar, as that
    volatility), 0 where no estimate exists yet and 1 where the trailing bars did not move. Starting flat,
    the position moves to the wanted one only when the two differ by more than `band`, so the estimate's
    bar-to-bar wobble does not pay a fee every bar."""
    vol = trailing_volatility(close[: rows[-1] + 1], vol_window)[rows]  # [N]
    wanted = np.ones(rows.shape[0])
    np.divide(target_vol, vol, out=wanted, where=vol > 0)
    wanted = np.where(np.isnan(vol), 0.0, np.minimum(wanted, 1.0))
    # Path-dependent (each rebalance moves the reference of the next), hence a loop over bars: ~0.2 µs a
    # bar on plain floats, milliseconds for a month of 5-minute bars.
    held = np.empty_like(wanted)
    position = 0.0
    for t, want in enumerate(wanted.tolist()):
        if abs(want - position) > band:
            position = want
        held[t] = position
    return held


@dataclass(frozen=True)
class SupervisedBaseline:
    """A ridge forecast of the next `horizon` bars' log return and the no-trade band it trades with."""

    forecasts: np.ndarray  # [N] for every dataset row, from its observation only
    band: float  # on the forecast, chosen on the validation split; inf: it never trades
    validation_sharpe: float | None  # net Sharpe of that band on the validation split (None: no split)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """`[len(rows)]` positions over evaluation `rows`: `band_positions` of their forecasts."""
        return band_positions(self.forecasts[rows], self.band)


def fit_supervised(
    dataset: MarketDataset,
    cost_rate: float,
    periods: float,
    *,
    horizon: int,
    ridge_alpha: float,
    band_quantiles: Sequence[float],
) -> SupervisedBaseline:
    """The `supervised` baseline: what a plain regression on the agent's own inputs earns.

    Fit: ridge regression (with intercept) of `log(close[t + horizon] / close[t])` on `obs[t]` over the
    train rows whose target ends inside the train split (its last `horizon` rows are dropped). Tune: the
    candidate bands are the `band_quantiles` of |forecast| on those rows, plus never trading; the one with
    the best net Sharpe (costs and funding, `run_backtest`) on the validation split wins, the widest among
    equals. Nothing after the train split reaches the model, nothing after the validation split the band;
    the forecast of row t reads `obs[t]` only, so the positions are causal. With too few train rows to fit
    or no validation rows to tune on, it never trades."""
    train_start, train_stop = dataset.splits["train"]
    fit_rows = np.arange(train_start, train_stop - horizon)  # targets end at or before the last train close
    try:
        validation = evaluation_window(dataset, "val")
    except BacktestError:
        validation = None
    if fit_rows.size < 2 or validation is None:
        return SupervisedBaseline(np.zeros(len(dataset)), math.inf, None)

    # sklearn costs a second of import time: only the evaluation that fits it pays
    from sklearn.linear_model import Ridge

    targets = np.log(dataset.close[fit_rows + horizon] / dataset.close[fit_rows])  # [M]
    model = Ridge(alpha=ridge_alpha).fit(dataset.obs[fit_rows].astype(np.float64), targets)
    forecasts = model.predict(dataset.obs.astype(np.float64))  # [N]
    candidates = np.append(np.unique(np.quantile(np.abs(forecasts[fit_rows]), band_quantiles)), math.inf)
    sharpes = np.array(
        [
            sharpe_ratio(
                run_backtest(
                    band_positions(forecasts[validation.rows], band),
                    validation.log_returns,
                    cost_rate,
                    funding_rates=validation.funding_rates,
                ).net_returns,
                periods,
            )
            for band in candidates
        ]
    )
    best = candidates.shape[0] - 1 - int(np.argmax(sharpes[::-1]))  # the widest of equally good bands
    return SupervisedBaseline(forecasts, float(candidates[best]), float(sharpes[best]))


def random_trading(
    num_bars: int, turnover: float, levels: Sequence[float], min_trades: int, rng: np.random.Generator
) -> np.ndarray:
    """Starts flat and trades at bars chosen uniformly at random, each time to a level drawn uniformly from
    the other `levels`, until its turnover (Σ|Δposition|, the entry from flat included) reaches `turnover`,
    and at least `min_trades` times (at most once a bar): the agent's trading volume, hence its costs,
    without its information. The minimum keeps an agent that barely trades from making this one coin flip."""
    levels_array = np.asarray(levels, dtype=np.float64)
    count = levels_array.shape[0]
    flat_index = np.flatnonzero(levels_array == 0.0)
    # a level other than the last by a uniform step around the ring of level indices; from flat, any other
    first = (flat_index[0] + rng.integers(1, count)) % count if flat_index.size else rng.integers(count)
    steps = rng.integers(1, count, size=num_bars - 1)
    targets = levels_array[(first + np.concatenate([[0], np.cumsum(steps)])) % count]  # [num_bars] candidates
    reached = np.cumsum(np.abs(np.diff(np.concatenate([[0.0], targets])))) >= turnover  # [num_bars]
    needed = 0 if turnover <= 0 else int(np.argmax(reached)) + 1 if reached.any() else num_bars
    num_trades = min(max(needed, min_trades), num_bars)
    trade_bars = np.sort(rng.choice(num_bars, size=num_trades, replace=False))  # [K]
    trades_so_far = np.zeros(num_bars, dtype=np.int64)
    trades_so_far[trade_bars] = 1
    return np.concatenate([[0.0], targets[:num_trades]])[np.cumsum(trades_so_far)]  # [num_bars]
