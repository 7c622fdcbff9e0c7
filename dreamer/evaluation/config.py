"""Configuration of the held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from dreamer.errors import require, require_in_range

# The headline numbers of every backtest, by name (the keys of `metrics.compute_metrics`; here, without
# torch, so a config can be checked against them): what `promotion.metric` may name.
BACKTEST_METRICS = (
    "total_return",
    "total_return_ex_funding",
    "gross_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "volatility",
    "turnover",
    "annual_turnover",
    "exposure",
    "mean_abs_position",
    "hit_rate",
    "num_trades",
    "fees_paid",
    "funding_paid",
    "num_bars",
    "years",
)


@dataclass(frozen=True)
class EvaluationConfig:
    bootstrap_samples: int = 1000
    bootstrap_block: int = 288  # bars per block in the block bootstrap of the Sharpe ratio
    confidence: float = 0.95
    momentum_lookback: int = 48  # bars; the momentum baseline holds sign(return over lookback)
    random_baseline_seeds: int = 20

    def __post_init__(self) -> None:
        # Upper bounds far above any useful value: a typo fails here, not as an evaluation that never ends.
        require_in_range(
            self,
            "evaluation",
            {
                "bootstrap_samples": (10, 100_000),
                "bootstrap_block": (1, 1_000_000),
                "momentum_lookback": (1, 1_000_000),
                "random_baseline_seeds": (1, 10_000),
            },
        )
        require(0.5 < self.confidence < 1.0, "evaluation.confidence must be in (0.5, 1)")
