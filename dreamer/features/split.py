"""Chronological, purged train / val / test splits and the dataset built from them.

Rows are bars that have complete features (warm-up rows dropped), oldest first. Between two consecutive
splits `purge` rows are left out: with purge >= LONGEST_WINDOW + RETURN_HORIZON, no feature window of a
later split reaches a bar whose close any earlier split's targets used, so nothing leaks between splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dreamer.features.build import FEATURE_COLUMNS, FUNDING_COLUMNS, LONGEST_WINDOW, RETURN_HORIZON, TARGET_COLUMN
from dreamer.features.config import SplitConfig, parse_utc
from dreamer.features.dataset import SPLIT_NAMES, BarFunding, DatasetError, MarketDataset

MIN_PURGE_BARS = LONGEST_WINDOW + RETURN_HORIZON


def purge_bars(cfg: SplitConfig) -> int:
    """The configured purge, checked against the minimum the features need."""
    purge = MIN_PURGE_BARS if cfg.purge_bars is None else cfg.purge_bars
    if purge < MIN_PURGE_BARS:
        raise DatasetError(
            f"split.purge_bars={purge} is shorter than the longest feature window plus the return horizon "
            f"({LONGEST_WINDOW} + {RETURN_HORIZON} = {MIN_PURGE_BARS}): features would leak across splits"
        )
    return purge


def split_bounds(open_time_ms: np.ndarray, cfg: SplitConfig, purge: int) -> dict[str, tuple[int, int]]:
    """Half-open row ranges of train, val and test over rows with strictly increasing `open_time_ms`."""
    n = len(open_time_ms)
    if cfg.val_start is not None and cfg.test_start is not None:
        val_first = _first_row_at(open_time_ms, cfg.val_start, "split.val_start")
        test_first = _first_row_at(open_time_ms, cfg.test_start, "split.test_start")
        bounds = {
            "train": (0, val_first - purge),
            "val": (val_first, test_first - purge),
            "test": (test_first, n),
        }
        how = f"val_start={cfg.val_start}, test_start={cfg.test_start}"
    else:
        usable = n - (2 if cfg.val_fraction > 0 else 1) * purge
        n_train = int(usable * cfg.train_fraction)
        n_val = int(usable * cfg.val_fraction)
        val_first = n_train + purge
        test_first = val_first + n_val + (purge if n_val else 0)
        bounds = {"train": (0, n_train), "val": (val_first, val_first + n_val), "test": (test_first, n)}
        how = f"train_fraction={cfg.train_fraction}, val_fraction={cfg.val_fraction}"
    for name in SPLIT_NAMES:
        start, stop = bounds[name]
        if stop - start < (0 if name == "val" and not cfg.by_dates and cfg.val_fraction == 0 else 2):
            raise DatasetError(
                f"split {name} would hold {max(stop - start, 0)} rows ({how}, purge {purge} rows, "
                f"{n} rows with complete features): use more data or other split settings"
            )
    return bounds


def make_dataset(
    features: pd.DataFrame,
    cfg: SplitConfig,
    meta: Mapping[str, Any] | None = None,
    *,
    train_bars: int | None = None,
) -> MarketDataset:
    """Drop warm-up rows, split chronologically with a purge, fit the normaliser on train, assemble.

    `train_bars`: train on the last `train_bars` rows of the train split only (the sample-efficiency
    experiment, `dreamer.sample_efficiency`): the earlier train rows stay in the arrays but belong to no
    split, val and test are exactly those of the whole split, and the normaliser is fitted on the rows kept."""
    missing = [
        c
        for c in ("open_time_ms", "close", "segment_id", "warmup", TARGET_COLUMN, *FEATURE_COLUMNS, *FUNDING_COLUMNS)
        if c not in features.columns
    ]
    if missing:
        raise DatasetError(f"features lack column(s) {missing}: build them with dreamer.features.build")
    rows = features.loc[~features["warmup"].to_numpy(dtype=bool)].sort_values("open_time_ms")
    values = rows[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)  # [N, F]
    incomplete = ~np.isfinite(values).all(axis=1)
    if incomplete.any():
        raise DatasetError(f"{int(incomplete.sum())} rows after warm-up have missing/non-finite features")
    open_time_ms = rows["open_time_ms"].to_numpy(dtype=np.int64)
    purge = purge_bars(cfg)
    splits = split_bounds(open_time_ms, cfg, purge)
    if train_bars is not None:
        train_start, train_stop = splits["train"]
        if not 2 <= train_bars <= train_stop - train_start:
            raise DatasetError(
                f"train_bars={train_bars} must be between 2 and the train split's {train_stop - train_start} rows"
            )
        splits["train"] = (train_stop - train_bars, train_stop)
    split_times = {
        name: [_iso(open_time_ms[start]), _iso(open_time_ms[stop - 1])] if stop > start else None
        for name, (start, stop) in splits.items()
    }
    return MarketDataset.from_arrays(
        open_time_ms=open_time_ms,
        close=rows["close"].to_numpy(dtype=np.float64),
        features=values,
        next_log_return=rows[TARGET_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan),
        segment_id=rows["segment_id"].to_numpy(dtype=np.int32),
        feature_names=FEATURE_COLUMNS,
        splits=splits,
        meta={
            **dict(meta or {}),
            "purge_bars": purge,
            "split_times": split_times,
            **({} if train_bars is None else {"train_bars": train_bars}),
        },
        funding=BarFunding.from_settled(
            rows["funding_rate_known"].to_numpy(dtype=np.float64),
            rows["funding_settled_sum"].to_numpy(dtype=np.float64),
            rows["funding_settled_count"].to_numpy(dtype=np.int64),
        ),
    )


def _first_row_at(open_time_ms: np.ndarray, when: str, where: str) -> int:
    moment_ms = int(parse_utc(when, where).timestamp() * 1000)
    return int(np.searchsorted(open_time_ms, moment_ms, side="left"))


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()
