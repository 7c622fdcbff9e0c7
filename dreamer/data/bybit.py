"""A client for Bybit's public market endpoints, built on `requests`: one request layer (pacing, retries,
typed errors) under two endpoints, `GET /v5/market/kline` and `GET /v5/market/funding/history`.

The request layer, shared by both endpoints (one client paces all of its requests, as Bybit's IP limit
counts them together):
* Business errors are HTTP 200 with `retCode != 0`. Transient failures (timeouts, dropped connections,
  HTTP 429/5xx, retCode 10000/10016, a truncated body) are retried with exponential backoff and jitter;
  rate limiting (retCode 10006) waits until `X-Bapi-Limit-Reset-Timestamp`. HTTP 403 (geo-block or IP
  ban, often an HTML page) and retCode 10001 (bad parameters) fail at once with a typed error.
* Every page is checked before anything of it is used: shape, echo fields, numbers (an unparsable number
  is an error, never a 0), times inside the window asked for, no duplicates. Either list order is accepted.

Klines (`start`/`end`, inclusive candle start times in ms; `start` is floored to the candle containing it):
* `limit` is 1..1000. What Bybit returns when `[start, end]` holds more than `limit` candles is
  undocumented, so this client only ever asks for windows of at most `limit` candles: every request
  has exactly one correct answer, whatever the server's ordering or truncation rule.
* Pages come newest-first, every number is a string, and the newest candle may still be open: a candle
  is kept only if `start + interval <= time`, the envelope's server time.

Funding history (`startTime`/`endTime`, inclusive settlement times in ms; categories linear and inverse):
* `limit` is 1..200. `startTime` alone is an error, so both bounds are always sent. Settlements follow
  a schedule the client cannot know in advance (8 h for most symbols, 4 h or 1 h for some, and it can
  change), so a window's count is unknown: a page with fewer than `limit` settlements is complete, and
  a full one, whose missing part would be undocumented, is split in two and fetched again.
* Items are `{symbol, fundingRate, fundingRateTimestamp}`, all strings; the symbol is echoed per item.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import requests

from dreamer.data.candles import Candles, collect_problems, row_problems
from dreamer.data.errors import (
    BybitAccessDenied,
    BybitRequestRejected,
    BybitResponseError,
    BybitUnavailable,
    InvalidMarketError,
)
from dreamer.data.funding import FundingRates, funding_row_problems
from dreamer.data.markets import Interval, format_ms, require_funding_category

DEFAULT_BASE_URL = "https://api.bybit.com"
TESTNET_BASE_URL = "https://api-testnet.bybit.com"
BASE_URL_ENV = "DREAMER_BYBIT_URL"
KLINE_PATH = "/v5/market/kline"
MAX_LIMIT = 1000
FUNDING_PATH = "/v5/market/funding/history"
FUNDING_LIMIT = 200
HOUR_MS = 3_600_000
FUNDING_WINDOW_MS = (FUNDING_LIMIT - 1) * HOUR_MS
"""The span of time one funding request of an ingestion run asks for, `[start, start + span - 1 ms]`. Bybit
settles at most hourly, on the hour, so such a window holds at most 199 settlements and its page is never
full; were the schedule ever denser, the full page would be split (`BybitClient.fetch_funding`), so
correctness never rests on this, only the number of requests does."""
RETRYABLE_RET_CODES = {10000: "server timeout", 10016: "server error"}
RATE_LIMIT_RET_CODES = {10006: "too many visits", 10018: "IP rate limit exceeded"}
RESET_HEADER = "X-Bapi-Limit-Reset-Timestamp"


def resolve_base_url(base_url: str | None = None, testnet: bool = False) -> str:
    """`base_url` if given, else the testnet URL if asked, else `$DREAMER_BYBIT_URL`, else mainnet."""
    if base_url and testnet:
        raise InvalidMarketError("give either a base URL or testnet, not both")
    url = base_url or (TESTNET_BASE_URL if testnet else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
    if not re.match(r"^https?://[^/\s]+", url):
        raise InvalidMarketError(f"base URL {redact_url(url)!r} must look like https://host[:port]")
    return url.rstrip("/")


# The userinfo of a URL: after the scheme, up to the last "@" before the host ends ("/", "?" or "#"), as
# urllib.parse.urlsplit reads it.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """`url` with its credentials (`user:password@`) replaced by `***@`: the only form of a URL that may be
    printed, stored (`ingestion_runs`) or logged (MLflow). Anything else, a file path included, is unchanged."""
    return _USERINFO.sub(r"\1***@", url)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: attempt k (1-based) of a transient failure waits about `base * 2**(k-1)` seconds,
    capped at `max_backoff_s`, with half of it jittered; 10006 waits until the server's reset time."""

    max_attempts: int = 6
    backoff_base_s: float = 0.5
    max_backoff_s: float = 30.0
    max_rate_limit_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_base_s < 0 or self.max_backoff_s < 0:
            raise InvalidMarketError(f"invalid retry policy {self}")


@dataclass(frozen=True)
class KlinePage:
    """The closed candles of one window (ascending), what was dropped as still open, and the server time."""

    candles: Candles
    open_candles_dropped: int
    server_time_ms: int


@dataclass(frozen=True)
class FundingPage:
    """The settlements of one window (ascending) and the server time of the (last) request."""

    rates: FundingRates
    server_time_ms: int


@dataclass
class _Transient(Exception):
    reason: str
    wait_s: float | None = None  # the server said how long to wait


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0


@dataclass
class BybitClient:
    """Fetches one window of klines or of funding settlements per call, through one request layer
    (`_get`: pacing, retries, typed errors). Time functions are injectable so tests never sleep.

    `max_requests_per_second` paces requests client-side (None or 0 disables pacing); Bybit allows 600
    requests per 5 s per IP, the default 10/s stays far below it.
    """

    base_url: str = field(default_factory=resolve_base_url)
    timeout_s: float = 10.0
    max_requests_per_second: float | None = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    stats: RequestStats = field(default_factory=RequestStats)
    _next_request_at: float = field(default=0.0, repr=False)

    def fetch_window(self, category: str, symbol: str, interval: Interval, start_ms: int, end_ms: int) -> KlinePage:
        """Closed candles with start in `[start_ms, end_ms]` (aligned, at most `MAX_LIMIT` candles)."""
        candles_in_window = int(interval.count(start_ms, end_ms))
        if not 1 <= candles_in_window <= MAX_LIMIT:
            raise ValueError(f"a window must hold 1..{MAX_LIMIT} candles, this one holds {candles_in_window}")
        params = {
            "category": category,
            "symbol": symbol,
            "interval": interval.code,
            "start": str(start_ms),
            "end": str(end_ms),
            "limit": str(candles_in_window),
        }
        payload = self._get(KLINE_PATH, params)
        return parse_kline_page(payload, category, symbol, interval, start_ms, end_ms)

    def fetch_funding(self, category: str, symbol: str, start_ms: int, end_ms: int) -> FundingPage:
        """Every funding settlement with time in `[start_ms, end_ms]`, complete whatever its count.

        A page with fewer than `FUNDING_LIMIT` settlements holds the whole window. Which settlements Bybit
        leaves out of a fuller window is undocumented, so a full page is discarded and the two halves of
        the window are fetched instead (a window narrower than the limit in milliseconds cannot be
        fuller than its page: times are unique). Spot has no funding: `InvalidMarketError`.
        """
        require_funding_category(category)
        if end_ms < start_ms:
            raise ValueError(f"a funding window must not end before it starts: [{start_ms}, {end_ms}]")
        params = {
            "category": category,
            "symbol": symbol,
            "startTime": str(start_ms),
            "endTime": str(end_ms),  # always: Bybit rejects startTime alone
            "limit": str(FUNDING_LIMIT),
        }
        page = parse_funding_page(self._get(FUNDING_PATH, params), category, symbol, start_ms, end_ms)
        if len(page.rates) < FUNDING_LIMIT or end_ms - start_ms < FUNDING_LIMIT:
            return page
        middle = start_ms + (end_ms - start_ms) // 2
        first = self.fetch_funding(category, symbol, start_ms, middle)
        second = self.fetch_funding(category, symbol, middle + 1, end_ms)
        return FundingPage(FundingRates.concat([first.rates, second.rates]), second.server_time_ms)

    # -- transport: the one request layer of every endpoint -------------------------------------------

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The `retCode == 0` payload of `GET path?params`, after pacing and any retries."""
        url = self.base_url + path
        for attempt in range(1, self.retry.max_attempts + 1):
            self._pace()
            self.stats.requests += 1
            try:
                return self._attempt(url, params)
            except _Transient as transient:
                if attempt == self.retry.max_attempts:
                    raise BybitUnavailable(
                        f"GET {redact_url(url)} {_describe(params)} failed {attempt} times in a row; "
                        f"last: {transient.reason}. Committed pages are kept; rerun later to resume."
                    ) from None
                wait_s = transient.wait_s if transient.wait_s is not None else self._backoff_s(attempt)
                self.stats.retries += 1
                self.stats.waited_s += wait_s
                self.sleep(wait_s)
        raise AssertionError("unreachable")

    def _attempt(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        shown = redact_url(url)  # `url` authenticates the request; messages show this
        try:
            response = self.session.get(url, params=params, timeout=self.timeout_s)
            body = response.content
        except requests.Timeout as exc:
            raise _Transient(f"timed out after {self.timeout_s:g} s ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"connection failed: {exc}") from None
        status = response.status_code
        if status == 403:
            raise BybitAccessDenied(
                f"HTTP 403 from {shown}: access denied. Bybit refuses requests from this IP address or region "
                f"(geo-block or IP ban); retrying will not help. Response: {_snippet(body)}"
            )
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", self._reset_wait_s(response))
        if status != 200:
            raise BybitRequestRejected(
                f"HTTP {status} from {shown} {_describe(params)} (is the base URL right?): {_snippet(body)}"
            )
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Transient(f"HTTP 200 with a body that is not complete JSON ({len(body)} bytes)") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("retCode"), int):
            raise BybitResponseError(f"{shown} {_describe(params)}: response has no integer retCode: {_snippet(body)}")
        code, message = payload["retCode"], payload.get("retMsg")
        if code == 0:
            return payload
        if code in RETRYABLE_RET_CODES:
            raise _Transient(f"retCode {code} ({RETRYABLE_RET_CODES[code]}): {message}")
        if code in RATE_LIMIT_RET_CODES:
            wait_s = self._reset_wait_s(response)
            raise _Transient(f"retCode {code} ({RATE_LIMIT_RET_CODES[code]}): {message}", wait_s)
        raise BybitRequestRejected(
            f"Bybit rejected {shown} {_describe(params)} with retCode {code}: {message}. "
            "Check the symbol, category and other parameters (retrying will not help)."
        )

    def _pace(self) -> None:
        if not self.max_requests_per_second:
            return
        now = self.monotonic()
        if now < self._next_request_at:
            self.sleep(self._next_request_at - now)
            now = self._next_request_at
        self._next_request_at = now + 1.0 / self.max_requests_per_second

    def _backoff_s(self, attempt: int) -> float:
        ceiling = min(self.retry.max_backoff_s, self.retry.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _reset_wait_s(self, response: requests.Response) -> float | None:
        """Seconds until the rate-limit window resets, from Bybit's header (epoch ms), if it sent one."""
        header = response.headers.get(RESET_HEADER)
        if header is None or not header.strip().isdigit():
            return None
        wait_s = int(header) / 1000.0 - self.wall_clock()
        return min(max(wait_s, 0.0) + 0.05, self.retry.max_rate_limit_wait_s)


def parse_kline_page(
    payload: dict[str, Any], category: str, symbol: str, interval: Interval, start_ms: int, end_ms: int
) -> KlinePage:
    """Check a `retCode == 0` kline response against the request and return its closed candles.

    Raises `BybitResponseError` naming the problem for a wrong shape, wrong echo fields, unparsable or
    inconsistent numbers, candles outside the window or duplicated; nothing of such a page is kept.
    """
    where = f"kline page {category} {symbol} {interval.code} [{format_ms(start_ms)} .. {format_ms(end_ms)}]"
    rows, server_time = _checked_envelope(
        payload, where, {"symbol": symbol, "category": category}, "needed to drop the open candle"
    )
    if not rows:
        return KlinePage(Candles.empty(), 0, server_time)
    times, values = _parse_rows(rows, where)
    candles = Candles(times, values).sorted()  # newest-first on Bybit; either order is accepted
    with np.errstate(invalid="ignore"):
        checks = [
            ((candles.open_time_ms < start_ms) | (candles.open_time_ms > end_ms), "candle {} is outside the window"),
            (~np.isfinite(candles.values[:, 5]), "turnover must be a finite number"),
        ]
    problems = collect_problems(checks, candles.open_time_ms)
    if not problems:
        problems = row_problems(candles, interval)
    if problems:
        raise BybitResponseError(
            f"{where}: {problems.bad_rows} bad candle(s):\n{problems.describe(lambda row: f'row {row}')}"
        )
    closed = interval.shift(candles.open_time_ms, 1) <= server_time
    return KlinePage(candles[closed], int((~closed).sum()), server_time)


def parse_funding_page(payload: dict[str, Any], category: str, symbol: str, start_ms: int, end_ms: int) -> FundingPage:
    """Check a `retCode == 0` funding-history response against the request and return its settlements.

    Raises `BybitResponseError` naming the problem for a wrong shape, a wrong category or symbol echo,
    unparsable numbers, settlements outside the window, after the server's time, or duplicated."""
    where = f"funding page {category} {symbol} [{format_ms(start_ms)} .. {format_ms(end_ms)}]"
    items, server_time = _checked_envelope(payload, where, {"category": category}, "needed to bound the history")
    rates = _parse_funding_items(items, symbol, where).sorted()  # newest-first on Bybit; either order is accepted
    times = rates.funding_time_ms
    problems = collect_problems(
        [
            ((times < start_ms) | (times > end_ms), "settlement {} is outside the window"),
            (times > server_time, "settlement {} is after the server's time"),
        ],
        times,
    )
    if not problems:
        problems = funding_row_problems(rates)
    if problems:
        raise BybitResponseError(
            f"{where}: {problems.bad_rows} bad settlement(s):\n{problems.describe(lambda row: f'settlement {row}')}"
        )
    return FundingPage(rates, server_time)


def _checked_envelope(
    payload: dict[str, Any], where: str, echo: dict[str, str], time_use: str
) -> tuple[list[Any], int]:
    """`result.list` and the envelope's server `time` of a page whose `result` echoes `echo`."""
    result = payload.get("result")
    server_time = payload.get("time")
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise BybitResponseError(f"{where}: 'result.list' is missing or not a list")
    if not isinstance(server_time, int) or isinstance(server_time, bool):
        raise BybitResponseError(f"{where}: the envelope has no integer 'time' ({time_use})")
    for key, expected in echo.items():
        if result.get(key) != expected:
            raise BybitResponseError(f"{where}: the page is for {key} {result.get(key)!r}, not {expected!r}")
    return result["list"], server_time


FUNDING_FIELDS = ("symbol", "fundingRate", "fundingRateTimestamp")
EPOCH_MS_TEXT = re.compile(r"\d{1,15}")
DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
"""How Bybit writes numbers (e.g. "0.0001", "-0.0000294"): anything else, "NaN" and "" included, is refused."""


def _parse_funding_items(items: list[Any], symbol: str, where: str) -> FundingRates:
    """Items `{symbol, fundingRate, fundingRateTimestamp}` (strings) -> settlements in page order.

    A page holds at most 200 items, so plain Python is fast enough and can name each bad field."""
    times = np.empty(len(items), np.int64)
    rates = np.empty(len(items), np.float64)
    unparsable: list[str] = []
    for i, item in enumerate(items):
        if type(item) is not dict or not all(isinstance(item.get(key), str) for key in FUNDING_FIELDS):
            raise BybitResponseError(f"{where}: item {i} is not an object of strings {FUNDING_FIELDS}: {item!r:.200}")
        if item["symbol"] != symbol:
            raise BybitResponseError(f"{where}: item {i} is for symbol {item['symbol']!r}, not {symbol!r}")
        stamp, rate = item["fundingRateTimestamp"], item["fundingRate"]
        if EPOCH_MS_TEXT.fullmatch(stamp):
            times[i] = int(stamp)
        else:
            unparsable.append(f"  item {i} fundingRateTimestamp: {stamp!r:.40}")
        if DECIMAL_TEXT.fullmatch(rate):
            rates[i] = float(rate)
        else:
            unparsable.append(f"  item {i} fundingRate: {rate!r:.40}")
    if unparsable:
        raise BybitResponseError(f"{where}: unparsable numbers:\n" + "\n".join(unparsable[:10]))
    return FundingRates(times, rates)


ROW_TYPE = pa.list_(pa.string(), 7)  # [startTime, open, high, low, close, volume, turnover], all strings


def _parse_rows(rows: list[Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """`rows` (lists of 7 strings) -> (start times [N] int64, values [N, 6] float64), parsed by Arrow in C.

    Arrow rejects rows of another length, non-string fields and text that is not a number; the slow
    Python path below runs only then, to say exactly which row and field is wrong.
    """
    try:
        cells = pa.array(rows, type=ROW_TYPE)
        if cells.null_count or cells.values.null_count:
            raise pa.ArrowTypeError("null field")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != 7:
                raise BybitResponseError(f"{where}: row {i} is not a list of 7 fields: {row!r:.200}") from None
        raise BybitResponseError(f"{where}: every field must be a string, as Bybit sends them") from None
    try:
        times = pc.cast(pc.list_element(cells, 0), pa.int64()).to_numpy()
        values = pc.cast(cells.values, pa.float64()).to_numpy().reshape(-1, 7)[:, 1:]
    except pa.ArrowInvalid:
        raise BybitResponseError(f"{where}: unparsable numbers:\n{_unparsable_cells(rows)}") from None
    return times, np.ascontiguousarray(values)


def _unparsable_cells(rows: list[list[str]]) -> str:
    names = ("startTime", "open", "high", "low", "close", "volume", "turnover")
    found = []
    for i, row in enumerate(rows):
        for column, text in enumerate(row):
            try:  # the same parser as the fast path, cell by cell (this runs only on a bad page)
                pc.cast(pa.array([text], pa.string()), pa.int64() if column == 0 else pa.float64())
            except pa.ArrowInvalid:
                found.append(f"  row {i} {names[column]}: {text!r:.40}")
        if len(found) >= 10:
            break
    return "\n".join(found[:10])


def _describe(params: dict[str, str]) -> str:
    return "(" + ", ".join(f"{key}={value}" for key, value in params.items()) + ")"


def _snippet(body: bytes, limit: int = 200) -> str:
    """The start of a response body as one readable line (tags of an HTML error page stripped)."""
    text = body.decode("utf-8", errors="replace")
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
