"""Code tier: parsing and checking Bybit kline pages (including four real saved responses) and funding-history
pages."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreamer.data.bybit import (
    DEFAULT_BASE_URL,
    TESTNET_BASE_URL,
    BybitClient,
    RetryPolicy,
    parse_funding_page,
    parse_kline_page,
    redact_url,
    resolve_base_url,
)
from dreamer.data.errors import BybitResponseError, InvalidMarketError
from dreamer.data.markets import INTERVALS

FIVE = INTERVALS["5"]
T0 = 1_717_488_000_000  # 2024-06-04 08:00 UTC
RAW_RESPONSES = {
    # file: (interval, rows, first closed candle (oldest), newest stored candle start)
    "newhask777_bybit-volume_46a1fdd_klines.json": ("5", 199, 1717428600000, 1717488000000),
    "newhask777_bybit-volume_d86ae7d_json_klines.json": ("5", 199, None, None),
    "newhask777_bybit-volume_18d2810_json_klines.json": ("5", 199, None, None),
    "EzequielBes_invest_4eb4019_bybit_testdata_candles.json": ("60", 1, 1786816800000, 1786816800000),
}


def payload(rows: list[list[Any]], server_time: int, symbol: str = "BTCUSDT", category: str = "linear") -> dict:
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"symbol": symbol, "category": category, "list": rows},
        "retExtInfo": {},
        "time": server_time,
    }


def row(start: int, close: str = "100.5") -> list[str]:
    return [str(start), "100", "101", "99.5", close, "12.5", "1250"]


def newest_first(count: int, open_last: bool = True) -> tuple[list[list[str]], int]:
    rows = [row(T0 + i * 300_000) for i in reversed(range(count))]
    server_time = T0 + (count - 1) * 300_000 + (120_000 if open_last else 300_000)
    return rows, server_time


@pytest.mark.parametrize("name", sorted(RAW_RESPONSES))
def test_saved_bybit_responses_parse(shared_data: Path, name: str) -> None:
    raw = json.loads((shared_data / "bybit_responses" / name).read_text())
    interval_code, closed_rows, first, last = RAW_RESPONSES[name]
    interval = INTERVALS[interval_code]
    listed = raw["result"]["list"]
    starts = [int(r[0]) for r in listed]
    page = parse_kline_page(raw, "linear", "BTCUSDT", interval, min(starts), max(starts))
    assert len(page.candles) == closed_rows
    assert page.open_candles_dropped == 1  # list[0] is the still-open candle in every saved response
    assert page.server_time_ms == raw["time"]
    times = page.candles.open_time_ms
    assert np.all(np.diff(times) == interval.length_ms)  # ascending, contiguous
    assert int(times[-1]) == max(starts) - interval.length_ms  # everything but the open candle
    if first is not None:
        assert (int(times[0]), int(times[-1])) == (first, last)
    # Values are the page's own strings, parsed exactly; turnover is kept.
    by_start = {int(r[0]): r for r in listed}
    for i in (0, len(times) - 1):
        expected = [float(x) for x in by_start[int(times[i])][1:]]
        assert page.candles.values[i].tolist() == expected


def test_saved_overlapping_responses_agree_on_closed_candles(shared_data: Path) -> None:
    """Two real pages fetched 7 hours apart: closed candles are identical; the open one changed."""
    pages = []
    for name in ("newhask777_bybit-volume_46a1fdd_klines.json", "newhask777_bybit-volume_d86ae7d_json_klines.json"):
        raw = json.loads((shared_data / "bybit_responses" / name).read_text())
        starts = [int(r[0]) for r in raw["result"]["list"]]
        pages.append(parse_kline_page(raw, "linear", "BTCUSDT", FIVE, min(starts), max(starts)).candles)
    common, a, b = np.intersect1d(pages[0].open_time_ms, pages[1].open_time_ms, return_indices=True)
    assert len(common) == 113  # 114 overlap in the raw files; 1717488300000 was open in the first one
    np.testing.assert_array_equal(pages[0].values[a], pages[1].values[b])
    assert 1717488300000 not in pages[0].open_time_ms


def test_either_order_gives_the_same_candles() -> None:
    rows, now = newest_first(10)
    window = (T0, T0 + 9 * 300_000)
    newest = parse_kline_page(payload(rows, now), "linear", "BTCUSDT", FIVE, *window)
    oldest = parse_kline_page(payload(rows[::-1], now), "linear", "BTCUSDT", FIVE, *window)
    np.testing.assert_array_equal(newest.candles.open_time_ms, oldest.candles.open_time_ms)
    np.testing.assert_array_equal(newest.candles.values, oldest.candles.values)
    assert len(newest.candles) == 9 and newest.open_candles_dropped == 1


def test_a_candle_closing_exactly_at_server_time_is_kept() -> None:
    rows, now = newest_first(3, open_last=False)
    page = parse_kline_page(payload(rows, now), "linear", "BTCUSDT", FIVE, T0, T0 + 600_000)
    assert len(page.candles) == 3 and page.open_candles_dropped == 0


def test_empty_page() -> None:
    page = parse_kline_page(payload([], T0), "linear", "BTCUSDT", FIVE, T0, T0 + 300_000)
    assert len(page.candles) == 0


def corrupt(change: str) -> dict:
    rows, now = newest_first(5)
    body = payload(copy.deepcopy(rows), now)
    listed = body["result"]["list"]
    if change == "symbol":
        body["result"]["symbol"] = "ETHUSDT"
    elif change == "category":
        body["result"]["category"] = "spot"
    elif change == "no_time":
        del body["time"]
    elif change == "no_list":
        del body["result"]["list"]
    elif change == "short_row":
        listed[2] = listed[2][:6]
    elif change == "abc":
        listed[1][4] = "abc"
    elif change == "empty":
        listed[1][5] = ""
    elif change == "null":
        listed[1][3] = None
    elif change == "bool":
        listed[1][3] = True
    elif change == "nan":
        listed[1][2] = "NaN"
    elif change == "inf_turnover":
        listed[1][6] = "Infinity"
    elif change == "negative_volume":
        listed[1][5] = "-1"
    elif change == "high_below_close":
        listed[1][2] = "99.9"
    elif change == "duplicate":
        listed.append(list(listed[0]))
    elif change == "outside":
        listed.append(row(T0 - 300_000))
    elif change == "misaligned":
        listed[1][0] = str(int(listed[1][0]) + 1)
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("symbol", "symbol 'ETHUSDT', not 'BTCUSDT'"),
        ("category", "category 'spot'"),
        ("no_time", "no integer 'time'"),
        ("no_list", "'result.list' is missing"),
        ("short_row", "row 2 is not a list of 7 fields"),
        ("abc", "row 1 close: 'abc'"),
        ("empty", "row 1 volume: ''"),
        ("null", "every field must be a string"),
        ("bool", "every field must be a string"),
        ("nan", "must be finite"),
        ("inf_turnover", "turnover must be a finite number"),
        ("negative_volume", "volume must be a finite number >= 0"),
        ("high_below_close", "high is below"),
        ("duplicate", "duplicate"),
        ("outside", "outside the window"),
        ("misaligned", "not the start of a 5 candle"),
    ],
)
def test_bad_pages_are_rejected_never_zeroed(change: str, message: str) -> None:
    with pytest.raises(BybitResponseError, match=message.replace("(", r"\(").replace("'", "'")):
        parse_kline_page(corrupt(change), "linear", "BTCUSDT", FIVE, T0, T0 + 4 * 300_000)


def test_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DREAMER_BYBIT_URL", raising=False)
    assert resolve_base_url() == DEFAULT_BASE_URL
    assert resolve_base_url(testnet=True) == TESTNET_BASE_URL
    monkeypatch.setenv("DREAMER_BYBIT_URL", "http://127.0.0.1:8080/")
    assert resolve_base_url() == "http://127.0.0.1:8080"
    assert resolve_base_url("https://api.bytick.com") == "https://api.bytick.com"
    with pytest.raises(InvalidMarketError):
        resolve_base_url("ftp://example")
    with pytest.raises(InvalidMarketError):
        resolve_base_url("https://api.bybit.com", testnet=True)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@api.bybit.com", "https://***@api.bybit.com"),
        ("http://token@127.0.0.1:8080/v5/market/kline", "http://***@127.0.0.1:8080/v5/market/kline"),
        ("https://user:p@ss@host", "https://***@host"),  # an unencoded @ in the password: up to the last one
        ("https://host/path?mail=a@b", "https://host/path?mail=a@b"),  # an @ after the host is no credential
        ("https://api.bybit.com", "https://api.bybit.com"),
        ("/data/klines.csv", "/data/klines.csv"),
    ],
)
def test_credentials_in_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_invalid_base_url_is_echoed_without_its_credentials() -> None:
    with pytest.raises(InvalidMarketError, match=r"'ftp://\*\*\*@example' must look like") as caught:
        resolve_base_url("ftp://user:s3cret@example")
    assert "s3cret" not in str(caught.value)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    client = BybitClient(retry=RetryPolicy(backoff_base_s=0.5, max_backoff_s=4.0))
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)):
        waits = [client._backoff_s(attempt) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not constant


# --- funding history ----------------------------------------------------------------------------------

H8 = 8 * 3_600_000


def funding_payload(items: list[dict[str, Any]], server_time: int, category: str = "linear") -> dict:
    """A funding-history response as Bybit shapes it: no symbol in `result`, one in every item."""
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"category": category, "list": items},
        "retExtInfo": {},
        "time": server_time,
    }


def settlement(time_ms: int, rate: str = "0.0001", symbol: str = "BTCUSDT") -> dict[str, Any]:
    return {"symbol": symbol, "fundingRate": rate, "fundingRateTimestamp": str(time_ms)}


def funding_page(items: list[dict[str, Any]]) -> Any:
    return parse_funding_page(funding_payload(items, T0 + 10 * H8), "linear", "BTCUSDT", T0, T0 + 5 * H8)


def test_funding_pages_in_either_order_give_the_same_settlements() -> None:
    items = [settlement(T0 + i * H8, rate) for i, rate in enumerate(["0.0001", "-0.0000294", "0.00005", "1e-4"])]
    newest_first = funding_page(items[::-1])
    oldest_first = funding_page(items)
    for page in (newest_first, oldest_first):
        assert page.rates.funding_time_ms.tolist() == [T0 + i * H8 for i in range(4)]
        assert page.rates.funding_rate.tolist() == [0.0001, -0.0000294, 0.00005, 0.0001]
        assert page.server_time_ms == T0 + 10 * H8
    assert len(funding_page([]).rates) == 0


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([settlement(T0, symbol="ETHUSDT")], "item 0 is for symbol 'ETHUSDT', not 'BTCUSDT'"),
        ([{"symbol": "BTCUSDT", "fundingRateTimestamp": str(T0)}], "item 0 is not an object of strings"),
        ([settlement(T0) | {"fundingRate": 0.0001}], "item 0 is not an object of strings"),
        ([["BTCUSDT", "0.0001", str(T0)]], "item 0 is not an object of strings"),
        ([settlement(T0, "abc")], "item 0 fundingRate: 'abc'"),
        ([settlement(T0, "")], "item 0 fundingRate: ''"),
        ([settlement(T0, "NaN")], "item 0 fundingRate: 'NaN'"),
        ([settlement(T0, " 0.0001")], "item 0 fundingRate: ' 0.0001'"),
        ([settlement(T0, "1e999")], "funding_rate must be a finite number"),
        ([settlement(T0) | {"fundingRateTimestamp": "1717488000000.0"}], "item 0 fundingRateTimestamp"),
        ([settlement(T0), settlement(T0)], "duplicate"),
        ([settlement(T0 - H8)], "outside the window"),
        ([settlement(T0 + 6 * H8)], "outside the window"),
    ],
)
def test_bad_funding_pages_are_rejected_never_zeroed(items: list[Any], message: str) -> None:
    with pytest.raises(BybitResponseError, match=message.replace("(", r"\(")):
        funding_page(items)


def test_funding_page_envelope_is_checked() -> None:
    window = ("linear", "BTCUSDT", T0, T0 + 5 * H8)
    with pytest.raises(BybitResponseError, match="category 'inverse', not 'linear'"):
        parse_funding_page(funding_payload([settlement(T0)], T0 + H8, category="inverse"), *window)
    without_time = funding_payload([settlement(T0)], T0 + H8)
    del without_time["time"]
    with pytest.raises(BybitResponseError, match="no integer 'time'"):
        parse_funding_page(without_time, *window)
    with pytest.raises(BybitResponseError, match="after the server's time"):
        parse_funding_page(funding_payload([settlement(T0 + 2 * H8)], T0 + H8), *window)


def test_spot_has_no_funding_and_no_request_is_made() -> None:
    client = BybitClient(base_url="http://127.0.0.1:9")  # nothing listens there: a request would fail
    with pytest.raises(InvalidMarketError, match="category 'spot' has no funding"):
        client.fetch_funding("spot", "BTCUSDT", T0, T0 + H8)
    assert client.stats.requests == 0
