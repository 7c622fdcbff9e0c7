"""Data tier: kline ingestion from the fake Bybit into DuckDB: exactness, the open candle, ordering, resume,
idempotence, gaps, failures and a real kill -9. (Funding, which `ingest_bybit` adds on perpetuals, has its
own tests in test_ingest_funding.py; here it is switched off so that every request is a kline request.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dreamer.data import store
from dreamer.data.errors import BybitAccessDenied, BybitRequestRejected, InvalidMarketError
from dreamer.data.ingest import ingest_bybit
from dreamer.data.markets import INTERVALS
from dreamer.paths import SAMPLE_CSV
from tests.conftest import FAKE_SERIES_KEY
from tests.data.kline_helpers import assert_table_equals, fast_client, stored_arrays
from tests.fakes.bybit_server import FakeBybit, KlineSeries

FIVE = INTERVALS["5"]


def first_start(fake: FakeBybit) -> int:
    return int(fake.series[FAKE_SERIES_KEY].open_time_ms[0])


def ingest(db_path: Path, fake: FakeBybit, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("client", fast_client(fake))
    kwargs.setdefault("funding", False)
    return ingest_bybit(db_path, "linear", "BTCUSDT", "5", **kwargs)  # type: ignore[arg-type]


def runs(db_path: Path) -> list[dict]:
    con = store.connect(db_path, read_only=True)
    try:
        return store.recent_runs(con).to_dict("records")[::-1]
    finally:
        con.close()


def assert_windows_within_limit(fake: FakeBybit) -> None:
    for record in fake.log:
        params = record.params
        candles = int(FIVE.count(int(params["start"]), int(params["end"])))
        assert 1 <= candles <= int(params["limit"]) <= 1000, params


def test_table_equals_the_source_across_page_boundaries(db_path: Path, fake_bybit: FakeBybit) -> None:
    report = ingest(db_path, fake_bybit, start=first_start(fake_bybit) + 60_000)  # floored to its candle
    closed = fake_bybit.closed_rows(FAKE_SERIES_KEY)
    assert len(closed) == 4_320
    assert_table_equals(db_path, closed)
    assert report.status == "succeeded"
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (4_320, 0, 0)
    assert report.requests == len(fake_bybit.log) == 5  # ceil(4320 / 1000): the minimum
    assert report.gaps_found == 0
    assert_windows_within_limit(fake_bybit)
    [logged] = runs(db_path)
    assert logged["status"] == "succeeded" and logged["rows_inserted"] == 4_320 and logged["requests"] == 5


def test_the_open_candle_is_never_stored(db_path: Path, fake_bybit: FakeBybit) -> None:
    series = fake_bybit.series[FAKE_SERIES_KEY]
    open_start = int(series.open_time_ms[-1])
    # Ask explicitly for a range that ends in the future: the open candle is served, and dropped.
    report = ingest(db_path, fake_bybit, start=FIVE.shift_one(open_start, -500), end=open_start + 10 * 300_000)
    assert report.open_candles_dropped == 1
    times, _ = stored_arrays(db_path)
    assert open_start not in times and int(times[-1]) == open_start - 300_000
    # Once it has closed, the next run stores its final values, not the partial ones it saw before.
    fake_bybit.now_ms += 300_000
    report = ingest(db_path, fake_bybit)
    assert (report.rows_inserted, report.rows_updated) == (1, 0)
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY)[-501:])


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_both_server_orderings_give_the_same_table(db_path: Path, sample_series: KlineSeries, order: str) -> None:
    with FakeBybit({FAKE_SERIES_KEY: sample_series}, order=order) as fake:
        ingest(db_path, fake, start=first_start(fake))
        assert_table_equals(db_path, fake.closed_rows(FAKE_SERIES_KEY))
        assert_windows_within_limit(fake)


def test_the_two_orderings_really_differ_on_an_oversized_window(sample_series: KlineSeries) -> None:
    """The ambiguity the client avoids is real in the fake: an oversized window has two answers."""
    answers = []
    for order in ("newest_first", "oldest_first"):
        with FakeBybit({FAKE_SERIES_KEY: sample_series}, order=order) as fake:
            params = {"category": "linear", "symbol": "BTCUSDT", "interval": "5", "limit": "1000"}
            params |= {"start": str(first_start(fake)), "end": str(first_start(fake) + 1999 * 300_000)}
            listed = requests.get(f"{fake.url}/v5/market/kline", params=params, timeout=5).json()["result"]["list"]
            answers.append(sorted(int(row[0]) for row in listed))
    assert len(answers[0]) == len(answers[1]) == 1000 and answers[0] != answers[1]


def test_reruns_are_idempotent(db_path: Path, fake_bybit: FakeBybit) -> None:
    start = first_start(fake_bybit)
    ingest(db_path, fake_bybit, start=start)
    before = stored_arrays(db_path)
    report = ingest(db_path, fake_bybit, start=start)
    after = stored_arrays(db_path)
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (0, 0, 4_320)
    assert (before[0] == after[0]).all() and (before[1] == after[1]).all()


def test_resume_fetches_only_what_is_missing(db_path: Path, fake_bybit: FakeBybit) -> None:
    start = first_start(fake_bybit)
    ingest(db_path, fake_bybit, start=start, end=FIVE.shift_one(start, 2_499))
    assert len(fake_bybit.log) == 3
    fake_bybit.log.clear()
    report = ingest(db_path, fake_bybit)  # no start: resume after the newest stored candle
    assert report.requested_start is None and report.effective_start == "2026-01-09T16:20Z"
    assert report.rows_inserted == 4_320 - 2_500 and report.rows_unchanged == 0
    assert int(fake_bybit.log[0].params["start"]) == FIVE.shift_one(start, 2_500)
    assert len(fake_bybit.log) == 2
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))
    fake_bybit.log.clear()
    report = ingest(db_path, fake_bybit)  # up to date: one request, nothing new
    assert report.rows_received == 0 and len(fake_bybit.log) == 1


def test_gaps_are_reported_not_invented(db_path: Path, sample_series: KlineSeries) -> None:
    holed = sample_series.without([*range(1_500, 1_510), 3_000])
    with FakeBybit({FAKE_SERIES_KEY: holed}) as fake:
        report = ingest(db_path, fake, start=first_start(fake))
        assert_table_equals(db_path, fake.closed_rows(FAKE_SERIES_KEY))
    assert (report.gaps_found, report.missing_candles) == (2, 11)
    assert report.gaps[0] == {"start": "2026-01-06T05:00Z", "end": "2026-01-06T05:45Z", "missing": 10}
    [logged] = runs(db_path)
    assert (logged["gaps_found"], logged["missing_candles"]) == (2, 11)
    assert json.loads(logged["gap_sample"]) == report.gaps


def test_a_hole_right_where_a_resumed_run_starts_is_reported(db_path: Path, sample_series: KlineSeries) -> None:
    start = int(sample_series.open_time_ms[0])
    with FakeBybit({FAKE_SERIES_KEY: sample_series.without(range(1_000, 1_003))}) as fake:
        ingest(db_path, fake, start=start, end=FIVE.shift_one(start, 999))
        report = ingest(db_path, fake)
    assert (report.gaps_found, report.missing_candles) == (1, 3)


def test_retryable_faults_mid_run_are_survived(db_path: Path, fake_bybit: FakeBybit) -> None:
    fake_bybit.inject("ok", "http_502", "truncated", "ok", "ret_10006", "drop", "ok", "ret_10016", "slow", "http_429")
    report = ingest(db_path, fake_bybit, start=first_start(fake_bybit))
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))
    assert report.retries == 7 and report.requests == 5 + 7 == len(fake_bybit.log)
    assert runs(db_path)[0]["retries"] == 7


@pytest.mark.parametrize(("fault", "error"), [("http_403", BybitAccessDenied), ("ret_10001", BybitRequestRejected)])
def test_a_permanent_error_mid_run_keeps_committed_pages_and_is_logged(
    db_path: Path, fake_bybit: FakeBybit, fault: str, error: type[Exception]
) -> None:
    fake_bybit.inject("ok", "ok", fault)
    with pytest.raises(error) as info:
        ingest(db_path, fake_bybit, start=first_start(fake_bybit))
    assert len(fake_bybit.log) == 3  # no retry of the failing request
    assert "rerun the same command to resume" in " ".join(info.value.__notes__)
    assert len(stored_arrays(db_path)[0]) == 2_000
    [logged] = runs(db_path)
    assert logged["status"] == "failed" and logged["rows_inserted"] == 2_000 and fault[-3:] in logged["error"]
    report = ingest(db_path, fake_bybit)  # the rerun completes the job
    assert report.rows_inserted == 2_320
    assert_table_equals(db_path, fake_bybit.closed_rows(FAKE_SERIES_KEY))


def test_bad_arguments_fail_before_any_request(db_path: Path, fake_bybit: FakeBybit) -> None:
    with pytest.raises(InvalidMarketError, match="give a start"):
        ingest(db_path, fake_bybit)
    with pytest.raises(InvalidMarketError, match="valid categories"):
        ingest_bybit(db_path, "futures", "BTCUSDT", "5", start="2026-01-01", client=fast_client(fake_bybit))
    with pytest.raises(InvalidMarketError, match="before start"):
        ingest(db_path, fake_bybit, start="2026-01-02", end="2026-01-01")
    assert fake_bybit.log == []


def test_an_unknown_symbol_is_one_request_and_a_clear_error(db_path: Path, fake_bybit: FakeBybit) -> None:
    with pytest.raises(BybitRequestRejected, match=r"10001.*Not supported symbols"):
        ingest_bybit(db_path, "linear", "NOPEUSDT", "5", start="2026-01-01", client=fast_client(fake_bybit))
    assert len(fake_bybit.log) == 1


KILLED_RUN = """
import sys
from dreamer.data.ingest import ingest_bybit
ingest_bybit(sys.argv[1], "linear", "BTCUSDT", "5", start=int(sys.argv[2]), base_url=sys.argv[3],
             max_requests_per_second=6, funding=False)
"""


def test_resume_after_kill_9(db_path: Path) -> None:
    series = KlineSeries.from_csv(SAMPLE_CSV, count=15_001)
    with FakeBybit({FAKE_SERIES_KEY: series}) as fake:
        start = int(series.open_time_ms[0])
        process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(db_path), str(start), fake.url])
        deadline = time.monotonic() + 60
        while len(fake.log) < 5 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        stored = len(stored_arrays(db_path)[0])
        assert 0 < stored < 15_000 and stored % 1_000 == 0  # whole pages only, each committed atomically
        assert runs(db_path)[0]["status"] == "running"
        fake.log.clear()
        report = ingest(db_path, fake)
        assert report.rows_inserted == 15_000 - stored and report.rows_unchanged == 0
        assert len(fake.log) == (15_000 - stored) // 1_000
        assert_table_equals(db_path, fake.closed_rows(FAKE_SERIES_KEY))
    killed, resumed = runs(db_path)
    assert killed["status"] == "interrupted" and "ended before the run finished" in killed["error"]
    assert resumed["status"] == "succeeded"
