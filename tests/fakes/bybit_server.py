"""A loopback fake of Bybit's `GET /v5/market/kline` and `GET /v5/market/funding/history`, serving real
klines and funding settlements with Bybit's semantics.

Klines: `category`/`symbol`/`interval` checked (retCode 10001 otherwise), `limit` 1..1000 (default 200),
`start`/`end` inclusive on candle starts with `start` floored to its candle, no candle after the server's
`now`, the candle containing `now` served as still open (partial values), numbers as strings, and the
envelope `time`.

Funding history: categories linear and inverse only, `symbol` checked, `limit` 1..200 (default 200),
`startTime`/`endTime` inclusive on settlement times; `startTime` alone is an error (retCode 10001), only
`endTime` gives the `limit` settlements up to it, neither the latest `limit`; no settlement after `now`;
items `{symbol, fundingRate, fundingRateTimestamp}` as strings.

Pages are newest-first (Bybit) or, with `order="oldest_first"`, ascending; when a window holds more than
`limit` rows the newest (resp. oldest) `limit` are served, which is exactly the ambiguity the client
must never depend on.

Faults are queued with `inject(...)` and consumed one per request, in order, whichever the endpoint; see
`FAULTS`. Every request is logged (`log`, or `kline_requests` / `funding_requests`), so tests can count
requests and inspect their windows.

The source CSVs have no turnover; the fake serves `volume * (high + low + close) / 3` rounded to 4
decimals in its place (a stand-in for tests, not market data).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

INTERVAL_MS = {code: int(code) * 60_000 for code in ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720")}
INTERVAL_MS |= {"D": 86_400_000}

FAULTS = {
    "ok": "no fault: a placeholder that aims the faults queued after it at later requests",
    "http_403": "HTTP 403 with an HTML body (geo-block / IP ban)",
    "http_404": "HTTP 404 (wrong base URL)",
    "http_429": "HTTP 429 Too Many Requests",
    "http_500": "HTTP 500",
    "http_502": "HTTP 502",
    "http_503": "HTTP 503",
    "ret_10000": "retCode 10000 server timeout",
    "ret_10001": "retCode 10001 params error",
    "ret_10006": "retCode 10006 too many visits, with X-Bapi-Limit-Reset-Timestamp",
    "ret_10006_no_header": "retCode 10006 without the reset header",
    "ret_10016": "retCode 10016 server error",
    "truncated": "HTTP 200 whose JSON body is cut in half",
    "slow": "answers after `slow_s` seconds (longer than a test client's timeout)",
    "drop": "closes the connection without answering",
    "wrong_symbol": "echoes another symbol (funding: in one item)",
    "wrong_category": "echoes another category",
    "missing_time": "envelope without `time`",
    "short_row": "one row with 6 fields (funding: one item without fundingRate)",
    "bad_number": "one close is 'abc' (funding: one fundingRate)",
    "empty_number": "one volume is '' (funding: one fundingRate)",
    "nan_number": "one high is 'NaN' (funding: one fundingRate)",
    "number_not_string": "one open is a JSON number (funding: one fundingRate)",
    "outside_window": "one extra row before the window",
    "duplicate_row": "one row twice",
}
KLINE_PATH = "/v5/market/kline"
FUNDING_PATH = "/v5/market/funding/history"
FUNDING_MAX_LIMIT = 200

HTML_403 = (
    b"<!DOCTYPE HTML PUBLIC '-//W3C//DTD HTML 4.01 Transitional//EN'><HTML><HEAD><TITLE>ERROR: The request "
    b"could not be satisfied</TITLE></HEAD><BODY><H1>403 ERROR</H1><H2>The request could not be satisfied."
    b"</H2>The Amazon CloudFront distribution is configured to block access from your country.</BODY></HTML>"
)


@dataclass
class KlineSeries:
    """One served series: candle starts (ascending) and rows of 7 strings, as Bybit would send them."""

    open_time_ms: np.ndarray
    rows: list[list[str]]

    @classmethod
    def from_csv(cls, path: str | Path, first: int = 0, count: int | None = None) -> KlineSeries:
        """Rows `first .. first+count` of a `start_ms,open,high,low,close,volume,turnover` file."""
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()[1:]
        stop = None if count is None else first + count
        rows = [line.split(",") for line in lines[first:stop]]
        return cls.from_rows(rows)

    @classmethod
    def from_rows(cls, rows: list[list[str]]) -> KlineSeries:
        served = []
        for start, open_, high, low, close, volume, turnover in rows:
            if not turnover:
                typical = (float(high) + float(low) + float(close)) / 3
                turnover = repr(round(float(volume) * typical, 4))
            served.append([start, open_, high, low, close, volume, turnover])
        return cls(np.array([int(row[0]) for row in served], dtype=np.int64), served)

    def without(self, positions: list[int] | range) -> KlineSeries:
        """The series with the candles at `positions` removed (a hole the client must report, not fill)."""
        drop = set(positions)
        keep = [i for i in range(len(self.rows)) if i not in drop]
        return KlineSeries(self.open_time_ms[keep], [self.rows[i] for i in keep])


@dataclass
class FundingSeries:
    """One perpetual's served settlements: times (ascending) and `(time, rate)` text pairs as in the file."""

    funding_time_ms: np.ndarray
    rows: list[tuple[str, str]]

    @classmethod
    def from_csv(cls, path: str | Path) -> FundingSeries:
        """Every row of a `funding_time_ms,funding_rate` file, as written there."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
        return cls.from_rows([(time_ms, rate) for time_ms, rate in (line.split(",") for line in lines)])

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str]]) -> FundingSeries:
        return cls(np.array([int(time_ms) for time_ms, _ in rows], dtype=np.int64), list(rows))

    def without(self, positions: list[int] | range) -> FundingSeries:
        """The history with the settlements at `positions` removed."""
        drop = set(positions)
        return FundingSeries.from_rows([row for i, row in enumerate(self.rows) if i not in drop])


@dataclass
class RequestRecord:
    path: str
    params: dict[str, str]
    fault: str | None
    status: int
    rows: int
    at: float = field(default_factory=time.monotonic)


class FakeBybit:
    """`with FakeBybit({("linear", "BTCUSDT", "5"): series}, {("linear", "BTCUSDT"): funding}) as fake: ...`.

    `now_ms` is the server clock (the `time` envelope field); by default it lies inside the last candle
    of every kline series, so that candle is open and must never be stored (without klines: an hour after
    the last settlement). A symbol without a funding series is unknown to the funding endpoint (10001).
    """

    def __init__(
        self,
        series: dict[tuple[str, str, str], KlineSeries],
        funding: dict[tuple[str, str], FundingSeries] | None = None,
        now_ms: int | None = None,
        order: str = "newest_first",
        slow_s: float = 1.5,
        reset_after_ms: int = 1500,
    ) -> None:
        assert order in ("newest_first", "oldest_first"), order
        self.series = series
        self.funding = funding or {}
        if now_ms is None and series:
            now_ms = max(int(s.open_time_ms[-1]) + INTERVAL_MS[key[2]] // 2 for key, s in series.items())
        elif now_ms is None:
            now_ms = max(int(f.funding_time_ms[-1]) for f in self.funding.values()) + 3_600_000
        self.now_ms = now_ms
        self.order = order
        self.slow_s = slow_s
        self.reset_after_ms = reset_after_ms
        self.faults: deque[str] = deque()
        self.log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-bybit", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeBybit:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBybit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests, one per request."""
        for fault in faults:
            assert fault in FAULTS, f"unknown fault {fault!r}; known: {sorted(FAULTS)}"
        self.faults.extend(faults)

    @property
    def kline_requests(self) -> list[RequestRecord]:
        return [record for record in self.log if record.path == KLINE_PATH]

    @property
    def funding_requests(self) -> list[RequestRecord]:
        return [record for record in self.log if record.path == FUNDING_PATH]

    def closed_rows(self, key: tuple[str, str, str]) -> list[list[str]]:
        """The rows a correct client ends up storing: every candle closed by `now_ms`."""
        series = self.series[key]
        closed = series.open_time_ms + INTERVAL_MS[key[2]] <= self.now_ms
        return [row for row, keep in zip(series.rows, closed, strict=True) if keep]

    def settled_rows(self, key: tuple[str, str]) -> list[tuple[str, str]]:
        """The settlements a correct client ends up storing: every one at or before `now_ms`."""
        series = self.funding[key]
        return [row for row, time_ms in zip(series.rows, series.funding_time_ms, strict=True) if time_ms <= self.now_ms]

    # -- request handling ---------------------------------------------------------------------------

    def arrive(self, path: str, query: dict[str, str]) -> RequestRecord:
        """Log a request as it arrives (so a slow answer still counts in order) and take its fault."""
        with self._lock:
            record = RequestRecord(path, query, self.faults.popleft() if self.faults else None, 0, 0)
            self.log.append(record)
        return record

    def respond(
        self, path: str, query: dict[str, str], fault: str | None
    ) -> tuple[int, dict[str, str], bytes | None, int]:
        """(status, headers, body or None to drop the connection, rows served) of a request to `path`."""
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "drop":
            return 0, {}, None, 0
        if fault == "http_403":
            return 403, {"Content-Type": "text/html"}, HTML_403, 0
        if fault == "http_404":
            return 404, {"Content-Type": "text/plain"}, b"404 page not found", 0
        if fault in ("http_429", "http_500", "http_502", "http_503"):
            return int(fault[5:]), {"Content-Type": "text/plain"}, b"upstream trouble", 0
        business = {
            "ret_10000": (10000, "Server Timeout"),
            "ret_10001": (10001, "params error: symbol invalid"),
            "ret_10006": (10006, "Too many visits!"),
            "ret_10006_no_header": (10006, "Too many visits!"),
            "ret_10016": (10016, "Internal server error"),
        }
        if fault in business:
            code, message = business[fault]
            headers = {}
            if fault == "ret_10006":
                headers["X-Bapi-Limit-Reset-Timestamp"] = str(int(time.time() * 1000) + self.reset_after_ms)
            return 200, headers, self._envelope(code, message, {}), 0
        if path == KLINE_PATH:
            code, message, result = self._klines(query)
        else:
            code, message, result = self._funding(query)
        rows = result.get("list", [])
        if path == KLINE_PATH:
            self._corrupt_klines(fault, query, result)
        else:
            self._corrupt_funding(fault, result)
        payload = self._envelope(code, message, result)
        if fault == "missing_time":
            payload = payload.replace(b',"time":' + str(self.now_ms).encode(), b"")
        if fault == "truncated":
            payload = payload[: len(payload) // 2]
        return 200, {}, payload, len(rows)

    def _envelope(self, code: int, message: str, result: dict[str, Any]) -> bytes:
        body = {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": self.now_ms}
        return json.dumps(body, separators=(",", ":")).encode()

    def _klines(self, query: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
        category, symbol, interval = query.get("category", ""), query.get("symbol", ""), query.get("interval", "")
        if category not in ("spot", "linear", "inverse"):
            return 10001, "Illegal category", {}
        if interval not in INTERVAL_MS:
            return 10001, "Invalid period!", {}
        series = self.series.get((category, symbol, interval))
        if series is None:
            return 10001, "Not supported symbols", {}
        try:
            limit = int(query.get("limit", "200"))
            end = int(query.get("end", str(self.now_ms)))
            start = int(query["start"]) if "start" in query else None
        except ValueError:
            return 10001, "params error", {}
        if not 1 <= limit <= 1000:
            return 10001, "params error: limit must be in [1, 1000]", {}
        step = INTERVAL_MS[interval]
        end = min(end, self.now_ms)
        hi = int(np.searchsorted(series.open_time_ms, end, side="right"))
        if start is None:
            lo = max(0, hi - limit)
        else:
            lo = int(np.searchsorted(series.open_time_ms, start // step * step, side="left"))
        if hi - lo > limit:  # undocumented on Bybit: the one thing a correct client never asks
            lo, hi = (hi - limit, hi) if self.order == "newest_first" else (lo, lo + limit)
        rows = [list(row) for row in series.rows[lo:hi]]
        if rows and int(rows[-1][0]) + step > self.now_ms:
            rows[-1] = _still_open(rows[-1])
        if self.order == "newest_first":
            rows.reverse()
        return 0, "OK", {"symbol": symbol, "category": category, "list": rows}

    def _funding(self, query: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
        category, symbol = query.get("category", ""), query.get("symbol", "")
        if category not in ("linear", "inverse"):
            return 10001, "params error: category only support linear or inverse", {}
        series = self.funding.get((category, symbol))
        if series is None:
            return 10001, "Not supported symbols", {}
        try:
            limit = int(query.get("limit", str(FUNDING_MAX_LIMIT)))
            end = int(query["endTime"]) if "endTime" in query else None
            start = int(query["startTime"]) if "startTime" in query else None
        except ValueError:
            return 10001, "params error", {}
        if not 1 <= limit <= FUNDING_MAX_LIMIT:
            return 10001, f"params error: limit must be in [1, {FUNDING_MAX_LIMIT}]", {}
        if start is not None and end is None:  # documented: startTime alone is an error
            return 10001, "params error: endTime is required when startTime is given", {}
        end = self.now_ms if end is None else min(end, self.now_ms)
        hi = int(np.searchsorted(series.funding_time_ms, end, side="right"))
        lo = max(0, hi - limit) if start is None else int(np.searchsorted(series.funding_time_ms, start, side="left"))
        if hi - lo > limit:  # undocumented on Bybit, as for klines
            lo, hi = (hi - limit, hi) if self.order == "newest_first" else (lo, lo + limit)
        items = [
            {"symbol": symbol, "fundingRate": rate, "fundingRateTimestamp": time_ms}
            for time_ms, rate in series.rows[lo:hi]
        ]
        if self.order == "newest_first":
            items.reverse()
        return 0, "OK", {"category": category, "list": items}

    def _corrupt_funding(self, fault: str | None, result: dict[str, Any]) -> None:
        items = result.get("list")
        if fault == "wrong_category":
            result["category"] = "inverse" if result.get("category") != "inverse" else "linear"
        elif not items:
            return
        elif fault == "wrong_symbol":
            items[0]["symbol"] = "ETHUSDT" if items[0]["symbol"] != "ETHUSDT" else "BTCUSDT"
        elif fault == "short_row":
            del items[0]["fundingRate"]
        elif fault in ("bad_number", "empty_number", "nan_number"):
            items[0]["fundingRate"] = {"bad_number": "abc", "empty_number": "", "nan_number": "NaN"}[fault]
        elif fault == "number_not_string":
            items[0]["fundingRate"] = float(items[0]["fundingRate"])
        elif fault == "duplicate_row":
            items.append(dict(items[0]))
        elif fault == "outside_window":
            before = min(int(item["fundingRateTimestamp"]) for item in items) - 8 * 3_600_000
            items.append({**items[0], "fundingRateTimestamp": str(before)})

    def _corrupt_klines(self, fault: str | None, query: dict[str, str], result: dict[str, Any]) -> None:
        rows = result.get("list")
        if fault == "wrong_symbol":
            result["symbol"] = "ETHUSDT" if result.get("symbol") != "ETHUSDT" else "BTCUSDT"
        elif fault == "wrong_category":
            result["category"] = "spot" if result.get("category") != "spot" else "linear"
        elif rows and fault == "short_row":
            rows[0] = rows[0][:6]
        elif rows and fault == "bad_number":
            rows[0][4] = "abc"
        elif rows and fault == "empty_number":
            rows[0][5] = ""
        elif rows and fault == "nan_number":
            rows[0][2] = "NaN"
        elif rows and fault == "number_not_string":
            rows[0][1] = float(rows[0][1])
        elif rows and fault == "duplicate_row":
            rows.append(list(rows[0]))
        elif rows and fault == "outside_window":
            step = INTERVAL_MS[query["interval"]]
            before = min(int(row[0]) for row in rows) - step
            rows.append([str(before), *rows[0][1:]])


def _still_open(row: list[str]) -> list[str]:
    """The candle as it looks before it closes: so far only the open traded, at half the volume."""
    start, open_, _high, _low, _close, volume, turnover = row
    return [start, open_, open_, open_, open_, repr(float(volume) / 2), repr(float(turnover) / 2)]


def _make_handler(fake: FakeBybit) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            status: int
            headers: dict[str, str]
            body: bytes | None
            if url.path not in (KLINE_PATH, FUNDING_PATH):
                status, headers, body, rows = 404, {}, b"not found", 0
            else:
                record = fake.arrive(url.path, query)
                status, headers, body, rows = fake.respond(url.path, query, record.fault)
                record.status, record.rows = status, rows
            if body is None:  # drop: close without a response
                self.close_connection = True
                return
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler
