"""Errors of the data layer. All derive from `DreamerError`, so the CLI prints them without a traceback."""

from __future__ import annotations

from dreamer.errors import DreamerError


class InvalidMarketError(DreamerError, ValueError):
    """A category, symbol, interval or time bound that no request should be sent with."""


class SourceFileError(DreamerError):
    """A CSV/Parquet file that cannot be imported as it is (nothing of it was written)."""


class DatabaseError(DreamerError):
    """The DuckDB file cannot be opened or written (locked by another process, unwritable path)."""


class BybitError(DreamerError):
    """Base class of every failure talking to Bybit."""


class BybitAccessDenied(BybitError):
    """HTTP 403: Bybit (or its CDN) refuses this IP, typically a geo-block or an IP ban. Never retried."""


class BybitRequestRejected(BybitError):
    """Bybit rejected the request itself (retCode 10001 and other non-transient codes, HTTP 4xx). Never retried."""


class BybitUnavailable(BybitError):
    """A transient failure (timeout, 5xx, 429, rate limit, truncated body) that outlasted every retry."""


class BybitResponseError(BybitError):
    """A page whose shape, echo fields or numbers are not what was asked for. Nothing of it is stored."""
