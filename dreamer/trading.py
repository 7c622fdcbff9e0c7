"""The one definition of what a bar of trading earns, shared by the imagined reward and the backtest.

A position `p` is a fraction of equity (−1 short … +1 long) chosen at the close of bar t and held over bar
t+1, whose log return is `r = log(close[t+1] / close[t])`. Moving from the previous position `p_prev`
costs `cost_rate · |p − p_prev|` of equity (fee + slippage on the notional traded). On a perpetual the
position also pays `p · f`, where `f` is the sum of the funding rates settled while it is held. Equity then
grows by

    E[t+1] / E[t] = 1 + p · (exp(r) − 1) − cost_rate · |p − p_prev| − p · f

and the *net log return* of the bar is the log of that factor. To first order it is
`p · r − cost_rate · |Δp| − p · f`; we keep the exact factor because equity compounds and the second-order
term is not negligible over a year of 5-minute bars for short and fractional positions (a 100 % short over
a bar with r is −r − r²/2 − …, not −r).

Funding timing. Held over bar t+1 means held from the close of bar t to the close of bar t+1, so the
position pays every settlement `s` with `close_t < s <= close_{t+1}`. A settlement at exactly the close of
bar t (08:00:00 is the close of the 07:55 five-minute bar) is paid by the position held *into* it, the
one decided a bar earlier: an order placed at 08:00:00 fills after the settlement's snapshot. Longs pay
positive rates to shorts, shorts pay negative ones (Bybit's convention). Bybit charges the rate on the
position's value at the settlement's mark price; `p · f` charges it on the value at the bar's start. The
difference is `p · f · (price move before the settlement)`, below 1e-7 of equity a settlement for
five-minute bars (a 1 bp rate times a 10 bp move).

The same function, on numpy arrays or torch tensors, is what the backtest compounds and what the agent's
imagined reward is built from (`dreamer.agent.portfolio`), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

MIN_GROWTH = 1e-6
"""Floor of the equity growth factor: a bar that would wipe out the account leaves it at 1e-6 of its
equity, not at NaN (1e-6 is still representable as 1 − growth in float32)."""


def net_simple_return(
    prev_position: ArrayT,
    position: ArrayT,
    next_log_return: ArrayT,
    cost_rate: float,
    funding_rate: ArrayT | float = 0.0,
) -> ArrayT:
    """`E[t+1] / E[t] − 1 = p·(exp(r) − 1) − cost·|p − p_prev| − p·f` elementwise (floored at MIN_GROWTH − 1).

    `funding_rate` is `f`, the summed rates of the settlements inside the held bar (0: none, or spot)."""
    if isinstance(position, torch.Tensor):
        gross = position * (torch.expm1(next_log_return) - funding_rate)
        return (gross - cost_rate * (position - prev_position).abs()).clamp_min(MIN_GROWTH - 1.0)
    gross = position * (np.expm1(next_log_return) - funding_rate)
    return np.maximum(gross - cost_rate * np.abs(position - prev_position), MIN_GROWTH - 1.0)


def net_log_return(
    prev_position: ArrayT,
    position: ArrayT,
    next_log_return: ArrayT,
    cost_rate: float,
    funding_rate: ArrayT | float = 0.0,
) -> ArrayT:
    """Net log return of holding `position` over the next bar after moving there from `prev_position`,
    paying `position · funding_rate` of funding.

    Computed as log1p of the simple return, which keeps float32 exact to ~1e-7 *relative* to the return
    itself (log of a growth factor near 1 would lose the last digits of a 1e-4 return)."""
    simple = net_simple_return(prev_position, position, next_log_return, cost_rate, funding_rate)
    return torch.log1p(simple) if isinstance(simple, torch.Tensor) else np.log1p(simple)
