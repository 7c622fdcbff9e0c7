"""Code tier: the feature SQL is causal, never reaches across gaps, and keeps the target apart."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dreamer.features.build import (
    FEATURE_COLUMNS,
    FUNDING_COLUMNS,
    LONGEST_WINDOW,
    TARGET_COLUMN,
    FeatureError,
    compute_features,
)
from dreamer.paths import read_sql
from tests.feature_fixtures import synthetic_klines

GAP = range(2400, 2412)  # 12 missing bars
BOOKKEEPING = ["open_time_ms", "segment_id", "after_gap", "warmup"]


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(4800, missing=(GAP,))


def assert_frames_close(left: pd.DataFrame, right: pd.DataFrame, tol: float = 1e-12) -> None:
    for column in left.columns:
        a, b = left[column].to_numpy(), right[column].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True, err_msg=column)
        else:
            np.testing.assert_array_equal(a, b, err_msg=column)


def test_sql_columns_match_the_python_contract(features: pd.DataFrame) -> None:
    assert list(features.columns) == [
        "open_time",
        "open_time_ms",
        "close",
        "segment_id",
        "after_gap",
        "warmup",
        *FEATURE_COLUMNS,
        *FUNDING_COLUMNS,
        TARGET_COLUMN,
    ]
    select = read_sql("features.sql")
    assert all(re.search(rf"\bAS {name}\b", select) for name in FEATURE_COLUMNS)


@pytest.mark.parametrize("t", [0, 5, 287, 288, 2015, 2016, 2100, 2399, 2400, 2401, 3500, 4787])
def test_every_feature_at_t_only_uses_bars_up_to_t(
    klines: pd.DataFrame, features: pd.DataFrame, t: int, funding: pd.DataFrame
) -> None:
    truncated = compute_features(klines.iloc[: t + 1], "5", funding)
    columns = [*BOOKKEEPING, *FEATURE_COLUMNS]
    assert_frames_close(truncated[columns], features[columns].iloc[: t + 1].reset_index(drop=True))


def test_features_ignore_the_future_even_when_it_changes(
    klines: pd.DataFrame, features: pd.DataFrame, funding: pd.DataFrame
) -> None:
    t = 3000
    future_shock = klines.copy()
    future_shock.loc[t + 1 :, ["open", "high", "low", "close"]] *= 3.0
    future_shock.loc[t + 1 :, "volume"] *= 50.0
    shocked = compute_features(future_shock, "5", funding)
    columns = [*BOOKKEEPING, *FEATURE_COLUMNS]
    assert_frames_close(shocked[columns].iloc[: t + 1], features[columns].iloc[: t + 1])
    assert shocked["ret_1"].iloc[t + 1] != pytest.approx(features["ret_1"].iloc[t + 1])
    assert shocked["log_volume"].iloc[t + 1] != pytest.approx(features["log_volume"].iloc[t + 1])


def test_no_window_reaches_across_a_gap(klines: pd.DataFrame, features: pd.DataFrame, funding: pd.DataFrame) -> None:
    before_gap = features["open_time"] < klines["open_time"].iloc[GAP.start]
    changed = klines.copy()
    changed.loc[before_gap.to_numpy(), ["open", "high", "low", "close"]] *= 0.5
    changed.loc[before_gap.to_numpy(), "volume"] *= 7.0
    after = ~before_gap
    recomputed = compute_features(changed, "5", funding)
    assert_frames_close(recomputed.loc[after, FEATURE_COLUMNS], features.loc[after, FEATURE_COLUMNS])


def test_gap_bookkeeping(features: pd.DataFrame) -> None:
    first_after = GAP.start  # row index of the first bar after the removed ones
    assert features["after_gap"].tolist() == [i == first_after for i in range(len(features))]
    assert (features["segment_id"].iloc[:first_after] == 0).all()
    assert (features["segment_id"].iloc[first_after:] == 1).all()
    # each segment starts with LONGEST_WINDOW warm-up bars; after them every feature is complete
    warm = features["warmup"].to_numpy()
    assert warm[:LONGEST_WINDOW].all() and not warm[LONGEST_WINDOW:first_after].any()
    assert warm[first_after : first_after + LONGEST_WINDOW].all() and not warm[first_after + LONGEST_WINDOW :].any()
    assert features.loc[~features["warmup"], list(FEATURE_COLUMNS)].notna().all().all()


def test_longest_window_is_what_the_sql_needs(features: pd.DataFrame) -> None:
    segment = features.iloc[: GAP.start]
    first_complete = {name: int(segment[name].notna().to_numpy().argmax()) for name in FEATURE_COLUMNS}
    assert max(first_complete.values()) == LONGEST_WINDOW
    assert first_complete["close_vs_mean_2016"] == LONGEST_WINDOW
    assert first_complete["ret_288"] == first_complete["vol_288"] == 288


def test_next_log_return_is_the_target_and_missing_across_gaps(klines: pd.DataFrame, features: pd.DataFrame) -> None:
    close = klines["close"].to_numpy()
    target = features[TARGET_COLUMN].to_numpy()
    expected = np.log(close[1:] / close[:-1])
    contiguous = np.diff(features["open_time_ms"].to_numpy()) == 300_000
    np.testing.assert_allclose(target[:-1][contiguous], expected[contiguous], rtol=1e-12)
    assert np.isnan(target[:-1][~contiguous]).all() and (~contiguous).sum() == 1
    assert np.isnan(target[-1])
    # On a random walk no causal feature can predict the next return; a leaked one would.
    complete = ~features["warmup"].to_numpy() & np.isfinite(target)
    for name in FEATURE_COLUMNS:
        correlation = np.corrcoef(features[name].to_numpy()[complete], target[complete])[0, 1]
        assert abs(correlation) < 0.15, name


def test_features_do_not_depend_on_the_price_level(
    klines: pd.DataFrame, features: pd.DataFrame, funding: pd.DataFrame
) -> None:
    rescaled = klines.copy()
    rescaled[["open", "high", "low", "close"]] *= 1000.0
    scaled = compute_features(rescaled, "5", funding)
    assert_frames_close(scaled[list(FEATURE_COLUMNS)], features[list(FEATURE_COLUMNS)], tol=1e-9)


def test_symlog_macro_and_scaling(features: pd.DataFrame, klines: pd.DataFrame) -> None:
    row = 3000
    r1 = np.log(klines["close"].iloc[row] / klines["close"].iloc[row - 1])
    assert features["ret_1"].iloc[row] == pytest.approx(np.sign(r1) * np.log1p(abs(r1) * 1e4), rel=1e-12)
    assert features["log_volume"].iloc[row] == pytest.approx(np.log1p(klines["volume"].iloc[row]), rel=1e-12)


def test_calendar_features_use_utc(features: pd.DataFrame) -> None:
    first = features.iloc[0]  # 2026-01-01 00:00 UTC, a Thursday (Monday = 0)
    assert first["time_of_day_sin"] == pytest.approx(0.0, abs=1e-12)
    assert first["time_of_day_cos"] == pytest.approx(1.0)
    assert first["day_of_week_sin"] == pytest.approx(np.sin(2 * np.pi * 3 / 7))


def test_input_order_does_not_matter(klines: pd.DataFrame, features: pd.DataFrame, funding: pd.DataFrame) -> None:
    shuffled = klines.sample(frac=1.0, random_state=3)
    assert_frames_close(compute_features(shuffled, "5", funding), features)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (lambda k: pd.concat([k, k.iloc[[10]]]), "duplicated open_time"),
        (lambda k: k.assign(close=k["close"].where(k.index != 5, -1.0)), "non-positive prices"),
        (lambda k: k.drop(columns="volume"), "lack column"),
    ],
)
def test_unusable_klines_are_rejected(klines: pd.DataFrame, defect, message: str, funding: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FeatureError, match=message):
        compute_features(defect(klines), "5", funding)
