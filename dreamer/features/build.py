"""Causal per-bar features, computed by `sql/features.sql` in DuckDB.

Training (`build_features`, from the klines table) and inference (`compute_features`, from a window of
klines in memory) run the very same query, so a model never sees features computed two ways.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
    "close_vs_mean_2016",
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
    "funding_last",
    "funding_mean_3",
    "funding_countdown",
)
"""The observation features, in the order of `MarketDataset.obs` columns."""

TARGET_COLUMN = "next_log_return"
FUNDING_COLUMNS = ("funding_rate_known", "funding_settled_sum", "funding_settled_count")
"""Per-bar funding quantities that are not observations (see sql/features.sql): the latest settled rate
(what imagination charges), and the rates and the number of settlements up to the bar's close."""
FUNDING_INPUT_COLUMNS = ("funding_time_ms", "funding_rate")
LONGEST_WINDOW = 2016
"""Bars of lookback of the longest feature (close_vs_mean_2016): each segment's first 2016 bars are warm-up."""
RETURN_HORIZON = 1
"""Bars ahead that the target looks (next_log_return)."""
KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


class FeatureError(DreamerError):
    """Klines that features cannot be computed from (duplicates, non-positive prices, missing columns)."""


def compute_features(klines: pd.DataFrame, interval: str, funding: pd.DataFrame | None = None) -> pd.DataFrame:
    """Features of one kline series held in memory (any order; `open_time` naive = UTC).

    `funding`: the contract's settlements (`funding_time_ms, funding_rate`, e.g. `store.read_funding`),
    covering the klines and a day before them; None for a contract without funding (spot, a synthetic
    market), whose funding features are 0.

    Returns one row per bar, oldest first: `open_time, open_time_ms, close, segment_id, after_gap, warmup`,
    the FEATURE_COLUMNS (NULL/NaN inside a segment's warm-up where the window is not full),
    `next_log_return` (NaN where the next bar is missing) and the FUNDING_COLUMNS."""
    step = parse_interval(interval).step
    missing = [column for column in KLINE_COLUMNS if column not in klines.columns]
    if missing:
        raise FeatureError(f"klines lack column(s) {missing}; expected {list(KLINE_COLUMNS)}")
    bars = klines.loc[:, list(KLINE_COLUMNS)].copy()
    bars["open_time"] = pd.to_datetime(bars["open_time"], utc=True)
    _check_bars(bars)
    settlements = _settlements(funding)

    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(read_sql("macros.sql"))
        con.register("feature_input", bars)
        con.register("funding_input", settlements)
        features = con.execute(read_sql("features.sql"), {"step": step, "funded": funding is not None}).df()
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
    """Features of the stored series `(category, symbol, interval)`, candle starts in `[start, end]`, with
    the stored funding settlements on a perpetual (`linear`, `inverse`)."""
    from dreamer.data.store import read_klines

    klines = read_klines(con, category, symbol, interval, start=start, end=end)
    if klines.empty:
        raise FeatureError(f"no klines stored for {category}/{symbol}/{interval} in [{start}, {end}]")
    return compute_features(klines, interval, read_funding_for(con, category, symbol, klines))


def read_funding_for(
    con: duckdb.DuckDBPyConnection, category: str, symbol: str, klines: pd.DataFrame
) -> pd.DataFrame | None:
    """The stored settlements the features of `klines` read: from two days before the first candle (the
    first bars' last three settlements) on. None for spot, which has no funding, and for a perpetual with
    none stored: the validation gate fails such a series unless the user turned its funding check off
    (`validation.check_funding: false`), and then it trades without funding, as asked."""
    from dreamer.data.markets import PERPETUAL_CATEGORIES
    from dreamer.data.store import read_funding

    if category not in PERPETUAL_CATEGORIES:
        return None
    first = pd.to_datetime(klines["open_time"], utc=True).min()
    funding = read_funding(con, category, symbol, start=first - pd.Timedelta(days=2))
    return funding if len(funding) else None


def _settlements(funding: pd.DataFrame | None) -> pd.DataFrame:
    """`funding_input` for sql/features.sql: checked, oldest first (empty without funding)."""
    if funding is None:
        return pd.DataFrame(
            {"funding_time_ms": pd.Series([], dtype="int64"), "funding_rate": pd.Series([], dtype="float64")}
        )
    missing = [column for column in FUNDING_INPUT_COLUMNS if column not in funding.columns]
    if missing:
        raise FeatureError(f"funding lacks column(s) {missing}; expected {list(FUNDING_INPUT_COLUMNS)}")
    settlements = funding.loc[:, list(FUNDING_INPUT_COLUMNS)].astype(
        {"funding_time_ms": "int64", "funding_rate": "float64"}
    )
    if settlements["funding_time_ms"].duplicated().any():
        raise FeatureError("cannot compute features: duplicated funding settlement times")
    if not np.isfinite(settlements["funding_rate"].to_numpy()).all():
        raise FeatureError("cannot compute features: non-finite funding rates (run `dreamer validate` first)")
    return settlements.sort_values("funding_time_ms").reset_index(drop=True)


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
