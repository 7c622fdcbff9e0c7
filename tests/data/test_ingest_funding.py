"""Data tier: funding ingestion from the fake Bybit (alone and after the klines), from files, and the bundled
sample: exactness across many pages with faults in both list orders, resume, idempotence, a real kill -9,
the ingestion log, the schema migration, and spot refused."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dreamer.data import store
from dreamer.data.bybit import FUNDING_LIMIT, FUNDING_WINDOW_MS
from dreamer.data.errors import BybitRequestRejected, InvalidMarketError, SourceFileError
from dreamer.data.ingest import ingest_bybit, ingest_csv, ingest_funding_bybit, ingest_funding_csv, ingest_sample
from dreamer.data.markets import INTERVALS
from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV
from tests.conftest import FAKE_FUNDING_KEY, FAKE_SERIES_KEY
from tests.data.kline_helpers import (
    assert_funding_equals,
    assert_table_equals,
    fast_client,
    generated_funding_rows,
    stored_funding,
)
from tests.fakes.bybit_server import FakeBybit, FundingSeries, KlineSeries

SHARED_BTC_FUNDING = "bybit_BTCUSDT_funding_8h_2025-01_2026-07.csv"
GENERATED_START = 1_735_689_600_000  # 2025-01-01 00:00
RETRYABLE_FAULTS = ("ok", "http_502", "truncated", "ok", "ret_10006", "drop", "ok", "ret_10016", "slow", "http_429")
HEADER = "funding_time_ms,funding_rate"


def write_funding(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("\n".join([HEADER, *(f"{t},{r}" for t, r in rows)]) + "\n")
    return path


@pytest.fixture(params=["generated", "shared"])
def funding_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A funding file served by the fake: a generated one (always), or a copy of the real BTCUSDT history
    in ../shared/data (1,700 settlements, 2025-01-01 08:00 .. 2026-07-21 16:00) where the clone has it."""
    if request.param == "generated":
        return write_funding(tmp_path / "generated.csv", generated_funding_rows(900, GENERATED_START))
    shared = request.getfixturevalue("shared_data") / SHARED_BTC_FUNDING
    return Path(shutil.copy(shared, tmp_path / SHARED_BTC_FUNDING))


def funding_runs(db_path: Path) -> list[dict]:
    con = store.connect(db_path, read_only=True)
    try:
        return [run for run in store.recent_runs(con).to_dict("records")[::-1] if run["kind"] == "funding"]
    finally:
        con.close()


def assert_windows_are_complete_and_bounded(fake: FakeBybit) -> None:
    """Every request named both bounds, asked at most `FUNDING_WINDOW_MS` and got a page that was not full."""
    for record in fake.funding_requests:
        params = record.params
        assert params["limit"] == "200" and "endTime" in params, params
        assert int(params["endTime"]) - int(params["startTime"]) + 1 <= FUNDING_WINDOW_MS
        assert record.rows < FUNDING_LIMIT


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_the_stored_history_equals_the_file_across_many_pages_despite_faults(
    db_path: Path, funding_file: Path, order: str
) -> None:
    series = FundingSeries.from_csv(funding_file)
    with FakeBybit({}, {FAKE_FUNDING_KEY: series}, order=order) as fake:
        fake.inject(*RETRYABLE_FAULTS)
        start = int(series.funding_time_ms[0])
        report = ingest_funding_bybit(db_path, "linear", "BTCUSDT", start=start, client=fast_client(fake))
        pages = -(-(fake.now_ms - start + 1) // FUNDING_WINDOW_MS)
        assert pages >= 30
        assert report.requests == len(fake.log) == pages + 7 and report.retries == 7
        assert_windows_are_complete_and_bounded(fake)
    assert_funding_equals(db_path, series.rows)
    assert (report.status, report.kind, report.interval) == ("succeeded", "funding", None)
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (len(series.rows), 0, 0)
    [logged] = funding_runs(db_path)
    assert logged["status"] == "succeeded" and logged["rows_inserted"] == len(series.rows)
    assert pd.isna(logged["interval"]) and logged["retries"] == 7 and pd.isna(logged["gaps_found"])


def test_reruns_are_idempotent_and_resume_after_the_newest_settlement(db_path: Path) -> None:
    rows = generated_funding_rows(300, GENERATED_START)
    with FakeBybit({}, {FAKE_FUNDING_KEY: FundingSeries.from_rows(rows)}) as fake:
        ingest_funding_bybit(
            db_path, "linear", "BTCUSDT", start=GENERATED_START, end=rows[149][0], client=fast_client(fake)
        )
        assert_funding_equals(db_path, rows[:150])
        fake.log.clear()
        report = ingest_funding_bybit(db_path, "linear", "BTCUSDT", client=fast_client(fake))  # resume
        # From the newest stored settlement, fetched again: the overlap is one unchanged row, never a duplicate.
        assert report.requested_start is None and report.effective_start == "2025-02-19T16:00Z"
        assert int(fake.log[0].params["startTime"]) == int(rows[149][0])
        assert (report.rows_inserted, report.rows_unchanged) == (150, 1)
        again = ingest_funding_bybit(db_path, "linear", "BTCUSDT", start=GENERATED_START, client=fast_client(fake))
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 300)
    assert_funding_equals(db_path, rows)


def test_a_permanent_error_mid_run_keeps_committed_pages(db_path: Path) -> None:
    rows = generated_funding_rows(300, GENERATED_START)
    with FakeBybit({}, {FAKE_FUNDING_KEY: FundingSeries.from_rows(rows)}) as fake:
        fake.inject("ok", "ok", "ret_10001")
        with pytest.raises(BybitRequestRejected) as info:
            ingest_funding_bybit(db_path, "linear", "BTCUSDT", start=GENERATED_START, client=fast_client(fake))
        assert "funding rows written before the failure are kept" in " ".join(info.value.__notes__)
        kept = len(stored_funding(db_path)[0])
        assert kept == 2 * 25  # two windows of 199 h at 8 h: 25 settlements each
        [failed] = funding_runs(db_path)
        assert failed["status"] == "failed" and "10001" in failed["error"] and failed["rows_inserted"] == kept
        ingest_funding_bybit(db_path, "linear", "BTCUSDT", client=fast_client(fake))
    assert_funding_equals(db_path, rows)


def test_bad_arguments_and_spot_fail_before_any_request(db_path: Path, fake_bybit: FakeBybit) -> None:
    client = fast_client(fake_bybit)
    with pytest.raises(InvalidMarketError, match="category 'spot' has no funding"):
        ingest_funding_bybit(db_path, "spot", "BTCUSDT", start="2026-01-01", client=client)
    with pytest.raises(InvalidMarketError, match=r"no funding is stored .* give a start"):
        ingest_funding_bybit(db_path, "linear", "BTCUSDT", client=client)
    with pytest.raises(InvalidMarketError, match="before start"):
        ingest_funding_bybit(db_path, "linear", "BTCUSDT", start="2026-01-02", end="2026-01-01", client=client)
    assert fake_bybit.log == []


# --- after the klines -------------------------------------------------------------------------------------


def ingest_market(db_path: Path, fake: FakeBybit, **kwargs: object):  # type: ignore[no-untyped-def]
    return ingest_bybit(db_path, "linear", "BTCUSDT", "5", client=fast_client(fake), **kwargs)  # type: ignore[arg-type]


def settled_between(fake: FakeBybit, first_ms: int, last_ms: int) -> list[tuple[str, str]]:
    return [row for row in fake.settled_rows(FAKE_FUNDING_KEY) if first_ms <= int(row[0]) <= last_ms]


def test_klines_then_the_funding_covering_them(db_path: Path, fake_bybit: FakeBybit) -> None:
    start = int(fake_bybit.series[FAKE_SERIES_KEY].open_time_ms[0])
    report = ingest_market(db_path, fake_bybit, start=start)
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))
    last_close = INTERVALS["5"].shift_one(int(fake_bybit.closed_rows(FAKE_SERIES_KEY)[-1][0]), 1)
    assert report.funding is not None and report.funding.status == "succeeded"
    assert report.funding.effective_start == "2026-01-01T00:00Z" and report.funding.effective_end == "2026-01-16T00:00Z"
    assert_funding_equals(db_path, settled_between(fake_bybit, start, last_close))  # 15 days x 3 + 1
    assert len(fake_bybit.funding_requests) == report.funding.requests == 2
    assert report.requests == len(fake_bybit.kline_requests) == 5  # each run counts its own requests
    con = store.connect(db_path, read_only=True)
    try:
        runs = store.recent_runs(con).to_dict("records")[::-1]
        kinds = [(run["kind"], None if pd.isna(run["interval"]) else run["interval"]) for run in runs]
    finally:
        con.close()
    assert kinds == [("klines", "5"), ("funding", None)]


def test_funding_that_lags_the_klines_is_filled_from_the_first_stored_candle(
    db_path: Path, fake_bybit: FakeBybit
) -> None:
    start = int(fake_bybit.series[FAKE_SERIES_KEY].open_time_ms[0])
    ingest_market(db_path, fake_bybit, start=start, end=INTERVALS["5"].shift_one(start, 2_499), funding=False)
    assert len(stored_funding(db_path)[0]) == 0
    report = ingest_market(db_path, fake_bybit)  # resumes the klines; funding starts where the klines do
    assert report.funding is not None and report.funding.effective_start == "2026-01-01T00:00Z"
    last_close = INTERVALS["5"].shift_one(int(fake_bybit.closed_rows(FAKE_SERIES_KEY)[-1][0]), 1)
    assert_funding_equals(db_path, settled_between(fake_bybit, start, last_close))
    fake_bybit.log.clear()
    up_to_date = ingest_market(db_path, fake_bybit)  # nothing new: one kline request, one funding request
    assert up_to_date.funding is not None and up_to_date.funding.rows_inserted == 0
    assert len(fake_bybit.kline_requests) == len(fake_bybit.funding_requests) == 1


def test_spot_klines_ask_for_no_funding(db_path: Path, sample_series: KlineSeries) -> None:
    with FakeBybit({("spot", "BTCUSDT", "5"): sample_series}) as fake:
        report = ingest_bybit(db_path, "spot", "BTCUSDT", "5", start="2026-01-15", client=fast_client(fake))
        assert report.funding is None and fake.funding_requests == []


# --- kill -9 --------------------------------------------------------------------------------------------

KILLED_RUN = """
import sys
from dreamer.data.ingest import ingest_funding_bybit
ingest_funding_bybit(sys.argv[1], "linear", "BTCUSDT", start=int(sys.argv[2]), base_url=sys.argv[3],
                     max_requests_per_second=6)
"""


def test_resume_after_kill_9(db_path: Path) -> None:
    rows = generated_funding_rows(1_500, GENERATED_START)  # 61 windows: about 10 s at 6 requests/s
    with FakeBybit({}, {FAKE_FUNDING_KEY: FundingSeries.from_rows(rows)}) as fake:
        process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(db_path), str(GENERATED_START), fake.url])
        deadline = time.monotonic() + 60
        while len(fake.log) < 5 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        times, _ = stored_funding(db_path)
        assert 0 < len(times) < 1_500 and len(times) % 25 == 0  # whole pages only, each committed atomically
        assert_funding_equals(db_path, rows[: len(times)])
        [killed] = funding_runs(db_path)
        assert killed["status"] == "running" and killed["rows_inserted"] == len(times)
        fake.log.clear()
        report = ingest_funding_bybit(db_path, "linear", "BTCUSDT", client=fast_client(fake))
        assert report.rows_inserted == 1_500 - len(times) and report.rows_unchanged == 1  # the newest, again
        assert_funding_equals(db_path, rows)
    killed, resumed = funding_runs(db_path)
    assert killed["status"] == "interrupted" and "ended before the run finished" in killed["error"]
    assert resumed["status"] == "succeeded"


# --- files and the sample -------------------------------------------------------------------------------


def test_the_bundled_sample_brings_its_funding(db_path: Path) -> None:
    report = ingest_sample(db_path)
    assert report.funding is not None and report.funding.source == "sample"
    assert (report.funding.rows_inserted, report.funding.effective_start, report.funding.effective_end) == (
        606,
        "2026-01-01T00:00Z",
        "2026-07-21T16:00Z",
    )
    assert_funding_equals(db_path, FundingSeries.from_csv(SAMPLE_FUNDING_CSV).rows)
    again = ingest_sample(db_path)
    assert again.funding is not None and again.funding.rows_unchanged == 606


def test_the_sample_funding_is_the_shared_history_over_the_sample(shared_data: Path) -> None:
    shared = FundingSeries.from_csv(shared_data / SHARED_BTC_FUNDING)
    sample = FundingSeries.from_csv(SAMPLE_FUNDING_CSV)
    first, last = 1_767_225_600_000, 1_784_652_900_000  # the sample's first and last candle
    assert sample.rows == [row for row in shared.rows if first <= int(row[0]) <= last]


def test_the_shared_funding_file_imports_exactly(db_path: Path, shared_data: Path) -> None:
    report = ingest_funding_csv(db_path, shared_data / SHARED_BTC_FUNDING, "linear", "BTCUSDT")
    assert report.rows_inserted == 1_700
    assert_funding_equals(db_path, FundingSeries.from_csv(shared_data / SHARED_BTC_FUNDING).rows)


def test_bad_funding_rows_are_named_by_line_and_nothing_is_written(db_path: Path, tmp_path: Path) -> None:
    rows = [f"{t},{r}" for t, r in generated_funding_rows(9, GENERATED_START)]
    rows[1] = rows[1].split(",")[0] + ",abc"  # line 3
    rows[3] = rows[3].split(",")[0] + ","  # line 5
    rows[4] = "1735804800000.0,0.0001"  # line 6
    rows[6] = rows[5]  # line 8: duplicate
    rows[7] = rows[7].split(",")[0] + ",inf"  # line 9
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(SourceFileError) as info:
        ingest_funding_csv(db_path, path, "linear", "BTCUSDT")
    message = str(info.value)
    for expected in (
        "line 3: funding_rate is not a number",
        "line 5: funding_rate is empty",
        "line 6: funding_time_ms must be epoch milliseconds",
        "nothing was written",
    ):
        assert expected in message, message
    assert len(stored_funding(db_path)[0]) == 0
    del rows[4]  # once the text parses, the row checks speak
    rows[1] = rows[1].split(",")[0] + ",0.0001"
    rows[3] = rows[3].split(",")[0] + ",0.0001"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(SourceFileError) as info:
        ingest_funding_csv(db_path, path, "linear", "BTCUSDT")
    assert "line 7: settlement time 2025-01-02T16:00Z is not after the previous row's" in str(info.value)
    assert "line 8: funding_rate must be a finite number" in str(info.value)
    [failed] = funding_runs(db_path)[-1:]
    assert failed["status"] == "failed" and "SourceFileError" in failed["error"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,rate\n1,2\n", r"missing \['funding_time_ms', 'funding_rate'\], unexpected \['time', 'rate'\]"),
        (f"{HEADER}\n", "no rows"),
        ("", "empty"),
        (f"{HEADER}\n1735689600000,0.0001,extra\n", "not a readable CSV"),
        (f"{HEADER}\n100000000000000,0.0001\n", "line 2: funding_time_ms must lie between 2009-01-01 and one day"),
    ],
)
def test_malformed_funding_files(db_path: Path, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "funding.csv"
    path.write_text(content)
    with pytest.raises(SourceFileError, match=message):
        ingest_funding_csv(db_path, path, "linear", "BTCUSDT")


def test_parquet_funding_matches_csv_and_spot_is_refused(db_path: Path, tmp_path: Path) -> None:
    rows = generated_funding_rows(40, GENERATED_START)
    table = pa.table({"funding_time_ms": [int(t) for t, _ in rows], "funding_rate": [float(r) for _, r in rows]})
    pq.write_table(table, tmp_path / "funding.parquet")
    assert ingest_funding_csv(db_path, tmp_path / "funding.parquet", "inverse", "BTCUSD").rows_inserted == 40
    assert_funding_equals(db_path, rows, category="inverse", symbol="BTCUSD")
    with pytest.raises(InvalidMarketError, match="category 'spot' has no funding"):
        ingest_csv(db_path, SAMPLE_CSV, "spot", "BTCUSDT", "5", funding_path=tmp_path / "funding.parquet")
    con = store.connect(db_path, read_only=True)
    try:
        assert store.read_klines(con, "spot", "BTCUSDT", "5").empty  # refused before anything was written
    finally:
        con.close()


# --- the log's migration --------------------------------------------------------------------------------

INGESTION_RUNS_BEFORE_FUNDING = """
CREATE SEQUENCE ingestion_run_id START 1;
CREATE TABLE ingestion_runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('ingestion_run_id'), source VARCHAR NOT NULL, source_detail VARCHAR,
    category VARCHAR NOT NULL, symbol VARCHAR NOT NULL, interval VARCHAR NOT NULL,
    requested_start TIMESTAMPTZ, requested_end TIMESTAMPTZ, effective_start TIMESTAMPTZ, effective_end TIMESTAMPTZ,
    rows_received BIGINT NOT NULL DEFAULT 0, rows_inserted BIGINT NOT NULL DEFAULT 0,
    rows_updated BIGINT NOT NULL DEFAULT 0, rows_unchanged BIGINT NOT NULL DEFAULT 0,
    open_candles_dropped BIGINT NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0, gaps_found INTEGER, missing_candles BIGINT, gap_sample VARCHAR,
    status VARCHAR NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')), error VARCHAR,
    started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, duration_s DOUBLE, fetch_s DOUBLE, write_s DOUBLE
);
INSERT INTO ingestion_runs (source, category, symbol, interval, status, started_at)
VALUES ('csv', 'linear', 'BTCUSDT', '5', 'succeeded', now());
"""


def test_a_database_from_before_funding_is_migrated(db_path: Path) -> None:
    """The ingestion log of an existing database (as written before funding) gains `kind`; its runs are klines."""
    db_path.parent.mkdir(parents=True)
    with duckdb.connect(str(db_path)) as con:
        con.execute(INGESTION_RUNS_BEFORE_FUNDING)
    ingest_funding_csv(db_path, SAMPLE_FUNDING_CSV, "linear", "BTCUSDT")
    con = store.connect(db_path)  # and again: the migration runs once
    try:
        logged = con.execute("SELECT kind, interval, status FROM ingestion_runs ORDER BY id").fetchall()
    finally:
        con.close()
    assert logged == [("klines", "5", "succeeded"), ("funding", None, "succeeded")]
