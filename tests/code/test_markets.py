"""Code tier: categories, intervals (calendar arithmetic included), symbols and time bounds."""

from __future__ import annotations

import numpy as np
import pytest

from dreamer.data.errors import InvalidMarketError
from dreamer.data.markets import INTERVALS, format_ms, parse_category, parse_interval, parse_symbol, parse_time_ms


def ms(text: str) -> int:
    return parse_time_ms(text)


def test_minute_intervals_floor_shift_and_count() -> None:
    five = parse_interval("5")
    assert five.length_ms == 300_000
    assert five.floor_one(ms("2025-01-01T00:07:59")) == ms("2025-01-01T00:05")
    assert five.shift_one(ms("2025-01-01T00:05"), 999) == ms("2025-01-01T00:05") + 999 * 300_000
    assert int(five.count(ms("2025-01-01"), ms("2025-01-01T01:00"))) == 13
    assert int(five.count(ms("2025-01-01T01:00"), ms("2025-01-01"))) == 0
    assert parse_interval(60).length_ms == 3_600_000
    assert parse_interval("d").code == "D"


def test_weekly_candles_open_on_monday() -> None:
    week = INTERVALS["W"]
    # 2025-01-01 was a Wednesday; its weekly candle opened on Monday 2024-12-30.
    assert format_ms(week.floor_one(ms("2025-01-01T13:00"))) == "2024-12-30T00:00Z"
    assert format_ms(week.shift_one(ms("2024-12-30"), 1)) == "2025-01-06T00:00Z"


def test_monthly_candles_follow_the_calendar() -> None:
    month = INTERVALS["M"]
    assert month.is_calendar
    assert format_ms(month.floor_one(ms("2024-02-29T23:59"))) == "2024-02-01T00:00Z"
    assert format_ms(month.shift_one(ms("2024-01-01"), 1)) == "2024-02-01T00:00Z"
    assert format_ms(month.shift_one(ms("2024-12-01"), 3)) == "2025-03-01T00:00Z"
    assert int(month.count(ms("2024-01-01"), ms("2025-12-01"))) == 24
    starts = np.array([ms("2024-01-01"), ms("2024-02-01"), ms("2024-02-02")])
    assert (month.floor(starts) == starts).tolist() == [True, True, False]


def test_invalid_values_name_the_valid_ones() -> None:
    with pytest.raises(InvalidMarketError, match="spot, linear, inverse"):
        parse_category("futures")
    with pytest.raises(InvalidMarketError, match="1, 3, 5, 15, 30, 60, 120, 240, 360, 720, D, W, M"):
        parse_interval("2h")
    with pytest.raises(InvalidMarketError, match="BTCUSDT"):
        parse_symbol("BTC/USDT")
    with pytest.raises(InvalidMarketError):
        parse_symbol("")
    assert parse_symbol(" btcusdt ") == "BTCUSDT"
    assert parse_symbol("BTC-26DEC25") == "BTC-26DEC25"
    assert parse_category("Linear") == "linear"


def test_time_bounds_are_utc() -> None:
    assert ms("2025-01-01") == 1_735_689_600_000
    assert ms("1735689600000") == 1_735_689_600_000
    assert ms("2025-01-01T01:00+01:00") == 1_735_689_600_000
    for bad in ("yesterday-ish", "2025-13-01", "-5"):
        with pytest.raises(InvalidMarketError):
            parse_time_ms(bad, "start")
