"""Configuration of the validation gate and of the chronological split."""

from __future__ import annotations

from dataclasses import dataclass

from dreamer.errors import require


@dataclass(frozen=True)
class ValidationConfig:
    max_gap_fraction: float = 0.01  # failure above this share of missing bars
    warn_gap_fraction: float = 0.0  # warning above this share
    max_abs_log_return: float = 0.5  # |log(close_t/close_{t-1})| above this is an absurd jump
    min_rows: int = 5000  # enough rows for a training window
    report_examples: int = 5  # offending rows listed per failed expectation

    def __post_init__(self) -> None:
        require(
            0.0 <= self.warn_gap_fraction <= self.max_gap_fraction <= 1.0,
            "validation: 0 <= warn_gap_fraction <= max_gap_fraction <= 1 is required",
        )
        require(self.max_abs_log_return > 0.0, "validation.max_abs_log_return must be > 0")
        require(self.min_rows >= 1, "validation.min_rows must be >= 1")
        require(self.report_examples >= 0, "validation.report_examples must be >= 0")


@dataclass(frozen=True)
class SplitConfig:
    train_fraction: float = 0.7
    val_fraction: float = 0.15  # the test split takes the rest
    purge_bars: int | None = None  # None: longest feature window + return horizon

    def __post_init__(self) -> None:
        require(0.0 < self.train_fraction < 1.0, "split.train_fraction must be in (0, 1)")
        require(0.0 <= self.val_fraction < 1.0, "split.val_fraction must be in [0, 1)")
        require(self.train_fraction + self.val_fraction < 1.0, "split: train_fraction + val_fraction must be < 1")
        require(self.purge_bars is None or self.purge_bars >= 0, "split.purge_bars must be >= 0")
