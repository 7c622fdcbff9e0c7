"""DuckDB storage of klines, funding settlements and the ingestion log. All SQL lives in `sql/`.

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
from dreamer.data.funding import FundingRates
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
        _migrate(con)
    return con


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a database written by an earlier version up to schema.sql (whose CREATE ... IF NOT EXISTS
    leaves existing tables as they are): `ingestion_runs` gained `kind` when funding was added."""
    columns = {row[0] for row in con.execute(sql("ingestion_runs_columns.sql")).fetchall()}
    if "kind" not in columns:
        with transaction(con):
            con.execute(sql("ingestion_runs_add_kind.sql"))


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
    """Insert new candles and overwrite stored ones whose values differ (see `_upsert`). `candles` must
    be sorted by start time. Runs in the caller's transaction."""
    params = {"category": category, "symbol": symbol, "interval": interval}
    return _upsert(con, "klines", params, candles)


def upsert_funding(con: duckdb.DuckDBPyConnection, category: str, symbol: str, rates: FundingRates) -> UpsertCounts:
    """Insert new settlements and overwrite stored ones whose rate differs (see `_upsert`). `rates` must
    be sorted by time. Runs in the caller's transaction."""
    return _upsert(con, "funding", {"category": category, "symbol": symbol}, rates)


def _upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    params: dict[str, str],
    batch: Candles | FundingRates,
) -> UpsertCounts:
    """Upsert `batch` into the series `params` of `table` with the statements `sql/<table>_*.sql`, set-based
    over its Arrow table registered as `staged_<table>` (no Python loop over rows).

    A page whose span holds nothing stored yet (every page of a fresh or resumed run) is appended
    directly; otherwise rows are classified (new, changed, identical) and upserted."""
    times_ms = batch.times_ms
    if len(times_ms) == 0:
        return UpsertCounts(0, 0, 0)
    span = {"first": ms_to_datetime(int(times_ms[0])), "last": ms_to_datetime(int(times_ms[-1]))}
    [(stored_in_span,)] = con.execute(sql(f"{table}_count_span.sql"), params | span).fetchall()
    staged = f"staged_{table}"
    con.register(staged, batch.to_arrow())
    try:
        if stored_in_span == 0:
            con.execute(sql(f"{table}_insert.sql"), params)
            return UpsertCounts(len(times_ms), 0, 0)
        [row] = con.execute(sql(f"{table}_upsert_counts.sql"), params).fetchall()
        inserted, updated, received = (int(value) for value in row)
        con.execute(sql(f"{table}_upsert.sql"), params)
    finally:
        con.unregister(staged)
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


def stored_span(con: duckdb.DuckDBPyConnection, category: str, symbol: str, interval: str) -> tuple[int, int] | None:
    """Starts (epoch ms) of the first and the newest stored candle of the series, None when it has none."""
    params = {"category": category, "symbol": symbol, "interval": interval}
    [(first, last)] = con.execute(sql("klines_span.sql"), params).fetchall()
    return None if first is None else (int(first), int(last))


def last_open_time(con: duckdb.DuckDBPyConnection, category: str, symbol: str, interval: str) -> int | None:
    """Start (epoch ms) of the newest stored candle of the series, None when it has none."""
    span = stored_span(con, category, symbol, interval)
    return None if span is None else span[1]


def read_funding(
    con: duckdb.DuckDBPyConnection, category: str, symbol: str, start: Any = None, end: Any = None
) -> pd.DataFrame:
    """The stored funding settlements of one perpetual, oldest first: `funding_time_ms` (int64, UTC epoch
    ms) and `funding_rate` (float64, fraction per settlement; positive: longs pay shorts). `start`/`end`
    are inclusive bounds on the settlement time (epoch ms, ISO text, datetime or Timestamp).

    Nothing stored gives an empty frame, never zeros: a missing history is the validation gate's to fail."""
    params = {"category": category, "symbol": symbol, "start": _bound(start), "end": _bound(end)}
    try:
        frame = con.execute(sql("funding_read.sql"), params).df()
    except duckdb.CatalogException:  # a read-only database last written before funding existed
        frame = pd.DataFrame({"funding_time_ms": [], "funding_rate": []})
    return frame.astype({"funding_time_ms": "int64", "funding_rate": "float64"})


def last_funding_time(con: duckdb.DuckDBPyConnection, category: str, symbol: str) -> int | None:
    """Time (epoch ms) of the newest stored settlement of the perpetual, None when it has none."""
    [row] = con.execute(sql("funding_last_time.sql"), {"category": category, "symbol": symbol}).fetchall()
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
