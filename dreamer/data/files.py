"""Kline and funding files: CSV (optionally gzipped) or Parquet, in the formats of the Bybit exports under
../shared/data. Every row is checked before anything is written; times are epoch milliseconds between
2009-01-01 and one day from now.

* klines: columns `start_ms,open,high,low,close,volume,turnover`, where `turnover` may be empty (stored as
  NULL, never 0);
* funding: columns `funding_time_ms,funding_rate` (settlement time in epoch ms, rate as a fraction).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dreamer.data.candles import VALUE_COLUMNS, Candles, RowProblems, collect_problems, row_problems
from dreamer.data.errors import SourceFileError
from dreamer.data.funding import FundingRates, funding_row_problems
from dreamer.data.markets import Interval

TIME_COLUMN = "start_ms"
REQUIRED_COLUMNS = (TIME_COLUMN, "open", "high", "low", "close", "volume")
FILE_COLUMNS = (*REQUIRED_COLUMNS, "turnover")
FUNDING_COLUMNS = ("funding_time_ms", "funding_rate")
# A file's times lie between 2009-01-01 (no crypto market traded before Bitcoin's first block) and one day
# from now (clock skew, nothing more): anything else is a typo or another unit (seconds, microseconds),
# and past year 2262 pandas cannot even represent it.
EARLIEST_MS = 1_230_768_000_000
FUTURE_SLACK_MS = 86_400_000


def read_kline_file(path: str | Path, interval: Interval) -> Candles:
    """All rows of a kline file as `Candles`, or `SourceFileError` naming the bad lines (CSV line numbers
    count the header as line 1; Parquet rows count from 1)."""
    path = Path(path)
    text = _read_as_text(path, REQUIRED_COLUMNS, optional=("turnover",))
    if "turnover" not in text.columns:
        text["turnover"] = ""

    times, checks = _epoch_ms(text, TIME_COLUMN)
    raw_values = text[list(VALUE_COLUMNS)]
    values = raw_values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    blank = (raw_values == "").to_numpy()
    unparsable = np.isnan(values) & ~blank
    for i, column in enumerate(VALUE_COLUMNS):
        checks.append((unparsable[:, i], f"{column} is not a number"))
        if column != "turnover":
            checks.append((blank[:, i], f"{column} is empty"))
    problems = collect_problems(checks)
    candles = Candles(times, values)
    if not problems:
        problems = row_problems(candles, interval)
    _reject_bad_rows(path, problems)
    return candles


def read_funding_file(path: str | Path) -> FundingRates:
    """All rows of a funding file as `FundingRates` (ascending, unique times, finite rates), or
    `SourceFileError` naming the bad lines as `read_kline_file` does."""
    path = Path(path)
    text = _read_as_text(path, FUNDING_COLUMNS)
    times, time_checks = _epoch_ms(text, "funding_time_ms")
    raw_rates = text["funding_rate"]
    rates = pd.to_numeric(raw_rates, errors="coerce").to_numpy(dtype=np.float64)
    blank = (raw_rates == "").to_numpy()
    problems = collect_problems(
        [
            *time_checks,
            (np.isnan(rates) & ~blank, "funding_rate is not a number"),
            (blank, "funding_rate is empty"),
        ]
    )
    funding = FundingRates(times, rates)
    if not problems:
        problems = funding_row_problems(funding)
    _reject_bad_rows(path, problems)
    return funding


def _read_as_text(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every cell of the file as text (blanks for nulls), with exactly the expected columns and some rows."""
    if path.is_dir():
        raise SourceFileError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise SourceFileError(f"{path}: no such file")
    text = _read_parquet_as_text(path) if _is_parquet(path) else _read_csv_as_text(path)
    missing = [column for column in required if column not in text.columns]
    unknown = [column for column in text.columns if column not in (*required, *optional)]
    if missing or unknown:
        note = f" ({', '.join(optional)} optional)" if optional else ""
        raise SourceFileError(
            f"{path}: columns must be {','.join((*required, *optional))}{note}; "
            f"missing {missing or 'none'}, unexpected {unknown or 'none'}"
        )
    if text.empty:
        raise SourceFileError(f"{path}: no rows")
    return text


def _epoch_ms(text: pd.DataFrame, column: str) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """(times [N] int64, 0 where unreadable; the column's row checks): digits only, at most 18 of them (any
    such number fits int64), between `EARLIEST_MS` and `FUTURE_SLACK_MS` from now."""
    raw = text[column].to_numpy(dtype=str)
    digits = np.char.isdigit(raw) & (np.char.str_len(raw) <= 18)
    times = np.where(digits, raw, "0").astype(np.int64)
    latest_ms = time.time_ns() // 1_000_000 + FUTURE_SLACK_MS
    return times, [
        (~digits, f"{column} must be epoch milliseconds (digits only)"),
        (
            digits & ((times < EARLIEST_MS) | (times > latest_ms)),
            f"{column} must lie between 2009-01-01 and one day from now (epoch milliseconds, not seconds or "
            "microseconds)",
        ),
    ]


def _reject_bad_rows(path: Path, problems: RowProblems) -> None:
    if problems:
        first_row, label = (1, "row") if _is_parquet(path) else (2, "line")
        raise SourceFileError(
            f"{path}: {problems.bad_rows} bad row(s); nothing was written:\n"
            + problems.describe(lambda row: f"{label} {row + first_row}")
        )


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_csv_as_text(path: Path) -> pd.DataFrame:
    try:
        # Every cell as text, blank lines kept, so that line numbers in messages are the file's own; a row
        # with extra fields is an error (pandas would otherwise warn and drop them).
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, index_col=False)
        return frame.fillna("")
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, EOFError, OSError) as exc:
        raise SourceFileError(f"{path}: not a readable CSV: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise SourceFileError(f"{path}: the file is empty") from exc


def _read_parquet_as_text(path: Path) -> pd.DataFrame:
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise SourceFileError(f"{path}: not a readable Parquet file: {exc}") from exc
    # Numbers as their exact text (repr of float64 round-trips), nulls as blanks: one checking path for both.
    return frame.astype(object).where(frame.notna(), "").astype(str)
