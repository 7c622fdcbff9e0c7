"""Ingestion into the `klines` and `funding_rates` tables, from Bybit, from files, or from the bundled sample.

A Bybit run walks the asked range in consecutive windows (oldest first: at most 1000 candles, or
`FUNDING_WINDOW_MS` of funding settlements) and commits each page in its own transaction, together with
the run's row in `ingestion_runs`: a run killed at any moment keeps every committed page, and the next run
resumes after the newest stored candle (from the newest stored settlement, which comes back unchanged).
Gaps in stored klines are reported (report and log), never filled; the spacing of funding settlements is
the validation gate's to judge.

On the perpetual categories (linear, inverse) `ingest_bybit` also fetches the funding history covering the
klines it stored, with the same client (one pacing and retry budget), unless told not to.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from dreamer.data import store
from dreamer.data.bybit import FUNDING_WINDOW_MS, MAX_LIMIT, BybitClient, RetryPolicy, redact_url, resolve_base_url
from dreamer.data.candles import Candles
from dreamer.data.errors import InvalidMarketError
from dreamer.data.files import read_funding_file, read_kline_file
from dreamer.data.funding import FundingRates
from dreamer.data.markets import (
    PERPETUAL_CATEGORIES,
    Interval,
    format_ms,
    ms_to_datetime,
    parse_category,
    parse_interval,
    parse_symbol,
    parse_time_ms,
    require_funding_category,
)
from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV

GAP_SAMPLE_SIZE = 10
KLINES, FUNDING = "klines", "funding"


@dataclass
class IngestReport:
    """What one ingestion run did (`kind` klines or funding). Times are ISO 8601 UTC strings; durations in
    seconds. A klines run that also ingested funding carries that run's report in `funding`."""

    run_id: int
    source: str
    source_detail: str
    db_path: str
    category: str
    symbol: str
    interval: str | None  # None for funding
    kind: str = KLINES
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
    gaps_found: int | None = None  # klines only
    missing_candles: int | None = None
    gaps: list[dict[str, Any]] = field(default_factory=list)  # the first few: start, end, missing
    status: str = "running"
    error: str | None = None
    duration_s: float = 0.0
    fetch_s: float = 0.0
    write_s: float = 0.0
    funding: IngestReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        span = f"{self.effective_start or '-'} .. {self.effective_end or '-'}"
        series = f"{self.interval} " if self.kind == KLINES else "funding "
        requests = f", {self.requests} requests ({self.retries} retries)" if self.source == "bybit" else ""
        gaps = ""
        if self.kind == KLINES:
            gaps = (
                f", {self.gaps_found} gaps ({self.missing_candles} missing candles)" if self.gaps_found else ", no gaps"
            )
        return (
            f"{self.status}: {self.category} {self.symbol} {series}from {self.source} {span}: "
            f"{self.rows_inserted} inserted, {self.rows_updated} updated, {self.rows_unchanged} unchanged"
            f"{requests}{gaps}, {self.duration_s:.1f} s [run {self.run_id}, {self.db_path}]"
        )

    def summary_lines(self) -> list[str]:
        """This run's line, then the funding run's if there was one."""
        return [self.summary_line(), *([self.funding.summary_line()] if self.funding else [])]


class _Run:
    """The bookkeeping of one run: its `ingestion_runs` row, counters and timings. `interval` is the
    klines' interval, None for a funding run."""

    def __init__(self, con: duckdb.DuckDBPyConnection, report: IngestReport, interval: Interval | None) -> None:
        self.con, self.report, self.interval = con, report, interval
        self.started = time.perf_counter()
        self.first_ms: int | None = None  # first time covered
        self.covered_end_ms: int | None = None  # last time covered so far

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
        interval: Interval | None,
        requested_start_ms: int | None,
        requested_end_ms: int | None,
    ) -> _Run:
        kind = KLINES if interval is not None else FUNDING
        source_detail = redact_url(source_detail)  # a base URL's credentials are never stored or reported
        series = {
            "kind": kind,
            "category": category,
            "symbol": symbol,
            "interval": None if interval is None else interval.code,
        }
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
            interval=series["interval"],
            kind=kind,
            requested_start=_iso(requested_start_ms),
            requested_end=_iso(requested_end_ms),
        )
        return cls(con, report, interval)

    def write(
        self, batch: Candles | FundingRates, covered_end_ms: int | None, requests: int = 0, retries: int = 0
    ) -> None:
        """Upsert one page and record it in the run's row, in one transaction."""
        report = self.report
        began = time.perf_counter()
        with store.transaction(self.con):
            if isinstance(batch, Candles):
                assert report.interval is not None
                counts = store.upsert_klines(self.con, report.category, report.symbol, report.interval, batch)
            else:
                counts = store.upsert_funding(self.con, report.category, report.symbol, batch)
            report.rows_inserted += counts.inserted
            report.rows_updated += counts.updated
            report.rows_unchanged += counts.unchanged
            report.rows_received += counts.received
            report.requests, report.retries = requests, retries
            report.effective_end = _iso(covered_end_ms)
            report.write_s += time.perf_counter() - began
            self.con.execute(store.sql("ingestion_run_progress.sql"), self._progress_params(covered_end_ms))
        self.covered_end_ms = covered_end_ms

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
        """Record the outcome and, for klines, the gaps of the stored series over the covered range (and
        the candle before it, so a hole right where a resumed run starts is seen too)."""
        report = self.report
        report.status = "succeeded" if error is None else "failed"
        if error is not None:
            report.error = (
                f"{type(error).__name__}: {error}"
                if not isinstance(error, KeyboardInterrupt)
                else "interrupted by the user (Ctrl-C)"
            )
        first_ms, interval = self.first_ms, self.interval
        if interval is not None:
            gaps: list[store.Gap] = []
            if first_ms is not None and last_ms is not None and first_ms <= last_ms:
                gaps = store.find_gaps(
                    self.con, report.category, report.symbol, interval, interval.shift_one(first_ms, -1), last_ms
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
                    "gap_sample": json.dumps(report.gaps) if interval is not None else None,
                    "finished_at": datetime.now(UTC),
                    "duration_s": report.duration_s,
                },
            )
        if error is not None and report.rows_received:
            error.add_note(
                f"run {report.run_id}: {report.rows_inserted + report.rows_updated} {report.kind} rows written before "
                f"the failure are kept (up to {report.effective_end}); rerun the same command to resume"
            )
        return report


# --- Bybit -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Page:
    rows: Candles | FundingRates
    available_until_ms: int  # the newest time the server has final data for, by its own clock
    open_candles_dropped: int = 0


class _Windows(Protocol):
    """How one endpoint's range is cut into requests: consecutive windows, each fetched as one page."""

    def window_end(self, start_ms: int) -> int: ...
    def next_start(self, end_ms: int) -> int: ...
    def fetch(self, start_ms: int, end_ms: int) -> _Page: ...
    def pages(self, start_ms: int, end_ms: int) -> int: ...


@dataclass(frozen=True)
class _KlineWindows:
    client: BybitClient
    category: str
    symbol: str
    interval: Interval

    def window_end(self, start_ms: int) -> int:
        return self.interval.shift_one(start_ms, MAX_LIMIT - 1)

    def next_start(self, end_ms: int) -> int:
        return self.interval.shift_one(end_ms, 1)

    def fetch(self, start_ms: int, end_ms: int) -> _Page:
        page = self.client.fetch_window(self.category, self.symbol, self.interval, start_ms, end_ms)
        last_closed = self.interval.shift_one(self.interval.floor_one(page.server_time_ms), -1)
        return _Page(page.candles, last_closed, page.open_candles_dropped)

    def pages(self, start_ms: int, end_ms: int) -> int:
        return -(-int(self.interval.count(start_ms, end_ms)) // MAX_LIMIT)


@dataclass(frozen=True)
class _FundingWindows:
    client: BybitClient
    category: str
    symbol: str

    def window_end(self, start_ms: int) -> int:
        return start_ms + FUNDING_WINDOW_MS - 1

    def next_start(self, end_ms: int) -> int:
        return end_ms + 1

    def fetch(self, start_ms: int, end_ms: int) -> _Page:
        page = self.client.fetch_funding(self.category, self.symbol, start_ms, end_ms)
        return _Page(page.rates, page.server_time_ms)  # a settlement is final once its time has passed

    def pages(self, start_ms: int, end_ms: int) -> int:
        return -(-(end_ms - start_ms + 1) // FUNDING_WINDOW_MS)


def _ingest_windows(
    run: _Run,
    client: BybitClient,
    windows: _Windows,
    start_ms: int,
    end_ms: int | None,
    progress: bool | None,
) -> IngestReport:
    """Fetch `[start_ms, end_ms]` (end None: up to what the server has) window by window, oldest first,
    committing each page with the run's progress; finish the run (failed on any error, re-raised)."""
    run.cover_from(start_ms)
    requests_before, retries_before = client.stats.requests, client.stats.retries
    covered_end: int | None = None
    try:
        horizon = end_ms if end_ms is not None else int(time.time() * 1000)
        with _progress_bar(progress, max(1, windows.pages(start_ms, horizon))) as bar:
            cap = end_ms  # the last time to fetch; lowered to what the server has once its clock is known
            window_start = start_ms
            while cap is None or window_start <= cap:
                window_end = windows.window_end(window_start)
                if cap is not None:
                    window_end = min(window_end, cap)
                began = time.perf_counter()
                page = windows.fetch(window_start, window_end)
                run.report.fetch_s += time.perf_counter() - began
                run.report.open_candles_dropped += page.open_candles_dropped
                cap = page.available_until_ms if cap is None else min(cap, page.available_until_ms)
                if min(window_end, cap) >= window_start:
                    covered_end = min(window_end, cap)
                run.write(
                    page.rows,
                    covered_end,
                    client.stats.requests - requests_before,
                    client.stats.retries - retries_before,
                )
                bar.update(1)
                bar.set_postfix_str(f"{run.report.rows_received} rows, {format_ms(covered_end)}")
                window_start = windows.next_start(window_end)
    except BaseException as error:
        run.report.requests = client.stats.requests - requests_before
        run.report.retries = client.stats.retries - retries_before
        run.finish(error, covered_end)
        raise
    return run.finish(None, covered_end)


def _client(
    client: BybitClient | None,
    base_url: str | None,
    testnet: bool,
    max_requests_per_second: float | None,
    retry: RetryPolicy | None,
    timeout_s: float,
) -> BybitClient:
    if client is not None:
        return client
    return BybitClient(
        base_url=resolve_base_url(base_url, testnet),
        timeout_s=timeout_s,
        max_requests_per_second=max_requests_per_second,
        retry=retry or RetryPolicy(),
    )


def _bounds(start: Any, end: Any, floor: Callable[[int], int] = lambda ms: ms) -> tuple[int | None, int | None]:
    start_ms = None if start is None else floor(parse_time_ms(start, "start"))
    end_ms = None if end is None else floor(parse_time_ms(end, "end"))
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise InvalidMarketError(f"end {format_ms(end_ms)} is before start {format_ms(start_ms)}")
    return start_ms, end_ms


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
    funding: bool = True,
) -> IngestReport:
    """Fetch closed klines of one series from Bybit into the database at `db_path`, then (`funding`, on
    linear and inverse) the funding settlements covering them (see `_funding_range`), as a second run
    whose report is the returned report's `funding`.

    `start`/`end` are inclusive candle start bounds (epoch ms, ISO date/datetime; floored to the candle).
    No `start`: resume after the newest stored candle (an error on an empty series). No `end`: up to the
    last closed candle by Bybit's own clock. `client` overrides `base_url`/`testnet`/pacing/retry (tests).
    `progress`: a tqdm bar; None shows it only when stderr is a terminal.
    """
    category, symbol, spec = parse_category(category), parse_symbol(symbol), parse_interval(interval)
    start_ms, end_ms = _bounds(start, end, spec.floor_one)
    client = _client(client, base_url, testnet, max_requests_per_second, retry, timeout_s)
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
        windows = _KlineWindows(client, category, symbol, spec)
        report = _ingest_windows(run, client, windows, start_ms, end_ms, progress)
        if funding and category in PERPETUAL_CATEGORIES:
            span = _funding_range(con, run, spec)
            if span is not None:
                funding_run = _Run.start(con, str(db_path), "bybit", client.base_url, category, symbol, None, *span)
                report.funding = _ingest_windows(
                    funding_run, client, _FundingWindows(client, category, symbol), *span, progress
                )
        return report
    finally:
        con.close()


def _funding_range(con: duckdb.DuckDBPyConnection, klines: _Run, interval: Interval) -> tuple[int, int] | None:
    """The settlements to fetch after a klines run: from the run's first candle, or earlier where funding
    lags the stored klines (from the newest stored settlement, or from the first stored candle when none
    is stored), to the close of the last candle covered (of the newest stored one when the run found
    nothing new). None when no candle is stored."""
    report = klines.report
    span = store.stored_span(con, report.category, report.symbol, interval.code)
    if span is None or klines.first_ms is None:
        return None
    first_candle, newest_candle = span
    end_ms = interval.shift_one(klines.covered_end_ms if klines.covered_end_ms is not None else newest_candle, 1)
    last_settlement = store.last_funding_time(con, report.category, report.symbol)
    funding_from = first_candle if last_settlement is None else max(last_settlement, first_candle)
    start_ms = min(klines.first_ms, funding_from)
    return (start_ms, end_ms) if start_ms <= end_ms else None


def ingest_funding_bybit(
    db_path: str | Path,
    category: str,
    symbol: str,
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
    """Fetch the funding settlements of one perpetual (linear or inverse; spot has none) from Bybit.

    `start`/`end` are inclusive bounds on the settlement time (epoch ms, ISO date/datetime). No `start`:
    resume after the newest stored settlement (an error when none is stored). No `end`: up to Bybit's
    clock. The other arguments are `ingest_bybit`'s. A resumed run asks for the newest stored settlement
    again (it comes back unchanged): Bybit's bounds are inclusive, and a clean start time reads better in the
    log than one a millisecond after a settlement."""
    category, symbol = require_funding_category(category), parse_symbol(symbol)
    start_ms, end_ms = _bounds(start, end)
    client = _client(client, base_url, testnet, max_requests_per_second, retry, timeout_s)
    con = store.connect(db_path)
    try:
        requested_start_ms = start_ms
        if start_ms is None:
            stored_last = store.last_funding_time(con, category, symbol)
            if stored_last is None:
                raise InvalidMarketError(
                    f"no funding is stored for {category} {symbol} in {db_path} yet: give a start "
                    "(e.g. --start 2025-01-01) for the first run; later runs resume on their own"
                )
            start_ms = stored_last
        run = _Run.start(
            con, str(db_path), "bybit", client.base_url, category, symbol, None, requested_start_ms, end_ms
        )
        return _ingest_windows(run, client, _FundingWindows(client, category, symbol), start_ms, end_ms, progress)
    finally:
        con.close()


# --- files -------------------------------------------------------------------------------------------


def _import_file(run: _Run, read: Callable[[], Candles | FundingRates]) -> IngestReport:
    """All rows of a file or none: `read` checks every row first, then one transaction upserts them."""
    last_ms = None
    try:
        began = time.perf_counter()
        batch = read()
        run.report.fetch_s = time.perf_counter() - began
        run.cover_from(int(batch.times_ms[0]))
        run.write(batch, int(batch.times_ms[-1]))
        last_ms = int(batch.times_ms[-1])
    except BaseException as error:
        run.finish(error, last_ms)
        raise
    return run.finish(None, last_ms)


def ingest_csv(
    db_path: str | Path,
    path: str | Path,
    category: str,
    symbol: str,
    interval: str,
    *,
    source: str = "csv",
    funding_path: str | Path | None = None,
) -> IngestReport:
    """Import a kline file (CSV, CSV.gz or Parquet; see `dreamer.data.files`) into one series, all rows or
    none, then, given `funding_path`, that perpetual's funding file (`ingest_funding_csv`) as the report's
    `funding`."""
    category, symbol, spec = parse_category(category), parse_symbol(symbol), parse_interval(interval)
    if funding_path is not None:
        require_funding_category(category)  # before anything is written
    con = store.connect(db_path)
    try:
        run = _Run.start(con, str(db_path), source, str(path), category, symbol, spec, None, None)
        report = _import_file(run, lambda: read_kline_file(path, spec))
    finally:
        con.close()
    if funding_path is not None:
        report.funding = ingest_funding_csv(db_path, funding_path, category, symbol, source=source)
    return report


def ingest_funding_csv(
    db_path: str | Path, path: str | Path, category: str, symbol: str, *, source: str = "csv"
) -> IngestReport:
    """Import a funding file (`funding_time_ms,funding_rate`; CSV, CSV.gz or Parquet) for one perpetual,
    all rows or none: every row is checked first, then everything is upserted in one transaction."""
    category, symbol = require_funding_category(category), parse_symbol(symbol)
    con = store.connect(db_path)
    try:
        run = _Run.start(con, str(db_path), source, str(path), category, symbol, None, None, None)
        return _import_file(run, lambda: read_funding_file(path))
    finally:
        con.close()


def ingest_sample(db_path: str | Path) -> IngestReport:
    """The bundled real sample: Bybit linear BTCUSDT 5-minute klines, 2026-01-01..2026-07-21, and the
    funding settlements over them."""
    return ingest_csv(db_path, SAMPLE_CSV, "linear", "BTCUSDT", "5", source="sample", funding_path=SAMPLE_FUNDING_CSV)


def _progress_bar(progress: bool | None, pages: int) -> Any:
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=pages, unit="page", disable=not show, file=sys.stderr, leave=False, dynamic_ncols=True)


def _dt(millis: int | None) -> datetime | None:
    return None if millis is None else ms_to_datetime(millis)


def _iso(millis: int | None) -> str | None:
    return None if millis is None else format_ms(millis)
