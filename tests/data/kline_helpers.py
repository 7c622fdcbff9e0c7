"""Helpers for the data-tier tests: a client wired to a fake clock, and tables (klines, funding) as exact arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dreamer.data import store
from dreamer.data.bybit import BybitClient, RetryPolicy
from tests.fakes.bybit_server import FakeBybit
from tests.fakes.clock import FakeClock


def fast_client(fake: FakeBybit, clock: FakeClock | None = None, **overrides: object) -> BybitClient:
    """A real client against `fake` whose sleeps (pacing, backoff) advance a fake clock instantly."""
    clock = clock or FakeClock()
    settings: dict[str, object] = {
        "base_url": fake.url,
        # Above the ~0.3 s a full garbage collection of this test process (torch, MLflow, Prefect and GX
        # imported) can take, so that a pause never reads as a timeout; the fake's `slow` fault outlasts it.
        "timeout_s": 1.0,
        "max_requests_per_second": 10.0,
        "retry": RetryPolicy(max_attempts=4, backoff_base_s=0.5, max_backoff_s=8.0),
        "sleep": clock.sleep,
        "monotonic": clock.monotonic,
        "wall_clock": clock.time,
    }
    settings.update(overrides)
    return BybitClient(**settings)  # type: ignore[arg-type]


def rows_as_arrays(rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Served string rows -> (open_time_ms [N] int64, values [N, 6] float64), parsed independently of the client."""
    times = np.array([int(row[0]) for row in rows], dtype=np.int64)
    values = np.array([[float(cell) if cell else np.nan for cell in row[1:]] for row in rows], dtype=np.float64)
    return times, values.reshape(len(rows), 6)


def stored_arrays(
    db_path: Path, category: str = "linear", symbol: str = "BTCUSDT", interval: str = "5"
) -> tuple[np.ndarray, np.ndarray]:
    """The stored series as (open_time_ms [N] int64, values [N, 6] float64; NULL turnover -> NaN)."""
    con = store.connect(db_path, read_only=True)
    try:
        frame = store.read_klines(con, category, symbol, interval)
    finally:
        con.close()
    times = frame["open_time"].dt.as_unit("ms").astype("int64").to_numpy()
    values = frame[["open", "high", "low", "close", "volume", "turnover"]].to_numpy(dtype=np.float64)
    return times, values


def assert_table_equals(db_path: Path, rows: list[list[str]], **series: str) -> None:
    """The stored series holds exactly `rows`: same candles, bit-identical values, nothing else."""
    expected_times, expected_values = rows_as_arrays(rows)
    times, values = stored_arrays(db_path, **series)
    assert len(times) == len(expected_times), (len(times), len(expected_times))
    np.testing.assert_array_equal(times, expected_times)
    np.testing.assert_array_equal(values, expected_values)  # NaN == NaN here (NULL turnover)


def stored_funding(db_path: Path, category: str = "linear", symbol: str = "BTCUSDT") -> tuple[np.ndarray, np.ndarray]:
    """The stored settlements as (funding_time_ms [N] int64, funding_rate [N] float64)."""
    con = store.connect(db_path, read_only=True)
    try:
        frame = store.read_funding(con, category, symbol)
    finally:
        con.close()
    return frame["funding_time_ms"].to_numpy(), frame["funding_rate"].to_numpy()


def assert_funding_equals(db_path: Path, rows: list[tuple[str, str]], **series: str) -> None:
    """The stored funding history holds exactly `rows` (text pairs as served or written): same settlements,
    bit-identical rates, nothing else."""
    times, rates = stored_funding(db_path, **series)
    assert len(times) == len(rows), (len(times), len(rows))
    np.testing.assert_array_equal(times, np.array([int(time_ms) for time_ms, _ in rows], dtype=np.int64))
    np.testing.assert_array_equal(rates, np.array([float(rate) for _, rate in rows], dtype=np.float64))


def generated_funding_rows(count: int, start_ms: int, every_hours: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    """`count` settlements every `every_hours` from `start_ms`, rates written as Bybit writes them (plain
    decimals without trailing zeros). Test data for paging and resume only, never presented as market data."""
    rng = np.random.default_rng(seed)
    rates = np.round(rng.normal(1e-4, 2e-4, count), 8)
    return [
        (str(start_ms + i * every_hours * 3_600_000), np.format_float_positional(rate, trim="-"))
        for i, rate in enumerate(rates)
    ]
