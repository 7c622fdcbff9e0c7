"""`FundingRates`: funding settlements of one perpetual contract as numpy arrays, the row checks every
source (Bybit pages, funding files) goes through, and the Arrow table the store ingests.

A settlement at `funding_time_ms` charges every position open at that moment `position value × rate`:
a positive rate means longs pay shorts. Rates are fractions per settlement (`0.0001` = 0.01 %), exactly
as Bybit's `fundingRate` states them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dreamer.data.candles import RowProblems, collect_problems

ARROW_SCHEMA = pa.schema(
    [
        pa.field("funding_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("funding_rate", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class FundingRates:
    """`funding_time_ms [N] int64` (settlement times, ascending once checked) and `funding_rate [N] float64`."""

    funding_time_ms: np.ndarray
    funding_rate: np.ndarray

    def __len__(self) -> int:
        return len(self.funding_time_ms)

    @property
    def times_ms(self) -> np.ndarray:
        """The batch's time axis, by the name the store and ingestion use for klines and funding alike."""
        return self.funding_time_ms

    def __getitem__(self, index: slice | np.ndarray) -> FundingRates:
        return FundingRates(self.funding_time_ms[index], self.funding_rate[index])

    @classmethod
    def empty(cls) -> FundingRates:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64))

    def sorted(self) -> FundingRates:
        return self[np.argsort(self.funding_time_ms, kind="stable")]

    @classmethod
    def concat(cls, parts: list[FundingRates]) -> FundingRates:
        return cls(
            np.concatenate([part.funding_time_ms for part in parts]),
            np.concatenate([part.funding_rate for part in parts]),
        )

    def to_arrow(self) -> pa.Table:
        times = pa.array(self.funding_time_ms, type=pa.timestamp("ms", tz="UTC"))
        return pa.Table.from_arrays([times, pa.array(self.funding_rate)], schema=ARROW_SCHEMA)


def funding_row_problems(rates: FundingRates) -> RowProblems:
    """Every row that must not be stored: settlement times that do not increase (duplicates, unsorted)
    and rates that are not finite. Plausibility (bounds, spacing) is the validation gate's job: a stored
    rate is whatever the source said, never a repaired one."""
    times = rates.funding_time_ms
    not_after_previous = np.zeros(len(times), dtype=bool)  # also right for an empty page
    not_after_previous[1:] = np.diff(times) <= 0
    checks = [
        (not_after_previous, "settlement time {} is not after the previous row's (duplicate or unsorted)"),
        (~np.isfinite(rates.funding_rate), "funding_rate must be a finite number"),
    ]
    return collect_problems(checks, times)
