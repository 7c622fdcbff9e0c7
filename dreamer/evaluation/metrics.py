"""Performance metrics of a backtest, annualised for markets that trade 24/7.

The annualisation factor comes from the bar interval: 365 days × bars per day (5-minute bars:
365 × 288 = 105,120 periods a year), never the 252 trading days of equity markets. Ratios use simple
per-bar net returns and a zero risk-free rate. `max_drawdown` is a positive fraction of equity
(0.2 = the account fell 20 % below its previous peak). A ratio whose denominator is zero is 0 when its
numerator is also zero (a flat account) and `None` (JSON null) otherwise: undefined, not infinite.
"""

from __future__ import annotations

import math

import numpy as np

from dreamer.errors import ConfigError
from dreamer.evaluation.backtest import BacktestResult

MINUTES_PER_YEAR = 365 * 24 * 60
_NAMED_INTERVALS = {"D": 365.0, "W": 365.0 / 7.0, "M": 12.0}

Metrics = dict[str, float | int | None]


def periods_per_year(interval: str) -> float:
    """Bars per year of a Bybit interval: minutes ("1", "5", "60", …) or "D", "W", "M"."""
    text = str(interval).strip()
    if text in _NAMED_INTERVALS:
        return _NAMED_INTERVALS[text]
    if text.isdigit() and int(text) > 0:
        return MINUTES_PER_YEAR / int(text)
    raise ConfigError(f"unknown bar interval {interval!r}: expected minutes (1, 5, 60, …) or D, W, M")


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator > 0:
        return numerator / denominator
    return 0.0 if numerator == 0 else None


def sharpe_ratio(net_returns: np.ndarray, periods: float) -> np.ndarray:
    """Annualised Sharpe of per-bar simple returns `[..., N]` -> `[...]` (sample std; 0 if constant)."""
    returns = np.asarray(net_returns, dtype=np.float64)
    mean = returns.mean(axis=-1)
    std = returns.std(axis=-1, ddof=1) if returns.shape[-1] > 1 else np.zeros_like(mean)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, mean / safe, 0.0) * math.sqrt(periods)


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall below the running peak, as a positive fraction of the peak."""
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    """`[N + 1]` drawdown below the running peak at every point (0 at a peak, positive below it)."""
    return 1.0 - equity / np.maximum.accumulate(equity)


def compute_metrics(result: BacktestResult, periods: float) -> Metrics:
    """Every headline number of a backtest; `periods` is `periods_per_year(interval)`."""
    net = result.net_returns
    n = result.num_bars
    years = n / periods
    final = float(result.equity[-1])
    mean = float(net.mean())
    volatility = float(net.std(ddof=1)) * math.sqrt(periods) if n > 1 else 0.0
    downside = math.sqrt(float(np.mean(np.minimum(net, 0.0) ** 2))) * math.sqrt(periods)
    cagr = final ** (1.0 / years) - 1.0 if final > 0 else -1.0
    drawdown = max_drawdown(result.equity)
    in_market = result.positions != 0
    trades = result.position_changes > 0
    return {
        "total_return": final - 1.0,
        "total_return_ex_funding": float(result.equity_ex_funding[-1]) - 1.0,  # after costs, before funding
        "gross_return": float(result.gross_equity[-1]) - 1.0,  # before costs and funding
        "cagr": cagr,
        "sharpe": float(sharpe_ratio(net, periods)),
        "sortino": _ratio(mean * periods, downside),
        "calmar": _ratio(cagr, drawdown),
        "max_drawdown": drawdown,
        "volatility": volatility,
        "turnover": float(result.position_changes.mean()),  # equity traded per bar
        "annual_turnover": float(result.position_changes.mean()) * periods,
        "exposure": float(in_market.mean()),  # share of bars with an open position
        "mean_abs_position": float(np.abs(result.positions).mean()),
        "hit_rate": float((net[in_market] > 0).mean()) if in_market.any() else None,
        "num_trades": int(trades.sum()),
        "fees_paid": float(result.fees.sum()),  # fraction of the initial equity
        "funding_paid": float(result.funding.sum()),  # the same; negative: received
        "num_bars": n,
        "years": years,
    }


def block_bootstrap_indices(n: int, block: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """`[samples, n]` row indices of a circular moving-block bootstrap: blocks of `block` consecutive bars
    (wrapping around the end) keep the short-range dependence of returns that an i.i.d. resample breaks."""
    block = max(1, min(block, n))
    num_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(samples, num_blocks, 1))  # [S, K, 1]
    indices = (starts + np.arange(block)) % n  # [S, K, block]
    return indices.reshape(samples, num_blocks * block)[:, :n]


def bootstrap_sharpe(
    returns: dict[str, np.ndarray],
    periods: float,
    block: int,
    samples: int,
    seed: int,
    chunk: int = 100,
) -> dict[str, np.ndarray]:
    """Bootstrap distribution `[samples]` of the Sharpe ratio of every series in `returns` (each `[N]`),
    all resampled with the *same* indices so differences between them are paired."""
    n = len(next(iter(returns.values())))
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {name: [] for name in returns}
    for first in range(0, samples, chunk):
        indices = block_bootstrap_indices(n, block, min(chunk, samples - first), rng)  # [s, N]
        for name, series in returns.items():
            out[name].append(sharpe_ratio(series[indices], periods))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def confidence_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval of a bootstrap distribution."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
