"""Configuration of the validation gate and of the chronological split."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dreamer.errors import ConfigError, require, require_in_range


@dataclass(frozen=True)
class ValidationConfig:
    max_gap_fraction: float = 0.01  # failure above this share of missing bars
    warn_gap_fraction: float = 0.0  # warning above this share
    # failure: |log(close_t / close_{t-1})| above this is an absurd jump (a data error, e.g. a shifted decimal).
    # Real crashes stay below it: the 2025-10-10 cascade moved APEUSDT 5m by -0.93, AVAXUSDT by -0.71.
    max_abs_log_return: float = 1.0
    warn_abs_log_return: float = 0.1  # warning: a move this large is possible but worth a look
    # failure: a wick longer than this, log(high / max(open, close)) or log(min(open, close) / low), is absurd
    # (e.g. high = 1e308, a lost digit). Real extremes stay below 0.4: AAVEUSDT 5m 0.37 on 2025-10-10.
    max_log_wick: float = 1.0
    # failure: a high or low more than this multiple above or below the series' median close is absurd (e.g. a
    # shifted decimal on the first bars, where no jump gives it away). Ten months of real 5m series stay
    # within 0.49x .. 3.9x; raise it for a multi-year series of an asset that moved a hundredfold.
    max_price_to_median: float = 100.0
    min_rows: int = 5000  # enough rows for a training window
    report_examples: int = 5  # offending rows listed per failed expectation
    # Funding, on linear/inverse series: the settlements over the klines' range must be stored (a missing
    # history fails, it is never taken as zero). Off for contracts that settle none (dated futures).
    check_funding: bool = True
    # failure: |rate| per settlement above this is absurd (e.g. a percentage stored as a fraction). Real
    # extremes stay far below: AVAXUSDT -0.84 % at the 2025-10-10 cascade; Bybit caps most symbols at 2-4 %.
    max_abs_funding_rate: float = 0.05
    warn_abs_funding_rate: float = 0.01  # warning: a rate this large is possible but worth a look
    # failure: longer than this without a settlement between two of them (8 h schedules: 2 missed in a row).
    # Any spacing other than the series' usual one (8 h, 4 h or 1 h) is a warning.
    max_funding_gap_hours: float = 24.0

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
        require(self.max_log_wick > 0.0, "validation.max_log_wick must be > 0")
        require(self.max_price_to_median > 1.0, "validation.max_price_to_median must be > 1")
        require(
            0.0 < self.warn_abs_funding_rate <= self.max_abs_funding_rate,
            "validation: 0 < warn_abs_funding_rate <= max_abs_funding_rate is required",
        )
        require(self.max_funding_gap_hours > 0.0, "validation.max_funding_gap_hours must be > 0")
        require_in_range(self, "validation", {"min_rows": (1, 1_000_000_000), "report_examples": (0, 1_000)})


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
        require_in_range(self, "split", {"purge_bars": (0, 1_000_000)})
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
