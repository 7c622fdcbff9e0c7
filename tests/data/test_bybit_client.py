"""Data tier: the real `requests` client against the loopback fake Bybit, fault by fault, for klines and for
the funding history (one request layer under both)."""

from __future__ import annotations

import pytest
import requests

from dreamer.data.bybit import FUNDING_LIMIT, FUNDING_WINDOW_MS, BybitClient, RetryPolicy
from dreamer.data.errors import (
    BybitAccessDenied,
    BybitRequestRejected,
    BybitResponseError,
    BybitUnavailable,
    InvalidMarketError,
)
from dreamer.data.markets import INTERVALS
from tests.conftest import FAKE_FUNDING_KEY
from tests.data.kline_helpers import fast_client, generated_funding_rows, rows_as_arrays
from tests.fakes.bybit_server import FakeBybit, FundingSeries
from tests.fakes.clock import FakeClock

FIVE = INTERVALS["5"]


def first_window(fake: FakeBybit, candles: int = 1000) -> tuple[int, int]:
    start = int(fake.series[("linear", "BTCUSDT", "5")].open_time_ms[0])
    return start, FIVE.shift_one(start, candles - 1)


def fetch(client: BybitClient, fake: FakeBybit, candles: int = 1000):  # type: ignore[no-untyped-def]
    return client.fetch_window("linear", "BTCUSDT", FIVE, *first_window(fake, candles))


def test_a_window_comes_back_whole_and_exact(fake_bybit: FakeBybit) -> None:
    page = fetch(fast_client(fake_bybit), fake_bybit)
    times, values = rows_as_arrays(fake_bybit.series[("linear", "BTCUSDT", "5")].rows[:1000])
    assert page.candles.open_time_ms.tolist() == times.tolist()
    assert (page.candles.values == values).all()
    assert fake_bybit.log[0].params["limit"] == "1000"


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("http_403", BybitAccessDenied, "HTTP 403.*geo-block or IP ban.*CloudFront"),
        ("ret_10001", BybitRequestRejected, "retCode 10001: params error"),
        ("http_404", BybitRequestRejected, "HTTP 404.*base URL"),
    ],
)
def test_permanent_errors_fail_after_exactly_one_request(
    fake_bybit: FakeBybit, fault: str, error: type[Exception], message: str
) -> None:
    fake_bybit.inject(fault)
    clock = FakeClock()
    client = fast_client(fake_bybit, clock)
    with pytest.raises(error, match=message):
        fetch(client, fake_bybit)
    assert len(fake_bybit.log) == 1
    assert client.stats.requests == 1 and client.stats.retries == 0
    assert not any(s > 0.0 for s in clock.sleeps)  # no backoff before giving up


def test_403_message_is_readable_text_not_html(fake_bybit: FakeBybit) -> None:
    fake_bybit.inject("http_403")
    with pytest.raises(BybitAccessDenied) as info:
        fetch(fast_client(fake_bybit), fake_bybit)
    assert "<" not in str(info.value) and "block access from your country" in str(info.value)


RETRYABLE = [
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "ret_10000",
    "ret_10016",
    "ret_10006_no_header",
    "truncated",
    "drop",
    "slow",
]


@pytest.mark.parametrize("fault", RETRYABLE)
def test_transient_faults_are_retried_with_backoff(fake_bybit: FakeBybit, fault: str) -> None:
    fake_bybit.inject(fault, fault)
    clock = FakeClock()
    client = fast_client(fake_bybit, clock)
    page = fetch(client, fake_bybit)
    assert len(page.candles) == 1000
    assert client.stats.requests == 3 and client.stats.retries == 2
    assert [record.fault for record in fake_bybit.log] == [fault, fault, None]
    backoffs = [s for s in clock.sleeps if s != pytest.approx(0.1)]  # 0.1 s is pacing at 10 req/s
    assert len(backoffs) == 2
    assert 0.25 <= backoffs[0] <= 0.5 and 0.5 <= backoffs[1] <= 1.0  # base 0.5 s, doubling, jittered


def test_every_retryable_fault_in_one_run(fake_bybit: FakeBybit) -> None:
    fake_bybit.inject(*RETRYABLE[:3])
    client = fast_client(fake_bybit, retry=RetryPolicy(max_attempts=4, backoff_base_s=0.01))
    assert len(fetch(client, fake_bybit).candles) == 1000
    fake_bybit.inject(*RETRYABLE[3:6])
    assert len(fetch(client, fake_bybit).candles) == 1000
    fake_bybit.inject(*RETRYABLE[6:9])
    assert len(fetch(client, fake_bybit).candles) == 1000
    assert client.stats.retries == 9


def test_rate_limit_waits_until_the_reset_timestamp(fake_bybit: FakeBybit) -> None:
    fake_bybit.reset_after_ms = 3_000
    fake_bybit.inject("ret_10006")
    clock = FakeClock()
    client = fast_client(fake_bybit, clock)
    assert len(fetch(client, fake_bybit).candles) == 1000
    waits = [s for s in clock.sleeps if s != pytest.approx(0.1)]
    assert len(waits) == 1 and 2.5 <= waits[0] <= 3.1  # the header's reset time, not the 0.5 s backoff


def test_retries_are_bounded(fake_bybit: FakeBybit) -> None:
    fake_bybit.inject(*["http_502"] * 10)
    client = fast_client(fake_bybit)
    with pytest.raises(BybitUnavailable, match="failed 4 times in a row; last: HTTP 502"):
        fetch(client, fake_bybit)
    assert len(fake_bybit.log) == 4 and client.stats.retries == 3


@pytest.mark.parametrize(
    "fault",
    [
        "wrong_symbol",
        "wrong_category",
        "missing_time",
        "short_row",
        "bad_number",
        "empty_number",
        "nan_number",
        "number_not_string",
        "outside_window",
        "duplicate_row",
    ],
)
def test_malformed_pages_fail_loudly_without_storing_anything(fake_bybit: FakeBybit, fault: str) -> None:
    fake_bybit.inject(fault)
    with pytest.raises(BybitResponseError):
        fetch(fast_client(fake_bybit), fake_bybit)
    assert len(fake_bybit.log) == 1


def test_client_side_pacing(fake_bybit: FakeBybit) -> None:
    clock = FakeClock()
    client = fast_client(fake_bybit, clock, max_requests_per_second=4.0)
    for _ in range(5):
        fetch(client, fake_bybit, candles=10)
    assert clock.now == pytest.approx(4 * 0.25)  # first request at once, then one per 1/4 s
    unpaced = FakeClock()
    client = fast_client(fake_bybit, unpaced, max_requests_per_second=None)
    for _ in range(5):
        fetch(client, fake_bybit, candles=10)
    assert unpaced.sleeps == []


def test_windows_larger_than_the_limit_are_refused_before_any_request(fake_bybit: FakeBybit) -> None:
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        fetch(fast_client(fake_bybit), fake_bybit, candles=1001)
    assert fake_bybit.log == []


# --- funding history ----------------------------------------------------------------------------------

SAMPLE_FUNDING_START = 1_767_225_600_000  # 2026-01-01 00:00, the sample's first settlement


def fetch_funding(client: BybitClient, start_ms: int = SAMPLE_FUNDING_START, hours: int = 199):  # type: ignore[no-untyped-def]
    return client.fetch_funding("linear", "BTCUSDT", start_ms, start_ms + hours * 3_600_000 - 1)


def test_a_funding_window_comes_back_whole_and_exact(fake_bybit: FakeBybit) -> None:
    page = fetch_funding(fast_client(fake_bybit))
    served = fake_bybit.funding[FAKE_FUNDING_KEY].rows[:25]  # 199 h from 00:00 holds 25 settlements
    assert page.rates.funding_time_ms.tolist() == [int(time_ms) for time_ms, _ in served]
    assert page.rates.funding_rate.tolist() == [float(rate) for _, rate in served]
    [request] = fake_bybit.log
    assert request.path == "/v5/market/funding/history"
    assert request.params == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "startTime": str(SAMPLE_FUNDING_START),
        "endTime": str(SAMPLE_FUNDING_START + FUNDING_WINDOW_MS - 1),  # always with startTime
        "limit": "200",
    }


def test_the_fake_refuses_start_time_alone_as_bybit_does(fake_bybit: FakeBybit) -> None:
    url = f"{fake_bybit.url}/v5/market/funding/history"
    alone = {"category": "linear", "symbol": "BTCUSDT", "startTime": str(SAMPLE_FUNDING_START)}
    body = requests.get(url, params=alone, timeout=5).json()
    assert body["retCode"] == 10001 and "endTime" in body["retMsg"]
    latest = requests.get(url, params={"category": "linear", "symbol": "BTCUSDT"}, timeout=5).json()
    settled = fake_bybit.settled_rows(FAKE_FUNDING_KEY)
    assert [item["fundingRateTimestamp"] for item in latest["result"]["list"]] == [t for t, _ in settled[-200:]][::-1]
    spot = requests.get(url, params={"category": "spot", "symbol": "BTCUSDT"}, timeout=5).json()
    assert spot["retCode"] == 10001


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_a_window_denser_than_the_limit_is_split_never_trusted(order: str) -> None:
    """Settlements every 30 min (denser than Bybit's hourly minimum): a 199 h window holds 398 of them, more
    than a page; the client discards each full page and fetches the window's halves, whatever the order."""
    start = SAMPLE_FUNDING_START
    rows = [(str(start + i * 1_800_000), f"0.0000{i % 10}1") for i in range(600)]
    with FakeBybit({}, {FAKE_FUNDING_KEY: FundingSeries.from_rows(rows)}, order=order) as fake:
        page = fetch_funding(fast_client(fake))
        assert page.rates.funding_time_ms.tolist() == [int(t) for t, _ in rows[:398]]
        full = [record for record in fake.log if record.rows == FUNDING_LIMIT]
        kept = [record for record in fake.log if record.rows < FUNDING_LIMIT]
        assert len(full) == 1 and len(kept) == 2  # the full page was split in two, each then complete
        assert sum(record.rows for record in kept) == 398


@pytest.mark.parametrize("fault", RETRYABLE)
def test_funding_requests_share_the_retry_layer(fake_bybit: FakeBybit, fault: str) -> None:
    fake_bybit.inject(fault, fault)
    clock = FakeClock()
    client = fast_client(fake_bybit, clock)
    assert len(fetch_funding(client).rates) == 25
    assert client.stats.requests == 3 and client.stats.retries == 2
    assert len([s for s in clock.sleeps if s != pytest.approx(0.1)]) == 2  # two backoffs


@pytest.mark.parametrize(("fault", "error"), [("http_403", BybitAccessDenied), ("ret_10001", BybitRequestRejected)])
def test_funding_permanent_errors_fail_after_one_request(
    fake_bybit: FakeBybit, fault: str, error: type[Exception]
) -> None:
    fake_bybit.inject(fault)
    with pytest.raises(error):
        fetch_funding(fast_client(fake_bybit))
    assert len(fake_bybit.log) == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("wrong_symbol", "item .* is for symbol 'ETHUSDT'"),
        ("wrong_category", "category 'inverse', not 'linear'"),
        ("missing_time", "no integer 'time'"),
        ("short_row", "not an object of strings"),
        ("bad_number", "fundingRate: 'abc'"),
        ("empty_number", "fundingRate: ''"),
        ("nan_number", "fundingRate: 'NaN'"),
        ("number_not_string", "not an object of strings"),
        ("outside_window", "outside the window"),
        ("duplicate_row", "duplicate"),
    ],
)
def test_malformed_funding_pages_fail_loudly(fake_bybit: FakeBybit, fault: str, message: str) -> None:
    fake_bybit.inject(fault)
    with pytest.raises(BybitResponseError, match=message):
        fetch_funding(fast_client(fake_bybit))
    assert len(fake_bybit.log) == 1


def test_one_pacing_for_klines_and_funding(fake_bybit: FakeBybit) -> None:
    clock = FakeClock()
    client = fast_client(fake_bybit, clock, max_requests_per_second=4.0)
    for _ in range(3):
        fetch(client, fake_bybit, candles=10)
        fetch_funding(client, hours=24)
    assert clock.now == pytest.approx(5 * 0.25)  # six requests, one every 1/4 s, whichever the endpoint


def test_spot_funding_is_refused_before_any_request(fake_bybit: FakeBybit) -> None:
    with pytest.raises(InvalidMarketError, match=r"spot' has no funding.*linear, inverse"):
        fast_client(fake_bybit).fetch_funding("spot", "BTCUSDT", SAMPLE_FUNDING_START, SAMPLE_FUNDING_START + 1)
    assert fake_bybit.log == []


def test_a_generated_history_in_one_window() -> None:
    """The generator the ingestion tests use yields what the fake serves and the client parses."""
    rows = generated_funding_rows(30, SAMPLE_FUNDING_START)
    with FakeBybit({}, {FAKE_FUNDING_KEY: FundingSeries.from_rows(rows)}) as fake:
        page = fetch_funding(fast_client(fake), hours=24 * 10)
    assert page.rates.funding_rate.tolist() == [float(rate) for _, rate in rows]
