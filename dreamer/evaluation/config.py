"""Configuration of the held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from dreamer.errors import require


@dataclass(frozen=True)
class EvaluationConfig:
    bootstrap_samples: int = 1000
    bootstrap_block: int = 288  # bars per block in the block bootstrap of the Sharpe ratio
    confidence: float = 0.95
    momentum_lookback: int = 48  # bars; the momentum baseline holds sign(return over lookback)
    random_baseline_seeds: int = 20

    def __post_init__(self) -> None:
        require(self.bootstrap_samples >= 10, "evaluation.bootstrap_samples must be >= 10")
        require(self.bootstrap_block >= 1, "evaluation.bootstrap_block must be >= 1")
        require(0.5 < self.confidence < 1.0, "evaluation.confidence must be in (0.5, 1)")
        require(self.momentum_lookback >= 1, "evaluation.momentum_lookback must be >= 1")
        require(self.random_baseline_seeds >= 1, "evaluation.random_baseline_seeds must be >= 1")
