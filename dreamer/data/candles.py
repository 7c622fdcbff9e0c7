"""`Candles`: a batch of klines as numpy arrays, the row checks every source goes through, and the Arrow
table the store ingests. Vectorised end to end: no Python object per candle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dreamer.data.markets import Interval, format_ms

VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "turnover")
ARROW_SCHEMA = pa.schema(
    [pa.field("open_time", pa.timestamp("ms", tz="UTC"), nullable=False)]
    + [pa.field(name, pa.float64(), nullable=name == "turnover") for name in VALUE_COLUMNS]
)
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class Candles:
    """`open_time_ms [N] int64` (candle starts, ascending) and `values [N, 6] float64` in `VALUE_COLUMNS`
    order; a NaN turnover means the source has none (stored as NULL)."""

    open_time_ms: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time_ms)

    @property
    def times_ms(self) -> np.ndarray:
        """The batch's time axis, by the name the store and ingestion use for klines and funding alike."""
        return self.open_time_ms

    def __getitem__(self, index: slice | np.ndarray) -> Candles:
        return Candles(self.open_time_ms[index], self.values[index])

    @classmethod
    def empty(cls) -> Candles:
        return cls(np.empty(0, np.int64), np.empty((0, len(VALUE_COLUMNS)), np.float64))

    def sorted(self) -> Candles:
        order = np.argsort(self.open_time_ms, kind="stable")
        return self[order]

    def to_arrow(self) -> pa.Table:
        turnover = self.values[:, 5]
        columns = [pa.array(self.open_time_ms, type=pa.timestamp("ms", tz="UTC"))]
        columns += [pa.array(self.values[:, i]) for i in range(5)]
        columns.append(pa.array(turnover, mask=np.isnan(turnover)))
        return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


@dataclass(frozen=True)
class RowProblems:
    """The rows of a batch that must not be stored: how many, and the first few with their reasons."""

    bad_rows: int
    listed: list[tuple[int, str]]  # (row index, reason), at most MAX_LISTED_PROBLEMS, by row

    def __bool__(self) -> bool:
        return self.bad_rows > 0

    def describe(self, name_row: Callable[[int], str]) -> str:
        lines = [f"  {name_row(row)}: {reason}" for row, reason in self.listed]
        if self.bad_rows > len({row for row, _ in self.listed}):
            lines.append(f"  ({self.bad_rows} bad rows in all)")
        return "\n".join(lines)


def collect_problems(checks: Sequence[tuple[np.ndarray, str]], times_ms: np.ndarray | None = None) -> RowProblems:
    """`checks` are `(bad-row mask, reason)`; a `{}` in a reason is filled with the row's start time."""
    bad = np.zeros(len(checks[0][0]) if checks else 0, dtype=bool)
    listed: list[tuple[int, str]] = []
    for mask, reason in checks:
        bad |= mask
        for row in np.flatnonzero(mask)[:MAX_LISTED_PROBLEMS]:
            if "{}" in reason and times_ms is not None:
                listed.append((int(row), reason.format(format_ms(int(times_ms[row])))))
            else:
                listed.append((int(row), reason))
    return RowProblems(int(bad.sum()), sorted(listed)[:MAX_LISTED_PROBLEMS])


def row_problems(candles: Candles, interval: Interval) -> RowProblems:
    """Every row that must not be stored: misaligned or non-increasing start times, non-finite or
    non-positive prices, negative sizes, high/low that do not bound open and close. NaN turnover means
    missing and is allowed (sources reject NaN written as text before this)."""
    times, values = candles.open_time_ms, candles.values
    opens, highs, lows, closes, volumes, turnovers = values.T
    prices = values[:, :4]
    with np.errstate(invalid="ignore"):
        checks = [
            (interval.floor(times) != times, f"start time {{}} is not the start of a {interval.code} candle"),
            (
                np.r_[False, np.diff(times) <= 0],
                "start time {} is not after the previous row's (duplicate or unsorted)",
            ),
            (~np.isfinite(prices).all(axis=1), "open/high/low/close must be finite numbers"),
            ((prices <= 0).any(axis=1), "open/high/low/close must be positive"),
            (~np.isfinite(volumes) | (volumes < 0), "volume must be a finite number >= 0"),
            (np.isinf(turnovers) | (turnovers < 0), "turnover must be empty or a finite number >= 0"),
            ((highs < np.maximum(opens, closes)) | (highs < lows), "high is below open, close or low"),
            (lows > np.minimum(opens, closes), "low is above open or close"),
        ]
    return collect_problems(checks, times)
