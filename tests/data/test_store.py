"""Data tier: the DuckDB store: schema, upsert counts, reads (klines and funding), gaps (calendar months
included), locking."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dreamer.data import store
from dreamer.data.candles import Candles
from dreamer.data.errors import DatabaseError
from dreamer.data.funding import FundingRates
from dreamer.data.markets import INTERVALS, parse_time_ms

T0 = parse_time_ms("2026-01-01")


def candles(starts: list[int], close: float = 100.5, turnover: float = np.nan) -> Candles:
    values = np.tile([100.0, 101.0, 99.0, close, 7.5, turnover], (len(starts), 1))
    return Candles(np.array(starts, dtype=np.int64), values)


def five_minute(*positions: int) -> list[int]:
    return [T0 + p * 300_000 for p in positions]


def test_connect_creates_folder_and_schema_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "k.duckdb"
    con = store.connect(path)
    store.upsert_klines(con, "linear", "BTCUSDT", "5", candles(five_minute(0, 1)))
    con.close()
    con = store.connect(path)  # reopening re-runs the DDL and keeps the data
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"klines", "funding_rates", "ingestion_runs"} <= tables
    assert len(store.read_klines(con, "linear", "BTCUSDT", "5")) == 2
    con.close()


def test_upsert_counts_and_null_turnover(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "k.duckdb")
    assert store.upsert_klines(con, "linear", "BTCUSDT", "5", candles(five_minute(0, 1, 2))) == store.UpsertCounts(
        3, 0, 0
    )
    changed = candles(five_minute(1, 2, 3))
    changed.values[0, 3] = 100.25  # candle 1 revised
    assert store.upsert_klines(con, "linear", "BTCUSDT", "5", changed) == store.UpsertCounts(1, 1, 1)
    frame = store.read_klines(con, "linear", "BTCUSDT", "5")
    assert frame["close"].tolist() == [100.5, 100.25, 100.5, 100.5]
    assert frame["turnover"].isna().all()  # NULL, never 0
    assert con.execute("SELECT count(*) FROM klines WHERE turnover IS NULL").fetchall() == [(4,)]
    # Another series with the same times is independent.
    assert store.upsert_klines(con, "spot", "BTCUSDT", "5", candles(five_minute(0))).inserted == 1
    con.close()


def test_read_klines_is_sorted_utc_and_bounded_inclusively(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "k.duckdb")
    con.execute("SET TimeZone = 'America/New_York'")  # a caller's session zone must not leak into results
    store.upsert_klines(con, "linear", "BTCUSDT", "5", candles(five_minute(0, 1, 2, 3, 4)))
    frame = store.read_klines(con, "linear", "BTCUSDT", "5", start="2026-01-01T00:05", end=T0 + 3 * 300_000)
    assert str(frame["open_time"].dt.tz) == "UTC"
    assert frame["open_time"].tolist() == [pd.Timestamp(t, unit="ms", tz="UTC") for t in five_minute(1, 2, 3)]
    assert frame["open_time"].is_monotonic_increasing
    assert list(frame.columns) == [
        "category", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume", "turnover"
    ]  # fmt: skip
    assert store.last_open_time(con, "linear", "BTCUSDT", "5") == five_minute(4)[0]
    assert store.last_open_time(con, "linear", "ETHUSDT", "5") is None
    con.close()


def test_gaps_and_summary(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "k.duckdb")
    store.upsert_klines(con, "linear", "BTCUSDT", "5", candles(five_minute(0, 1, 5, 6, 9)))
    gaps = store.find_gaps(con, "linear", "BTCUSDT", "5")
    assert [(g.start_ms, g.end_ms, g.missing) for g in gaps] == [
        (five_minute(2)[0], five_minute(4)[0], 3),
        (five_minute(7)[0], five_minute(8)[0], 2),
    ]
    assert store.find_gaps(con, "linear", "BTCUSDT", "5", start_ms=five_minute(5)[0]) == gaps[1:]
    [summary] = store.summarize(con)
    assert (summary.rows, summary.gaps, summary.missing_candles) == (5, 2, 5)
    assert summary.first_open_time == "2026-01-01T00:00Z" and summary.last_open_time == "2026-01-01T00:45Z"
    con.close()


def test_monthly_gaps_follow_the_calendar(tmp_path: Path) -> None:
    month = INTERVALS["M"]
    starts = [parse_time_ms(day) for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-07-01")]
    con = store.connect(tmp_path / "k.duckdb")
    store.upsert_klines(con, "spot", "BTCUSDT", "M", candles(starts))
    [gap] = store.find_gaps(con, "spot", "BTCUSDT", month)
    assert (gap.start_ms, gap.end_ms, gap.missing) == (parse_time_ms("2024-04-01"), parse_time_ms("2024-06-01"), 3)
    con.close()


def test_a_database_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.duckdb"
    store.connect(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); "
         "time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(DatabaseError, match="another dreamer process"):
            store.connect(path)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    store.connect(path).close()


def test_funding_upsert_counts_and_reads(tmp_path: Path) -> None:
    con = store.connect(tmp_path / "k.duckdb")
    con.execute("SET TimeZone = 'Asia/Tokyo'")  # a caller's session zone must not leak into results
    times = [T0 + i * 8 * 3_600_000 for i in range(4)]
    rates = FundingRates(np.array(times, dtype=np.int64), np.array([1e-4, -2.5e-5, 0.0, 5e-5]))
    assert store.upsert_funding(con, "linear", "BTCUSDT", rates[:3]) == store.UpsertCounts(3, 0, 0)
    revised = FundingRates(rates.funding_time_ms.copy(), rates.funding_rate.copy())
    revised.funding_rate[1] = -3e-5
    assert store.upsert_funding(con, "linear", "BTCUSDT", revised[1:]) == store.UpsertCounts(1, 1, 1)
    frame = store.read_funding(con, "linear", "BTCUSDT", start="2026-01-01T08:00", end=times[2])
    assert list(frame.columns) == ["funding_time_ms", "funding_rate"]
    assert frame.dtypes.tolist() == [np.dtype("int64"), np.dtype("float64")]
    assert frame["funding_time_ms"].tolist() == times[1:3] and frame["funding_rate"].tolist() == [-3e-5, 0.0]
    assert store.last_funding_time(con, "linear", "BTCUSDT") == times[3]
    empty = store.read_funding(con, "inverse", "BTCUSD")  # nothing stored: empty, never zeros
    assert empty.empty and empty.dtypes.tolist() == [np.dtype("int64"), np.dtype("float64")]
    assert store.last_funding_time(con, "inverse", "BTCUSD") is None
    con.close()
