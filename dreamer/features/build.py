"""Causal per-bar features, computed by `sql/features.sql` in DuckDB.

Training (`build_features`, from the klines table) and inference (`compute_features`, from a window of
klines in memory) run the very same query, so a model never sees features computed two ways.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dreamer.data.markets import parse_interval
from dreamer.errors import DreamerError
from dreamer.paths import read_sql

if TYPE_CHECKING:
    import duckdb

FEATURE_COLUMNS: tuple[str, ...] = (
    "ret_1",
    "ret_3",
    "ret_12",
    "ret_48",
    "ret_288",
    "vol_12",
    "vol_48",
    "vol_288",
    "range_hl",
    "close_position",
    "log_volume",
    "volume_z_48",
    "volume_z_288",
    "time_of_day_sin",
    "time_of_day_cos",
    "day_of_week_sin",
    "day_of_week_cos",
)
"""The observation features, in the order of `MarketDataset.obs` columns."""

TARGET_COLUMN = "next_log_return"
LONGEST_WINDOW = 288
"""Bars of lookback of the longest feature (ret_288, vol_288): each segment's first 288 bars are warm-up."""
RETURN_HORIZON = 1
"""Bars ahead that the target looks (next_log_return)."""
KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


class FeatureError(DreamerError):
    """Klines that features cannot be computed from (duplicates, non-positive prices, missing columns)."""


def compute_features(klines: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Features of one kline series held in memory (any order; `open_time` naive = UTC).

    Returns one row per bar, oldest first: `open_time, open_time_ms, close, segment_id, after_gap, warmup`,
    the FEATURE_COLUMNS (NULL/NaN inside a segment's warm-up where the window is not full) and
    `next_log_return` (NaN where the next bar is missing)."""
    step = parse_interval(interval).step
    missing = [column for column in KLINE_COLUMNS if column not in klines.columns]
    if missing:
        raise FeatureError(f"klines lack column(s) {missing}; expected {list(KLINE_COLUMNS)}")
    bars = klines.loc[:, list(KLINE_COLUMNS)].copy()
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    _check_bars(bars)

    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(read_sql("macros.sql"))
        con.register("feature_input", bars)
        features = con.execute(read_sql("features.sql"), {"step": step}).df()
    finally:
        con.close()
    return features


def build_features(
    con: duckdb.DuckDBPyConnection,
    category: str,
    symbol: str,
    interval: str,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Features of the stored series `(category, symbol, interval)`, candle starts in `[start, end]`."""
    from dreamer.data.store import read_klines

    klines = read_klines(con, category, symbol, interval, start=start, end=end)
    if klines.empty:
        raise FeatureError(f"no klines stored for {category}/{symbol}/{interval} in [{start}, {end}]")
    return compute_features(klines, interval)


def _check_bars(bars: pd.DataFrame) -> None:
    values = bars[["open", "high", "low", "close", "volume"]]
    problems = []
    if bars["open_time"].isna().any() or values.isna().to_numpy().any():
        problems.append("missing values")
    if bars["open_time"].duplicated().any():
        problems.append(f"{int(bars['open_time'].duplicated().sum())} duplicated open_time")
    if (values[["open", "high", "low", "close"]] <= 0).to_numpy().any():
        problems.append("non-positive prices")
    if (values["volume"] < 0).any():
        problems.append("negative volume")
    if problems:
        raise FeatureError(f"cannot compute features: {', '.join(problems)} (run `dreamer validate` first)")


def write_parquet(features: pd.DataFrame, path: Path) -> Path:
    """Write the feature table to `path` atomically (a crash leaves the previous file intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        features.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
