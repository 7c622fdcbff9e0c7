"""Configuration of registry promotion."""

from __future__ import annotations

from dataclasses import dataclass

from dreamer.errors import require
from dreamer.evaluation.config import BACKTEST_METRICS


@dataclass(frozen=True)
class PromotionConfig:
    metric: str = "sharpe"  # a key of the agent's net backtest metrics (evaluation metrics.json "agent")
    higher_is_better: bool = True  # false for metrics such as turnover or volatility
    min_improvement: float = 0.0  # the challenger must beat the champion by more than this
    max_drawdown_limit: float = 0.5  # guard rail: a fraction of equity, e.g. 0.5 = -50 %
    metric_floor: float | None = 0.0  # guard rail: the metric must be better than this (null: no floor)
    # Beating an evaluated champion also needs evidence: the paired block-bootstrap interval of the candidate's
    # Sharpe minus the champion's, on the same bars, at confidence 1 - significance_level, must lie above 0.
    require_significance: bool = True
    significance_level: float = 0.05

    def __post_init__(self) -> None:
        require(
            self.metric in BACKTEST_METRICS,
            f"promotion.metric: {self.metric!r} is not a backtest metric; valid: {', '.join(BACKTEST_METRICS)}",
        )
        require(self.min_improvement >= 0.0, "promotion.min_improvement must be >= 0")
        require(0.0 < self.max_drawdown_limit <= 1.0, "promotion.max_drawdown_limit must be in (0, 1]")
        require(
            0.0 < self.significance_level < 0.5,
            f"promotion.significance_level must be in (0, 0.5), got {self.significance_level!r}",
        )

    @property
    def confidence(self) -> float:
        """The confidence of the paired interval that `require_significance` reads."""
        return 1.0 - self.significance_level
