"""DuckDB storage of klines and of the ingestion log. All SQL lives in `sql/`.

Times cross this module's boundary as UTC epoch milliseconds (int) or tz-aware UTC timestamps; the
session time zone is pinned to UTC so DuckDB never shifts them to the machine's zone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from dreamer.data.candles import Candles
from dreamer.data.errors import DatabaseError
from dreamer.data.markets import Interval, format_ms, ms_to_datetime, parse_interval, parse_time_ms
from dreamer.paths import read_sql

IN_MEMORY = ":memory:"


@functools.cache
def sql(name: str) -> str:
    return read_sql(name)


def connect(db_path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating parent folder and schema if needed) the DuckDB database at `db_path`.

    Idempotent: opening an existing database changes nothing. DuckDB lets one process write a file at a
    time; a second writer gets a `DatabaseError` saying so instead of a lock traceback.
    """
    target = str(db_path)
    if target != IN_MEMORY:
        path = Path(db_path)
        if read_only and not path.exists():
            raise DatabaseError(f"database {path} does not exist; ingest data first (dreamer ingest ...)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the folder of database {path}: {exc}") from exc
    try:
        con = duckdb.connect(target, read_only=read_only)
    except duckdb.IOException as exc:
        hint = " (is another dreamer process writing it?)" if "lock" in str(exc).lower() else ""
        raise DatabaseError(f"cannot open database {target}{hint}: {exc}") from exc
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        con.execute(sql("schema.sql"))
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit everything done inside the block, or nothing of it."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int

    @property
    def received(self) -> int:
        return self.inserted + self.updated + self.unchanged


def upsert_klines(
    con: duckdb.DuckDBPyConnection, category: str, symbol: str, interval: str, candles: Candles
) -> UpsertCounts:
    """Insert new candles and overwrite stored ones whose values differ, with set-based statements over
    the Arrow table (no Python loop over rows). Runs in the caller's transaction.

    `candles` must be sorted by start time. A page whose span holds nothing stored yet (every page of a
    fresh or resumed run) is appended directly; otherwise rows are classified and upserted."""
    if len(candles) == 0:
        return UpsertCounts(0, 0, 0)
    params = {"category": category, "symbol": symbol, "interval": interval}
    span = {
        "first": ms_to_datetime(int(candles.open_time_ms[0])),
        "last": ms_to_datetime(int(candles.open_time_ms[-1])),
    }
    [(stored_in_span,)] = con.execute(sql("klines_count_span.sql"), params | span).fetchall()
    con.register("staged_klines", candles.to_arrow())
    try:
        if stored_in_span == 0:
            con.execute(sql("klines_insert.sql"), params)
            return UpsertCounts(len(candles), 0, 0)
        [row] = con.execute(sql("klines_upsert_counts.sql"), params).fetchall()
        inserted, updated, received = (int(value) for value in row)
        con.execute(sql("klines_upsert.sql"), params)
    finally:
        con.unregister("staged_klines")
    return UpsertCounts(inserted, updated, received - inserted - updated)


def _bound(value: Any) -> datetime | None:
    return None if value is None else ms_to_datetime(parse_time_ms(value))


def read_klines(
    con: duckdb.DuckDBPyConnection,
    category: str,
    symbol: str,
    interval: str,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """One series as a DataFrame sorted by `open_time` (tz-aware UTC); `start`/`end` are inclusive bounds
    on the candle start (epoch ms, ISO text, datetime or Timestamp)."""
    params = {
        "category": category,
        "symbol": symbol,
        "interval": interval,
        "start": _bound(start),
        "end": _bound(end),
    }
    frame = con.execute(sql("klines_read.sql"), params).df()
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    return frame


def last_open_time(con: duckdb.DuckDBPyConnection, category: str, symbol: str, interval: str) -> int | None:
    """Start (epoch ms) of the newest stored candle of the series, None when it has none."""
    params = {"category": category, "symbol": symbol, "interval": interval}
    [row] = con.execute(sql("klines_last_open_time.sql"), params).fetchall()
    return None if row[0] is None else int(row[0])


@dataclass(frozen=True)
class Gap:
    """Candles missing from a stored series: starts `start_ms..end_ms` inclusive, `missing` of them."""

    start_ms: int
    end_ms: int
    missing: int

    def to_dict(self) -> dict[str, Any]:
        return {"start": format_ms(self.start_ms), "end": format_ms(self.end_ms), "missing": self.missing}


def find_gaps(
    con: duckdb.DuckDBPyConnection,
    category: str,
    symbol: str,
    interval: str | Interval,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[Gap]:
    """Holes between stored candles of one series within `[start_ms, end_ms]` (whole series by default).
    Only holes between two stored candles count: nothing is known before the first or after the last."""
    spec = interval if isinstance(interval, Interval) else parse_interval(interval)
    params = {
        "category": category,
        "symbol": symbol,
        "interval": spec.code,
        "start": ms_to_datetime(0 if start_ms is None else start_ms),
        "end": ms_to_datetime(32_503_680_000_000 if end_ms is None else end_ms),
        "step": spec.step,
    }
    rows = con.execute(sql("klines_gaps.sql"), params).fetchall()
    if not rows:
        return []
    bounds = np.array(rows, dtype=np.int64)
    missing = spec.count(bounds[:, 0], bounds[:, 1])
    return [Gap(int(a), int(b), int(n)) for (a, b), n in zip(bounds, missing, strict=True)]


@dataclass(frozen=True)
class SeriesSummary:
    category: str
    symbol: str
    interval: str
    rows: int
    first_open_time: str
    last_open_time: str
    gaps: int
    missing_candles: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"{self.category} {self.symbol} {self.interval}: {self.rows:,} candles "
            f"{self.first_open_time} .. {self.last_open_time}, {self.gaps} gaps ({self.missing_candles:,} missing)"
        )


def summarize(con: duckdb.DuckDBPyConnection) -> list[SeriesSummary]:
    """Size, span and holes of every stored series."""
    summaries = []
    for category, symbol, interval, rows, first, last in con.execute(sql("klines_summary.sql")).fetchall():
        gaps = find_gaps(con, category, symbol, interval)
        summaries.append(
            SeriesSummary(
                category,
                symbol,
                interval,
                int(rows),
                format_ms(first),
                format_ms(last),
                len(gaps),
                sum(gap.missing for gap in gaps),
            )
        )
    return summaries


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int = 20) -> pd.DataFrame:
    """The latest rows of `ingestion_runs`, newest first."""
    return con.execute(sql("ingestion_runs_recent.sql"), {"limit": limit}).df()
