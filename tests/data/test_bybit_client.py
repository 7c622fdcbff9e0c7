"""Data tier: the real `requests` client against the loopback fake Bybit, fault by fault."""

from __future__ import annotations

import pytest

from dreamer.data.bybit import BybitClient, RetryPolicy
from dreamer.data.errors import (
    BybitAccessDenied,
    BybitRequestRejected,
    BybitResponseError,
    BybitUnavailable,
)
from dreamer.data.markets import INTERVALS
from tests.data.kline_helpers import fast_client, rows_as_arrays
from tests.fakes.bybit_server import FakeBybit
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
