"""Vectorised backtest of target positions with costs and compounding equity.

Timing convention (no look-ahead): `positions[t]` is decided at the close of bar t from data up to t and
is held over the next bar, earning `log_returns[t] = log(close[t+1] / close[t])`. Moving to it from
`positions[t-1]` (the account starts at `initial_position`, flat by default) pays
`cost_rate · |Δposition|` of equity at the close of t. On a perpetual it pays `position · funding_rates[t]`
of equity, the rates settled while it is held (after the close of t, up to the close of t+1: see
`dreamer.trading` for the exact convention). The per-bar arithmetic is
`dreamer.trading.net_simple_return`, the same definition the agent's imagined reward uses. The position open
at the end of the window is not liquidated (no final exit fee), as for every baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamer.errors import DreamerError
from dreamer.features.dataset import MarketDataset
from dreamer.trading import MIN_GROWTH, net_simple_return


class BacktestError(DreamerError):
    """Positions and returns do not line up, or contain non-finite values."""


@dataclass(frozen=True)
class BacktestResult:
    positions: np.ndarray  # [N] held over bar t+1
    log_returns: np.ndarray  # [N] market log return of bar t+1
    position_changes: np.ndarray  # [N] |positions[t] - positions[t-1]|
    net_returns: np.ndarray  # [N] simple return of equity over the bar, after costs
    gross_returns: np.ndarray  # [N] the same without costs
    fees: np.ndarray  # [N] costs paid at the close of t, as a fraction of the *initial* equity
    funding: np.ndarray  # [N] funding paid over bar t+1 (positive: paid, negative: received), same unit
    equity: np.ndarray  # [N + 1] net equity, equity[0] = 1
    gross_equity: np.ndarray  # [N + 1] equity of the same positions without costs or funding
    equity_ex_funding: np.ndarray  # [N + 1] equity of the same positions after costs, without funding

    @property
    def num_bars(self) -> int:
        return int(self.positions.shape[0])

    @property
    def net_log_returns(self) -> np.ndarray:
        """[N] `dreamer.trading.net_log_return` of every bar."""
        return np.log1p(self.net_returns)


def run_backtest(
    positions: np.ndarray,
    log_returns: np.ndarray,
    cost_rate: float,
    initial_position: float = 0.0,
    *,
    funding_rates: np.ndarray | None = None,
) -> BacktestResult:
    """Backtest `positions [N]` against `log_returns [N]` and, on a perpetual, `funding_rates [N]` (the
    rates settled over each held bar; None: no funding). See the module docstring for the timing."""
    positions = np.asarray(positions, dtype=np.float64)
    log_returns = np.asarray(log_returns, dtype=np.float64)
    funding_rates = np.zeros_like(positions) if funding_rates is None else np.asarray(funding_rates, np.float64)
    if positions.ndim != 1 or positions.shape != log_returns.shape or positions.shape != funding_rates.shape:
        raise BacktestError(
            f"positions {positions.shape}, log_returns {log_returns.shape} and funding_rates "
            f"{funding_rates.shape} must all be [N]"
        )
    if positions.size == 0:
        raise BacktestError("backtest needs at least one bar")
    if not (np.isfinite(positions).all() and np.isfinite(log_returns).all() and np.isfinite(funding_rates).all()):
        raise BacktestError("positions, log_returns and funding_rates must be finite")
    if cost_rate < 0:
        raise BacktestError(f"cost_rate must be >= 0, got {cost_rate}")
    previous = np.concatenate([[initial_position], positions[:-1]])  # [N]
    net = net_simple_return(previous, positions, log_returns, cost_rate, funding_rates)  # [N]
    ex_funding = net_simple_return(previous, positions, log_returns, cost_rate)  # [N]
    gross = np.maximum(positions * np.expm1(log_returns), MIN_GROWTH - 1.0)  # [N]
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])  # [N + 1]
    changes = np.abs(positions - previous)
    return BacktestResult(
        positions=positions,
        log_returns=log_returns,
        position_changes=changes,
        net_returns=net,
        gross_returns=gross,
        fees=cost_rate * changes * equity[:-1],
        funding=positions * funding_rates * equity[:-1],
        equity=equity,
        gross_equity=np.concatenate([[1.0], np.cumprod(1.0 + gross)]),
        equity_ex_funding=np.concatenate([[1.0], np.cumprod(1.0 + ex_funding)]),
    )


@dataclass(frozen=True)
class EvaluationWindow:
    """The rows of a split that can be traded: each has a following bar in the same split."""

    rows: np.ndarray  # [N] dataset row indices t
    log_returns: np.ndarray  # [N] log(close[t+1] / close[t]), across a data gap if one follows t
    funding_rates: np.ndarray  # [N] rates settled after the close of t up to the close of t+1 (0: none)
    open_time_ms: np.ndarray  # [N + 1] open times of the bars t and of the final t+1 (for plots)


def settled_funding(dataset: MarketDataset, rows: np.ndarray) -> np.ndarray:
    """`[N]` the funding settled during each bar of `rows` (after the previous row's close, up to this
    close): what the position held into the bar paid, which a trading account books at its close."""
    return dataset.funding.next_rate[np.maximum(rows - 1, 0)]


def evaluation_window(dataset: MarketDataset, split: str = "test") -> EvaluationWindow:
    """Trading rows of `split`: every row but the split's last, paired with the close-to-close return to
    the next row, and with the funding settled in between. Where bars are missing after t the position is
    held through the gap, earns the whole move and pays what settled meanwhile (what an account holding it
    would see), rather than skipping it."""
    start, stop = dataset.splits[split]
    if stop - start < 2:
        raise BacktestError(f"split {split!r} has {stop - start} rows; a backtest needs at least 2")
    rows = np.arange(start, stop - 1)
    close = dataset.close
    return EvaluationWindow(
        rows=rows,
        log_returns=np.log(close[start + 1 : stop] / close[start : stop - 1]),
        funding_rates=dataset.funding.next_rate[start : stop - 1],
        open_time_ms=dataset.open_time_ms[start:stop],
    )
