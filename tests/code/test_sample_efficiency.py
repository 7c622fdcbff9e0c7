"""The sample-efficiency experiment without training: the train split cut to its last N rows (val and test
untouched, the normaliser fitted on the rows kept, nothing before the cut reaching a method), its
arguments, and its summary and table on hand-made case results."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dreamer.envs import TradingEnv
from dreamer.errors import ConfigError
from dreamer.evaluation.baselines import fit_supervised
from dreamer.features.build import FEATURE_COLUMNS, compute_features, write_parquet
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import DatasetError, MarketDataset, Normaliser
from dreamer.features.sampler import SequenceSampler
from dreamer.features.split import make_dataset
from dreamer.sample_efficiency import (
    SampleEfficiencyCase,
    experiment_cases,
    markdown_table,
    parse_train_bars,
    real_source,
    restricted_dataset,
    summarise,
)
from tests.feature_fixtures import synthetic_klines

N = 3_000
POISON = 1e6
SPLIT = SplitConfig()


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    # a gap inside the train split, so the cut lands in a dataset of several segments
    return compute_features(synthetic_klines(24_000, missing=(range(12_000, 12_020),)), "5")


@pytest.fixture(scope="module")
def full(features: pd.DataFrame) -> MarketDataset:
    return make_dataset(features, SPLIT, {"symbol": "TEST", "interval": "5"})


@pytest.fixture(scope="module")
def cut(features: pd.DataFrame) -> MarketDataset:
    return make_dataset(features, SPLIT, {"symbol": "TEST", "interval": "5"}, train_bars=N)


def raw_features(features: pd.DataFrame) -> np.ndarray:
    """`[rows, F]` the symlog features of the dataset's rows (warm-up dropped), before normalising."""
    rows = features.loc[~features["warmup"].to_numpy(dtype=bool)].sort_values("open_time_ms")
    return rows[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)


def test_the_train_split_is_its_last_n_rows_and_val_and_test_are_unchanged(
    full: MarketDataset, cut: MarketDataset
) -> None:
    train_start, train_stop = full.splits["train"]
    assert train_stop - train_start > 2 * N  # the cut removes most of the train split
    assert cut.splits["train"] == (train_stop - N, train_stop)
    assert cut.splits["val"] == full.splits["val"] and cut.splits["test"] == full.splits["test"]
    for name in ("open_time_ms", "close", "next_log_return", "segment_id"):
        np.testing.assert_array_equal(getattr(cut, name), getattr(full, name))
    np.testing.assert_array_equal(cut.funding.next_rate, full.funding.next_rate)
    assert cut.meta["train_bars"] == N and "train_bars" not in full.meta
    first_train_time = pd.Timestamp(int(cut.open_time_ms[train_stop - N]), unit="ms", tz="UTC").isoformat()
    assert cut.meta["split_times"]["train"][0] == first_train_time


def test_the_normaliser_is_fitted_on_the_rows_used_only(
    features: pd.DataFrame, full: MarketDataset, cut: MarketDataset
) -> None:
    raw = raw_features(features)
    start, stop = cut.splits["train"]
    expected = Normaliser.fit(raw[start:stop], FEATURE_COLUMNS)
    np.testing.assert_array_equal(cut.normaliser.mean, expected.mean)
    np.testing.assert_array_equal(cut.normaliser.std, expected.std)
    np.testing.assert_array_equal(cut.obs, expected.apply(raw))  # every row, val and test included
    assert not np.allclose(cut.normaliser.mean, full.normaliser.mean)  # the cut changed what it was fitted on
    np.testing.assert_allclose(cut.obs[start:stop].mean(axis=0), 0.0, atol=1e-4)


def test_no_method_reads_a_row_before_the_cut(cut: MarketDataset) -> None:
    start = cut.splits["train"][0]
    # every array a method could read, poisoned before the cut: absurd features (finite, so that predicting
    # on every row still runs), unknown returns, prices doubled
    obs, returns, close = cut.obs.copy(), cut.next_log_return.copy(), cut.close.copy()
    obs[:start], returns[:start], close[:start] = POISON, np.nan, 2 * close[:start]
    poisoned = dataclasses.replace(cut, obs=obs, next_log_return=returns, close=close)

    # Dreamer's world model and policy train on windows of the train split's sampler
    sampler = SequenceSampler(poisoned, "train", seq_len=32, batch_size=64, seed=0)
    assert int(sampler.starts.min()) >= start
    sampled_obs, sampled_returns = sampler.sample()
    assert float(sampled_obs.abs().max()) < POISON and bool(sampled_returns.isfinite().all())
    # PPO's environment trades the train split from its first row on
    env = TradingEnv(poisoned, "train", episode_bars=64)
    assert env.first_row == start
    for seed in range(20):
        observation, info = env.reset(seed=seed)
        assert info["row"] >= start and np.abs(observation).max() < POISON
    # the supervised baseline: the same fit and band as without the poison
    kwargs: dict[str, Any] = {"horizon": 12, "ridge_alpha": 1.0, "band_quantiles": (0.5, 0.9)}
    clean, dirty = (fit_supervised(data, 6.5e-4, 105_120, **kwargs) for data in (cut, poisoned))
    assert (dirty.band, dirty.validation_sharpe) == (clean.band, clean.validation_sharpe)
    # (to rounding: the matrix product over all rows is blocked differently with the poisoned rows in it)
    np.testing.assert_allclose(dirty.forecasts[start:], clean.forecasts[start:], rtol=1e-9, atol=1e-15)


def test_a_train_size_outside_the_split_is_refused(features: pd.DataFrame, full: MarketDataset) -> None:
    rows = full.splits["train"][1] - full.splits["train"][0]
    for bad in (1, rows + 1):
        with pytest.raises(DatasetError, match="train_bars"):
            make_dataset(features, SPLIT, train_bars=bad)
    whole = make_dataset(features, SPLIT, {"symbol": "TEST", "interval": "5"}, train_bars=rows)
    np.testing.assert_array_equal(whole.obs, full.obs)  # N = the whole split is the ordinary dataset


def test_restricted_dataset_rebuilds_a_saved_dataset_from_its_features(
    tmp_path: Path, features: pd.DataFrame, full: MarketDataset, cut: MarketDataset
) -> None:
    full.save(tmp_path)
    write_parquet(features, tmp_path / "features.parquet")
    rebuilt = restricted_dataset(tmp_path, SPLIT, N)
    assert rebuilt.splits == cut.splits and rebuilt.meta == cut.meta
    np.testing.assert_array_equal(rebuilt.obs, cut.obs)
    np.testing.assert_array_equal(restricted_dataset(tmp_path, SPLIT, None).obs, full.obs)
    with pytest.raises(DatasetError, match="do not rebuild"):
        restricted_dataset(tmp_path, SplitConfig(train_fraction=0.6), N)


def test_train_bars_and_real_markets_are_parsed() -> None:
    assert parse_train_bars(["all", "50000", "5_000", "15,000", "5000"]) == (5_000, 15_000, 50_000, None)
    for bad in (["1"], ["many"], []):
        with pytest.raises(ConfigError):
            parse_train_bars(bad)


def test_a_real_market_names_its_symbol_or_takes_it_from_the_file_name(tmp_path: Path) -> None:
    klines, funding = tmp_path / "bybit_ETHUSDT_5m_2025-01.csv.gz", tmp_path / "funding.csv"
    klines.touch()
    funding.touch()
    source = real_source(f"{klines}:{funding}")
    assert (source.name, source.klines_path, source.funding_path, source.synthetic) == (
        "ETHUSDT",
        str(klines),
        str(funding),
        False,
    )
    assert real_source(f"btcusdt={funding}").name == "BTCUSDT"
    with pytest.raises(ConfigError, match="no symbol"):
        real_source(str(funding))
    with pytest.raises(ConfigError, match="is not a file"):
        real_source(f"{klines}:{tmp_path / 'missing.csv'}")


def test_an_n_not_smaller_than_the_train_split_repeats_all_and_is_left_out() -> None:
    markets = {"regime": {"train_rows": 40_000}, "BTCUSDT": {"train_rows": 100_000}}
    todo, skipped = experiment_cases(markets, (5_000, 50_000, None), [0, 1])
    assert skipped == {"regime": [50_000], "BTCUSDT": []}
    assert [case.name for case in todo if case.market == "regime"] == [
        "regime-n5000-seed0",
        "regime-n5000-seed1",
        "regime-nall-seed0",
        "regime-nall-seed1",
    ]
    assert len(todo) == 4 + 6
    assert SampleEfficiencyCase("ou", None, 3).name == "ou-nall-seed3"


def case_result(market: str, n: Any, rows: int, seed: int, sharpes: dict[str, float]) -> dict[str, Any]:
    return {
        "case": f"{market}-n{n}-seed{seed}",
        "market": market,
        "synthetic": market == "regime",
        "seed": seed,
        "train_bars": n,
        "train_rows": {"rows": rows},
        "test": {"start": "2025-03-04T00:00:00+00:00", "end": "2025-03-11T00:00:00+00:00", "bars": 2_000},
        "methods": {
            name: {
                "sharpe": value,
                "sharpe_ci": [value - 2.0, value + 4.0],
                "total_return": value / 100,
                "train_seconds": 120.0,
            }
            for name, value in sharpes.items()
        },
        "buy_and_hold": {"sharpe": -1.5, "total_return": -0.02},
        "oracle": {"sharpe": 20.0} if market == "regime" else None,
    }


def test_summary_orders_by_train_rows_and_spreads_over_seeds() -> None:
    results = [
        case_result("regime", "all", 40_000, 0, {"dreamer": 12.0, "ppo": 1.0, "supervised": 9.0}),
        case_result("regime", 5_000, 5_000, 0, {"dreamer": 4.0, "ppo": -3.0, "supervised": 6.0}),
        case_result("regime", 5_000, 5_000, 1, {"dreamer": 8.0, "ppo": -1.0, "supervised": 6.0}),
        case_result("BTCUSDT", 5_000, 5_000, 0, {"dreamer": 0.5, "ppo": -0.5, "supervised": 0.0}),
    ]
    summary = summarise(results)
    regime = summary["regime"]
    assert [row["train_bars"] for row in regime["rows"]] == [5_000, "all"]
    small = regime["rows"][0]
    assert small["seeds"] == [0, 1]
    assert small["methods"]["dreamer"]["sharpe"] == {"median": 6.0, "min": 4.0, "max": 8.0}
    assert small["methods"]["dreamer"]["sharpe_ci_half_width"]["median"] == 3.0
    assert [p["ci"] for p in small["methods"]["ppo"]["points"]] == [[-5.0, 1.0], [-3.0, 3.0]]
    assert regime["oracle_sharpe"] == 20.0 and summary["BTCUSDT"]["oracle_sharpe"] is None

    table = markdown_table(summary)
    assert "| regime (synthetic) | 5,000 | 6.00 [4.00, 8.00] ±3.00 | -2.00 [-3.00, -1.00] ±3.00 | 6.00 ±3.00 |" in table
    assert "| regime (synthetic) | all (40,000) | 12.00 ±3.00 |" in table
    assert "| BTCUSDT | 5,000 | 0.50 ±3.00 |" in table and table.rstrip().endswith("| n/a | -1.50 |")
