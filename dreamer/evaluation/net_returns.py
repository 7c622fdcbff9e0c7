"""The paired comparison of two agents' Sharpe ratios on the same bars, from their per-bar net returns.

`dreamer.pipeline.stage_evaluate` saves every backtest of its window bar by bar (`backtests.npz`,
`dreamer.research.backtests`). Promotion reads the candidate's and the re-evaluated champion's agent series
(`NetReturns.of_agent`) to test whether the candidate's Sharpe is higher by more than chance: both series are
resampled with the same blocks (`metrics.bootstrap_sharpe`), so what the two agents share (the market's
moves) cancels in the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamer.errors import DreamerError
from dreamer.evaluation.metrics import bootstrap_sharpe, confidence_interval, sharpe_ratio


@dataclass(frozen=True)
class NetReturns:
    open_time_ms: np.ndarray  # [N] int64 open time of the bar each position was decided at
    net_return: np.ndarray  # [N] float64 simple return of equity over the next bar, after costs and funding

    @classmethod
    def of_agent(cls, backtests_path: str | Path) -> NetReturns:
        """The agent's series in the backtests an evaluation saved (`stage_evaluate`'s `backtests.npz`)."""
        from dreamer.research.backtests import load_backtests

        saved = load_backtests(backtests_path)
        return cls(open_time_ms=saved.open_time_ms[:-1], net_return=saved.results["agent"].net_returns)


@dataclass(frozen=True)
class SharpeDifference:
    """Candidate minus champion annualised Sharpe on the same bars, with its paired block-bootstrap
    interval at `confidence`."""

    diff: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """The whole interval lies above zero."""
        return self.ci_low > 0.0


def paired_sharpe_difference(
    candidate: NetReturns,
    champion: NetReturns,
    periods: float,
    *,
    block: int,
    samples: int,
    seed: int,
    confidence: float,
) -> SharpeDifference:
    """Sharpe(candidate) − Sharpe(champion) and its paired block-bootstrap interval. Both must cover the very
    same bars (`DreamerError` otherwise: returns of different windows are not evidence for either)."""
    if not np.array_equal(candidate.open_time_ms, champion.open_time_ms):
        raise DreamerError(
            f"the candidate's {len(candidate.open_time_ms)} and the champion's {len(champion.open_time_ms)} "
            "evaluated bars differ: a paired comparison needs the same window"
        )
    series = {"candidate": candidate.net_return, "champion": champion.net_return}
    draws = bootstrap_sharpe(series, periods, block, samples, seed)
    low, high = confidence_interval(draws["candidate"] - draws["champion"], confidence)
    point = float(sharpe_ratio(candidate.net_return, periods) - sharpe_ratio(champion.net_return, periods))
    return SharpeDifference(diff=point, ci_low=low, ci_high=high, confidence=confidence)
