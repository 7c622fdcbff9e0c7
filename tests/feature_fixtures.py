"""Kline and funding frames for the feature, validation and split tests.

`sample_klines` is the real bundled sample. `synthetic_klines` is a seeded random walk used only where a
test needs a property real data cannot be made to have on demand (gaps at chosen bars); it never stands in
for market data anywhere else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV

BAR_MS = 300_000  # 5-minute bars


def read_kline_csv(path: Path, rows: int | None = None) -> pd.DataFrame:
    """A `start_ms,open,high,low,close,volume,turnover` export as a klines frame (tz-aware open_time)."""
    raw = pd.read_csv(path, nrows=rows)
    frame = raw.drop(columns="start_ms")
    frame.insert(0, "open_time", pd.to_datetime(raw["start_ms"], unit="ms", utc=True))
    return frame


def sample_klines(rows: int | None = None) -> pd.DataFrame:
    return read_kline_csv(SAMPLE_CSV, rows)


def read_funding_csv(path: Path = SAMPLE_FUNDING_CSV) -> pd.DataFrame:
    """A `funding_time_ms,funding_rate` file as `dreamer.data.store.read_funding` returns it (default: the
    bundled sample's BTCUSDT settlements)."""
    return pd.read_csv(path, dtype={"funding_time_ms": "int64", "funding_rate": "float64"})


def synthetic_klines(n: int, missing: tuple[range, ...] = (), seed: int = 0) -> pd.DataFrame:
    """`n` aligned 5-minute bars of a random walk, minus the bar positions in `missing` (gaps)."""
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 2e-3, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 2e-3, n))
    volume = rng.lognormal(3, 1, n)
    volume[rng.random(n) < 0.02] = 0.0
    frame = pd.DataFrame(
        {
            "open_time": pd.to_datetime(1_767_225_600_000 + BAR_MS * np.arange(n), unit="ms", utc=True),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "turnover": volume * close,
        }
    )
    drop = np.concatenate([np.asarray(r) for r in missing]) if missing else np.zeros(0, dtype=int)
    return frame.drop(index=drop).reset_index(drop=True)


def synthetic_funding(klines: pd.DataFrame, hours: int = 8, seed: int = 0) -> pd.DataFrame:
    """Settlements every `hours` on the UTC clock from a day before the first kline to a day after the last,
    with seeded random rates around Bybit's usual 1 bp: the funding of a `synthetic_klines` market."""
    times = pd.to_datetime(klines["open_time"], utc=True)
    step = pd.Timedelta(hours=hours)
    first, last = (times.min() - pd.Timedelta(days=1)).floor(step), times.max() + pd.Timedelta(days=1)
    settle = pd.date_range(first, last, freq=step)
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "funding_time_ms": (settle - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1),
            "funding_rate": rng.normal(1e-4, 1e-4, len(settle)),
        }
    ).astype({"funding_time_ms": "int64"})
