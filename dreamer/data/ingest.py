"""Ingestion into the `klines` table, from Bybit, from a kline file, or from the bundled sample.

A Bybit run walks the asked range in consecutive windows of at most 1000 candles (oldest first) and
commits each page in its own transaction, together with the run's row in `ingestion_runs`: a run killed
at any moment keeps every committed page, and the next run resumes after the newest stored candle.
Gaps in the stored series are reported (report and log), never filled.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from dreamer.data import store
from dreamer.data.bybit import MAX_LIMIT, BybitClient, RetryPolicy, resolve_base_url
from dreamer.data.candles import Candles
from dreamer.data.errors import InvalidMarketError
from dreamer.data.files import read_kline_file
from dreamer.data.markets import (
    Interval,
    format_ms,
    ms_to_datetime,
    parse_category,
    parse_interval,
    parse_symbol,
    parse_time_ms,
)
from dreamer.paths import SAMPLE_CSV

GAP_SAMPLE_SIZE = 10


@dataclass
class IngestReport:
    """What one ingestion run did. Times are ISO 8601 UTC strings; durations in seconds."""

    run_id: int
    source: str
    source_detail: str
    db_path: str
    category: str
    symbol: str
    interval: str
    requested_start: str | None = None
    requested_end: str | None = None
    effective_start: str | None = None
    effective_end: str | None = None
    rows_received: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    open_candles_dropped: int = 0
    requests: int = 0
    retries: int = 0
    gaps_found: int = 0
    missing_candles: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)  # the first few: start, end, missing
    status: str = "running"
    error: str | None = None
    duration_s: float = 0.0
    fetch_s: float = 0.0
    write_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        span = f"{self.effective_start or '-'} .. {self.effective_end or '-'}"
        gaps = f"{self.gaps_found} gaps ({self.missing_candles} missing candles)" if self.gaps_found else "no gaps"
        requests = f", {self.requests} requests ({self.retries} retries)" if self.source == "bybit" else ""
        return (
            f"{self.status}: {self.category} {self.symbol} {self.interval} from {self.source} {span}: "
            f"{self.rows_inserted} inserted, {self.rows_updated} updated, {self.rows_unchanged} unchanged"
            f"{requests}, {gaps}, {self.duration_s:.1f} s [run {self.run_id}, {self.db_path}]"
        )


class _Run:
    """The bookkeeping of one run: its `ingestion_runs` row, counters and timings."""

    def __init__(self, con: duckdb.DuckDBPyConnection, report: IngestReport, interval: Interval) -> None:
        self.con, self.report, self.interval = con, report, interval
        self.started = time.perf_counter()
        self.first_ms: int | None = None  # first candle start covered

    def cover_from(self, first_ms: int) -> None:
        self.first_ms = first_ms
        self.report.effective_start = format_ms(first_ms)

    @classmethod
    def start(
        cls,
        con: duckdb.DuckDBPyConnection,
        db_path: str,
        source: str,
        source_detail: str,
        category: str,
        symbol: str,
        interval: Interval,
        requested_start_ms: int | None,
        requested_end_ms: int | None,
    ) -> _Run:
        series = {"category": category, "symbol": symbol, "interval": interval.code}
        with store.transaction(con):
            con.execute(store.sql("ingestion_run_interrupt_stale.sql"), series)
            row = con.execute(
                store.sql("ingestion_run_start.sql"),
                {
                    **series,
                    "source": source,
                    "source_detail": source_detail,
                    "requested_start": _dt(requested_start_ms),
                    "requested_end": _dt(requested_end_ms),
                    "started_at": datetime.now(UTC),
                },
            ).fetchall()[0]
        report = IngestReport(
            run_id=int(row[0]),
            source=source,
            source_detail=source_detail,
            db_path=db_path,
            category=category,
            symbol=symbol,
            interval=interval.code,
            requested_start=_iso(requested_start_ms),
            requested_end=_iso(requested_end_ms),
        )
        return cls(con, report, interval)

    def write(self, candles: Candles, covered_end_ms: int | None, requests: int = 0, retries: int = 0) -> None:
        """Upsert one page and record it in the run's row, in one transaction."""
        report = self.report
        began = time.perf_counter()
        with store.transaction(self.con):
            counts = store.upsert_klines(self.con, report.category, report.symbol, report.interval, candles)
            report.rows_inserted += counts.inserted
            report.rows_updated += counts.updated
            report.rows_unchanged += counts.unchanged
            report.rows_received += counts.received
            report.requests, report.retries = requests, retries
            report.effective_end = _iso(covered_end_ms)
            report.write_s += time.perf_counter() - began
            self.con.execute(store.sql("ingestion_run_progress.sql"), self._progress_params(covered_end_ms))

    def _progress_params(self, covered_end_ms: int | None) -> dict[str, Any]:
        report = self.report
        return {
            "id": report.run_id,
            "effective_start": _dt(self.first_ms),
            "effective_end": _dt(covered_end_ms),
            "rows_received": report.rows_received,
            "rows_inserted": report.rows_inserted,
            "rows_updated": report.rows_updated,
            "rows_unchanged": report.rows_unchanged,
            "open_candles_dropped": report.open_candles_dropped,
            "requests": report.requests,
            "retries": report.retries,
            "fetch_s": report.fetch_s,
            "write_s": report.write_s,
        }

    def finish(self, error: BaseException | None, last_ms: int | None) -> IngestReport:
        """Record the outcome and the gaps of the stored series over the covered range (and the candle
        before it, so a hole right where a resumed run starts is seen too)."""
        report = self.report
        report.status = "succeeded" if error is None else "failed"
        if error is not None:
            report.error = (
                f"{type(error).__name__}: {error}"
                if not isinstance(error, KeyboardInterrupt)
                else "interrupted by the user (Ctrl-C)"
            )
        first_ms = self.first_ms
        if first_ms is not None and last_ms is not None and first_ms <= last_ms:
            gaps = store.find_gaps(
                self.con,
                report.category,
                report.symbol,
                self.interval,
                self.interval.shift_one(first_ms, -1),
                last_ms,
            )
            report.gaps_found = len(gaps)
            report.missing_candles = sum(gap.missing for gap in gaps)
            report.gaps = [gap.to_dict() for gap in gaps[:GAP_SAMPLE_SIZE]]
        report.duration_s = time.perf_counter() - self.started
        with store.transaction(self.con):
            self.con.execute(store.sql("ingestion_run_progress.sql"), self._progress_params(last_ms))
            self.con.execute(
                store.sql("ingestion_run_finish.sql"),
                {
                    "id": report.run_id,
                    "status": report.status,
                    "error": report.error,
                    "gaps_found": report.gaps_found,
                    "missing_candles": report.missing_candles,
                    "gap_sample": json.dumps(report.gaps),
                    "finished_at": datetime.now(UTC),
                    "duration_s": report.duration_s,
                },
            )
        if error is not None and report.rows_received:
            error.add_note(
                f"run {report.run_id}: {report.rows_inserted + report.rows_updated} rows written before the failure "
                f"are kept (up to {report.effective_end}); rerun the same command to resume"
            )
        return report


def ingest_bybit(
    db_path: str | Path,
    category: str,
    symbol: str,
    interval: str,
    start: Any = None,
    end: Any = None,
    base_url: str | None = None,
    *,
    testnet: bool = False,
    client: BybitClient | None = None,
    max_requests_per_second: float | None = 10.0,
    retry: RetryPolicy | None = None,
    timeout_s: float = 10.0,
    progress: bool | None = None,
) -> IngestReport:
    """Fetch closed klines of one series from Bybit into the database at `db_path`.

    `start`/`end` are inclusive candle start bounds (epoch ms, ISO date/datetime; floored to the candle).
    No `start`: resume after the newest stored candle (an error on an empty series). No `end`: up to the
    last closed candle by Bybit's own clock. `client` overrides `base_url`/`testnet`/pacing/retry (tests).
    `progress`: a tqdm bar; None shows it only when stderr is a terminal.
    """
    category, symbol, spec = parse_category(category), parse_symbol(symbol), parse_interval(interval)
    start_ms = None if start is None else spec.floor_one(parse_time_ms(start, "start"))
    end_ms = None if end is None else spec.floor_one(parse_time_ms(end, "end"))
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise InvalidMarketError(f"end {format_ms(end_ms)} is before start {format_ms(start_ms)}")
    if client is None:
        client = BybitClient(
            base_url=resolve_base_url(base_url, testnet),
            timeout_s=timeout_s,
            max_requests_per_second=max_requests_per_second,
            retry=retry or RetryPolicy(),
        )
    con = store.connect(db_path)
    try:
        requested_start_ms = start_ms
        if start_ms is None:
            stored_last = store.last_open_time(con, category, symbol, spec.code)
            if stored_last is None:
                raise InvalidMarketError(
                    f"nothing is stored for {category} {symbol} {spec.code} in {db_path} yet: give a start "
                    "(e.g. --start 2025-01-01) for the first run; later runs resume on their own"
                )
            start_ms = spec.shift_one(stored_last, 1)
        run = _Run.start(
            con, str(db_path), "bybit", client.base_url, category, symbol, spec, requested_start_ms, end_ms
        )
        run.cover_from(start_ms)
        requests_before, retries_before = client.stats.requests, client.stats.retries
        covered_end: int | None = None
        try:
            with _progress_bar(progress, spec, start_ms, end_ms) as bar:
                cap = end_ms  # the last candle start to fetch; lowered to the last closed one once known
                window_start = start_ms
                while cap is None or window_start <= cap:
                    window_end = spec.shift_one(window_start, MAX_LIMIT - 1)
                    if cap is not None:
                        window_end = min(window_end, cap)
                    began = time.perf_counter()
                    page = client.fetch_window(category, symbol, spec, window_start, window_end)
                    run.report.fetch_s += time.perf_counter() - began
                    run.report.open_candles_dropped += page.open_candles_dropped
                    last_closed = spec.shift_one(spec.floor_one(page.server_time_ms), -1)
                    cap = last_closed if cap is None else min(cap, last_closed)
                    if min(window_end, cap) >= window_start:
                        covered_end = min(window_end, cap)
                    run.write(
                        page.candles,
                        covered_end,
                        client.stats.requests - requests_before,
                        client.stats.retries - retries_before,
                    )
                    bar.update(1)
                    bar.set_postfix_str(f"{run.report.rows_received} rows, {format_ms(covered_end)}")
                    window_start = spec.shift_one(window_end, 1)
        except BaseException as error:
            run.report.requests = client.stats.requests - requests_before
            run.report.retries = client.stats.retries - retries_before
            run.finish(error, covered_end)
            raise
        return run.finish(None, covered_end)
    finally:
        con.close()


def ingest_csv(
    db_path: str | Path,
    path: str | Path,
    category: str,
    symbol: str,
    interval: str,
    *,
    source: str = "csv",
) -> IngestReport:
    """Import a kline file (CSV, CSV.gz or Parquet; see `dreamer.data.files`) into one series, all rows or
    none: every row is checked first, then everything is upserted in one transaction."""
    category, symbol, spec = parse_category(category), parse_symbol(symbol), parse_interval(interval)
    con = store.connect(db_path)
    try:
        run = _Run.start(con, str(db_path), source, str(path), category, symbol, spec, None, None)
        last_ms = None
        try:
            began = time.perf_counter()
            candles = read_kline_file(path, spec)
            run.report.fetch_s = time.perf_counter() - began
            run.cover_from(int(candles.open_time_ms[0]))
            run.write(candles, int(candles.open_time_ms[-1]))
            last_ms = int(candles.open_time_ms[-1])
        except BaseException as error:
            run.finish(error, last_ms)
            raise
        return run.finish(None, last_ms)
    finally:
        con.close()


def ingest_sample(db_path: str | Path) -> IngestReport:
    """The bundled real sample (Bybit linear BTCUSDT 5-minute klines, 2026-01-01..2026-07-21)."""
    return ingest_csv(db_path, SAMPLE_CSV, "linear", "BTCUSDT", "5", source="sample")


def _progress_bar(progress: bool | None, spec: Interval, start_ms: int, end_ms: int | None) -> Any:
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    horizon = end_ms if end_ms is not None else spec.floor_one(int(time.time() * 1000))
    pages = max(1, -(-int(spec.count(start_ms, horizon)) // MAX_LIMIT))
    return tqdm(total=pages, unit="page", disable=not show, file=sys.stderr, leave=False, dynamic_ncols=True)


def _dt(millis: int | None) -> datetime | None:
    return None if millis is None else ms_to_datetime(millis)


def _iso(millis: int | None) -> str | None:
    return None if millis is None else format_ms(millis)
