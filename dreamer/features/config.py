"""Configuration of the validation gate and of the chronological split."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dreamer.errors import ConfigError, require


@dataclass(frozen=True)
class ValidationConfig:
    max_gap_fraction: float = 0.01  # failure above this share of missing bars
    warn_gap_fraction: float = 0.0  # warning above this share
    # failure: |log(close_t / close_{t-1})| above this is an absurd jump (a data error, e.g. a shifted decimal).
    # Real crashes stay below it: the 2025-10-10 cascade moved APEUSDT 5m by -0.93, AVAXUSDT by -0.71.
    max_abs_log_return: float = 1.0
    warn_abs_log_return: float = 0.1  # warning: a move this large is possible but worth a look
    min_rows: int = 5000  # enough rows for a training window
    report_examples: int = 5  # offending rows listed per failed expectation

    def __post_init__(self) -> None:
        require(
            0.0 <= self.warn_gap_fraction <= self.max_gap_fraction <= 1.0,
            "validation: 0 <= warn_gap_fraction <= max_gap_fraction <= 1 is required",
        )
        require(self.max_abs_log_return > 0.0, "validation.max_abs_log_return must be > 0")
        require(
            0.0 < self.warn_abs_log_return <= self.max_abs_log_return,
            "validation: 0 < warn_abs_log_return <= max_abs_log_return is required",
        )
        require(self.min_rows >= 1, "validation.min_rows must be >= 1")
        require(self.report_examples >= 0, "validation.report_examples must be >= 0")


@dataclass(frozen=True)
class SplitConfig:
    """Chronological train / val / test split, by fractions of the rows or by dates.

    With `val_start` and `test_start` (ISO dates or times, UTC) the dates decide and the fractions are
    ignored. Between consecutive splits `purge_bars` rows are left out; it may not be shorter than the
    longest feature window plus the return horizon (checked when the dataset is built)."""

    train_fraction: float = 0.7
    val_fraction: float = 0.15  # the test split takes the rest
    purge_bars: int | None = None  # None: longest feature window + return horizon
    val_start: str | None = None  # e.g. "2026-03-01"
    test_start: str | None = None

    def __post_init__(self) -> None:
        require(0.0 < self.train_fraction < 1.0, "split.train_fraction must be in (0, 1)")
        require(0.0 <= self.val_fraction < 1.0, "split.val_fraction must be in [0, 1)")
        require(self.train_fraction + self.val_fraction < 1.0, "split: train_fraction + val_fraction must be < 1")
        require(self.purge_bars is None or self.purge_bars >= 0, "split.purge_bars must be >= 0")
        require(
            (self.val_start is None) == (self.test_start is None),
            "split: give both val_start and test_start, or neither",
        )
        if self.val_start is not None and self.test_start is not None:
            require(
                parse_utc(self.val_start, "split.val_start") < parse_utc(self.test_start, "split.test_start"),
                "split: val_start must be before test_start",
            )

    @property
    def by_dates(self) -> bool:
        return self.val_start is not None


def parse_utc(value: str, where: str) -> datetime:
    """An ISO date or date-time; naive values are UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {value!r} is not an ISO date or date-time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
