"""Scores of next-bar return forecasts, as pure numpy functions of aligned arrays.

`forecast[i]` (a point forecast or a predicted spread) is made before `realised[i]`, the log return it
forecasts, is known:

    direction_accuracy  share of bars with sign(r̂) = sign(r), over the bars with r ≠ 0 (a bar that did not
                        move has no direction to get right); a forecast of exactly 0 has no view and counts ½
    vol_forecast_corr   Pearson correlation between the predicted std of r and the realised |r|: does the
                        forecaster know when the market is volatile

Used by `dreamer.evaluation.forecast` (the world model) and `dreamer.synthetic` (the oracles): a world
model's forecasts and a synthetic market's oracle are scored by the same code.
"""

from __future__ import annotations

import numpy as np


def direction_accuracy(forecast: np.ndarray, realised: np.ndarray) -> float:
    """Share of `[N]` bars with r ≠ 0 whose forecast has the sign of r (r̂ = 0 counts ½); NaN if none moved."""
    forecast = np.asarray(forecast, dtype=np.float64)
    realised = np.asarray(realised, dtype=np.float64)
    moved = realised != 0
    if not moved.any():
        return float("nan")
    hits = np.where(forecast == 0, 0.5, np.sign(forecast) == np.sign(realised))
    return float(np.mean(hits[moved]))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two `[N]` arrays; NaN when either is constant (e.g. an untrained, zero-output
    head, or an oracle that knows the next return exactly and predicts no spread) or not finite."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # ptp, not std: the std of a constant array can round to 1e-19 instead of 0, and corrcoef of noise follows.
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()) or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def vol_forecast_corr(spread: np.ndarray, realised: np.ndarray) -> float:
    """Pearson correlation between the predicted std `spread [N]` and `|realised| [N]`."""
    return pearson(spread, np.abs(np.asarray(realised, dtype=np.float64)))
