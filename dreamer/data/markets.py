"""What can be asked of Bybit's kline endpoint: categories, intervals (with their calendar arithmetic),
symbols and time bounds, each validated before any request is sent.

Candle starts are UTC epoch milliseconds (int64) throughout the data layer. Minute, daily and weekly
candles have a fixed length (weekly ones start on Monday 00:00 UTC); monthly candles start on the first
day of each calendar month, so their length varies and all arithmetic goes through `Interval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from dreamer.data.errors import InvalidMarketError

CATEGORIES = ("spot", "linear", "inverse")
PERPETUAL_CATEGORIES = ("linear", "inverse")  # the categories with perpetual contracts, hence funding
MINUTE_MS = 60_000
DAY_MS = 1_440 * MINUTE_MS
# 1970-01-01 was a Thursday; Bybit's weekly candles open on Mondays (1970-01-05 is the first one).
MONDAY_OFFSET_MS = 4 * DAY_MS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,29}$")


@dataclass(frozen=True)
class Interval:
    """A Bybit kline interval. `length_ms` is None for calendar months."""

    code: str
    length_ms: int | None
    step: str  # the same length as a DuckDB INTERVAL literal (used by the gap query)
    offset_ms: int = 0

    @property
    def is_calendar(self) -> bool:
        return self.length_ms is None

    def floor(self, times_ms: npt.ArrayLike) -> np.ndarray:
        """Start of the candle containing each time (Bybit floors `start` the same way)."""
        times_ms = np.asarray(times_ms, dtype=np.int64)
        if self.length_ms is None:
            months = times_ms.astype("datetime64[ms]").astype("datetime64[M]")
            return months.astype("datetime64[ms]").astype(np.int64)
        return (times_ms - self.offset_ms) // self.length_ms * self.length_ms + self.offset_ms

    def shift(self, starts_ms: npt.ArrayLike, candles: npt.ArrayLike) -> np.ndarray:
        """Start of the candle `candles` intervals after each (aligned) candle start."""
        starts_ms = np.asarray(starts_ms, dtype=np.int64)
        if self.length_ms is None:
            months = starts_ms.astype("datetime64[ms]").astype("datetime64[M]") + np.asarray(candles)
            return months.astype("datetime64[ms]").astype(np.int64)
        return starts_ms + np.asarray(candles, dtype=np.int64) * self.length_ms

    def count(self, first_ms: npt.ArrayLike, last_ms: npt.ArrayLike) -> np.ndarray:
        """Number of candle starts in `[first, last]` (both aligned; 0 when last < first)."""
        first_ms = np.asarray(first_ms, dtype=np.int64)
        last_ms = np.asarray(last_ms, dtype=np.int64)
        if self.length_ms is None:
            first = first_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
            last = last_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
            return np.maximum(last - first + 1, 0)
        return np.maximum((last_ms - first_ms) // self.length_ms + 1, 0)

    # Scalar conveniences for planning requests.
    def floor_one(self, time_ms: int) -> int:
        return int(self.floor(np.int64(time_ms)))

    def shift_one(self, start_ms: int, candles: int) -> int:
        return int(self.shift(np.int64(start_ms), candles))


def _minutes(code: str, minutes: int) -> Interval:
    return Interval(code, minutes * MINUTE_MS, f"{minutes} minutes")


INTERVALS: dict[str, Interval] = {
    **{code: _minutes(code, int(code)) for code in ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720")},
    "D": Interval("D", DAY_MS, "1 day"),
    "W": Interval("W", 7 * DAY_MS, "7 days", offset_ms=MONDAY_OFFSET_MS),
    "M": Interval("M", None, "1 month"),
}


def parse_category(category: str) -> str:
    value = str(category).strip().lower()
    if value not in CATEGORIES:
        raise InvalidMarketError(f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}")
    return value


def require_funding_category(category: str) -> str:
    """`category` (validated) if its contracts can settle funding, else a clear error: spot has none."""
    value = parse_category(category)
    if value not in PERPETUAL_CATEGORIES:
        raise InvalidMarketError(
            f"category {value!r} has no funding: Bybit settles funding only on perpetual contracts "
            f"(categories {', '.join(PERPETUAL_CATEGORIES)})"
        )
    return value


def parse_interval(interval: str | int) -> Interval:
    code = str(interval).strip().upper()
    if code not in INTERVALS:
        raise InvalidMarketError(
            f"unknown interval {interval!r}; valid Bybit intervals: {', '.join(INTERVALS)} "
            "(minutes, then day, week, month)"
        )
    return INTERVALS[code]


def parse_symbol(symbol: str) -> str:
    """Bybit symbols are upper-case letters and digits, with '-' in dated contracts (e.g. BTC-26DEC25)."""
    value = str(symbol).strip().upper()
    if not SYMBOL_PATTERN.match(value):
        raise InvalidMarketError(
            f"invalid symbol {symbol!r}: expected 2-30 characters A-Z, 0-9 or '-', e.g. BTCUSDT, 1000PEPEUSDT, "
            "BTCUSD, BTC-26DEC25"
        )
    return value


def parse_time_ms(value: str | int | datetime | pd.Timestamp, what: str = "time") -> int:
    """UTC epoch milliseconds from epoch milliseconds (int or digits) or an ISO date/datetime.

    A time without a zone is UTC; one with a zone is converted to UTC.
    """
    if isinstance(value, bool):
        raise InvalidMarketError(f"{what}: expected a date, a datetime or epoch milliseconds, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        millis = int(value)
    else:
        try:
            stamp = pd.Timestamp(value.strip() if isinstance(value, str) else value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidMarketError(
                f"{what}: cannot read {value!r} as a time; use e.g. 2025-01-01, 2025-01-01T12:30 or epoch ms"
            ) from exc
        if stamp is pd.NaT:
            raise InvalidMarketError(f"{what}: {value!r} is not a time")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        millis = int(stamp.as_unit("ms").asm8.view("i8"))
    if not 0 <= millis < 32_503_680_000_000:  # year 3000
        raise InvalidMarketError(f"{what}: {value!r} is outside 1970..3000")
    return millis


def ms_to_datetime(millis: int) -> datetime:
    """Exact (no float rounding) tz-aware UTC datetime of epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=int(millis))


def format_ms(millis: int | None) -> str:
    """ISO 8601 UTC, minutes precision unless seconds are needed (for messages and reports)."""
    if millis is None:
        return "-"
    stamp = pd.Timestamp(int(millis), unit="ms", tz="UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ" if stamp.second or stamp.microsecond else "%Y-%m-%dT%H:%MZ")
