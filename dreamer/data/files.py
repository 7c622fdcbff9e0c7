"""Kline files: CSV (optionally gzipped) or Parquet with columns
`start_ms,open,high,low,close,volume,turnover` (the format of Bybit exports under ../shared/data), where
`turnover` may be empty (stored as NULL, never 0). Every row is checked before anything is written."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dreamer.data.candles import VALUE_COLUMNS, Candles, collect_problems, row_problems
from dreamer.data.errors import SourceFileError
from dreamer.data.markets import Interval

TIME_COLUMN = "start_ms"
REQUIRED_COLUMNS = (TIME_COLUMN, "open", "high", "low", "close", "volume")
FILE_COLUMNS = (*REQUIRED_COLUMNS, "turnover")


def read_kline_file(path: str | Path, interval: Interval) -> Candles:
    """All rows of a kline file as `Candles`, or `SourceFileError` naming the bad lines (CSV line numbers
    count the header as line 1; Parquet rows count from 1)."""
    path = Path(path)
    if not path.is_file():
        raise SourceFileError(f"{path}: no such file")
    is_parquet = path.suffix.lower() in (".parquet", ".pq")
    text = _read_parquet_as_text(path) if is_parquet else _read_csv_as_text(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in text.columns]
    unknown = [column for column in text.columns if column not in FILE_COLUMNS]
    if missing or unknown:
        raise SourceFileError(
            f"{path}: columns must be {','.join(FILE_COLUMNS)} (turnover optional); "
            f"missing {missing or 'none'}, unexpected {unknown or 'none'}"
        )
    if text.empty:
        raise SourceFileError(f"{path}: no rows")
    if "turnover" not in text.columns:
        text["turnover"] = ""

    raw_times = text[TIME_COLUMN].to_numpy(dtype=str)
    time_ok = np.char.isdigit(raw_times) & (np.char.str_len(raw_times) <= 15)
    times = np.where(time_ok, raw_times, "0").astype(np.int64)
    raw_values = text[list(VALUE_COLUMNS)]
    values = raw_values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    blank = (raw_values == "").to_numpy()
    unparsable = np.isnan(values) & ~blank
    checks = [(~time_ok, "start_ms must be epoch milliseconds (digits only)")]
    for i, column in enumerate(VALUE_COLUMNS):
        checks.append((unparsable[:, i], f"{column} is not a number"))
        if column != "turnover":
            checks.append((blank[:, i], f"{column} is empty"))
    problems = collect_problems(checks)
    candles = Candles(times, values)
    if not problems:
        problems = row_problems(candles, interval)
    if problems:
        first_row = 2 if not is_parquet else 1
        label = "row" if is_parquet else "line"
        raise SourceFileError(
            f"{path}: {problems.bad_rows} bad row(s); nothing was written:\n"
            + problems.describe(lambda row: f"{label} {row + first_row}")
        )
    return candles


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
