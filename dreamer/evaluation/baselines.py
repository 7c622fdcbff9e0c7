"""Reference strategies, traded on the same window with the same costs as the agent.

Each returns `positions [N]` for the evaluation rows, with the backtest's timing (decided at the close of
bar t from data up to t, held over bar t+1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BASELINE_NAMES = ("buy_and_hold", "flat", "momentum", "random")


def buy_and_hold(num_bars: int) -> np.ndarray:
    """Fully long from the first close on (pays the entry fee once)."""
    return np.ones(num_bars)


def flat(num_bars: int) -> np.ndarray:
    """Never in the market: zero return, zero risk, zero fees."""
    return np.zeros(num_bars)


def momentum(close: np.ndarray, rows: np.ndarray, lookback: int) -> np.ndarray:
    """Long when the close is above the close `lookback` bars earlier, short when below, flat when equal
    or before enough history exists. `close` is the whole series (history before the window is past data,
    so it may be used); `rows [N]` are the evaluation rows."""
    past = rows - lookback
    signal = np.zeros(len(rows))
    known = past >= 0
    signal[known] = np.sign(np.log(close[rows[known]] / close[past[known]]))
    return signal


def random_trading(num_bars: int, num_trades: int, levels: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Starts flat and changes position at `num_trades` bars chosen uniformly at random, each time to a
    level drawn uniformly from the other `levels`: the agent's trading frequency without its information."""
    levels_array = np.asarray(levels, dtype=np.float64)
    num_trades = min(num_trades, num_bars)
    trade_bars = np.sort(rng.choice(num_bars, size=num_trades, replace=False))  # [K]
    targets = np.zeros(num_trades + 1)  # targets[0]: flat before the first trade
    for k in range(num_trades):  # a loop over trades, not bars: each must differ from the last
        others = levels_array[levels_array != targets[k]]
        targets[k + 1] = rng.choice(others)
    trades_so_far = np.zeros(num_bars, dtype=np.int64)
    trades_so_far[trade_bars] = 1
    return targets[np.cumsum(trades_so_far)]  # [N]
