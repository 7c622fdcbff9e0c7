"""Code tier: chronological purged splits and the train-only normaliser of `make_dataset`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dreamer.errors import ConfigError
from dreamer.features.build import FEATURE_COLUMNS, LONGEST_WINDOW, RETURN_HORIZON, compute_features
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import DatasetError
from dreamer.features.sampler import SequenceSampler
from dreamer.features.split import MIN_PURGE_BARS, make_dataset
from tests.feature_fixtures import synthetic_klines


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return compute_features(synthetic_klines(20000, missing=(range(8000, 8020), range(14000, 14003))), "5")


def assert_purged(bounds: dict[str, tuple[int, int]], purge: int) -> None:
    (train_start, train_stop), (val_start, val_stop), (test_start, test_stop) = (
        bounds["train"],
        bounds["val"],
        bounds["test"],
    )
    assert 0 == train_start < train_stop and val_start < val_stop and test_start < test_stop
    assert val_start - train_stop >= purge and test_start - val_stop >= purge


def test_minimum_purge_covers_the_longest_window_and_the_horizon() -> None:
    assert MIN_PURGE_BARS == LONGEST_WINDOW + RETURN_HORIZON


@pytest.mark.parametrize("cfg", [SplitConfig(), SplitConfig(train_fraction=0.5, val_fraction=0.25, purge_bars=2500)])
def test_fraction_splits_are_chronological_disjoint_and_purged(features: pd.DataFrame, cfg: SplitConfig) -> None:
    dataset = make_dataset(features, cfg)
    purge = cfg.purge_bars or MIN_PURGE_BARS
    assert_purged(dataset.splits, purge)
    assert dataset.meta["purge_bars"] == purge
    times = {name: dataset.open_time_ms[slice(*bounds)] for name, bounds in dataset.splits.items()}
    assert times["train"].max() < times["val"].min() and times["val"].max() < times["test"].min()
    # no feature window of val/test reaches a bar any earlier split's target used
    bar_ms = 300_000
    assert times["val"].min() - LONGEST_WINDOW * bar_ms > times["train"].max() + RETURN_HORIZON * bar_ms
    assert times["test"].min() - LONGEST_WINDOW * bar_ms > times["val"].max() + RETURN_HORIZON * bar_ms
    usable = len(dataset) - 2 * purge
    assert dataset.splits["train"][1] == int(usable * cfg.train_fraction)


def test_date_splits_start_at_the_given_dates(features: pd.DataFrame) -> None:
    cfg = SplitConfig(val_start="2026-02-10", test_start="2026-02-28T12:00")
    dataset = make_dataset(features, cfg)
    assert_purged(dataset.splits, MIN_PURGE_BARS)
    val_first = dataset.open_time_ms[dataset.splits["val"][0]]
    test_first = dataset.open_time_ms[dataset.splits["test"][0]]
    assert val_first == pd.Timestamp("2026-02-10", tz="UTC").value // 1_000_000
    assert test_first == pd.Timestamp("2026-02-28T12:00", tz="UTC").value // 1_000_000
    assert dataset.meta["split_times"]["test"][0] == "2026-02-28T12:00:00+00:00"


def test_warmup_rows_are_dropped_and_the_rest_kept(features: pd.DataFrame) -> None:
    dataset = make_dataset(features, SplitConfig())
    kept = features.loc[~features["warmup"]]
    np.testing.assert_array_equal(dataset.open_time_ms, kept["open_time_ms"].to_numpy())
    assert len(dataset) == len(features) - 3 * LONGEST_WINDOW  # three gap-free segments
    assert np.isfinite(dataset.obs).all()
    assert dataset.feature_names == FEATURE_COLUMNS


def test_normaliser_statistics_come_from_train_only(features: pd.DataFrame) -> None:
    dataset = make_dataset(features, SplitConfig())
    kept = features.loc[~features["warmup"], list(FEATURE_COLUMNS)].to_numpy()
    train = kept[slice(*dataset.splits["train"])]
    np.testing.assert_allclose(dataset.normaliser.mean, train.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dataset.normaliser.std, np.maximum(train.std(axis=0), 1e-6), rtol=1e-10)
    assert not np.allclose(dataset.normaliser.mean, kept.mean(axis=0), rtol=1e-6)  # the full sample differs


def test_sampler_on_real_splits_stays_inside_segments(features: pd.DataFrame) -> None:
    dataset = make_dataset(features, SplitConfig(train_fraction=0.6, val_fraction=0.2))
    for split in ("train", "val", "test"):
        sampler = SequenceSampler(dataset, split, seq_len=64, batch_size=32, seed=0)
        starts = sampler.starts.numpy()
        lo, hi = dataset.splits[split]
        assert starts.min() >= lo and starts.max() + 64 <= hi
        ends = starts + 63
        assert (dataset.segment_id[starts] == dataset.segment_id[ends]).all()
        assert ((dataset.open_time_ms[ends] - dataset.open_time_ms[starts]) == 63 * 300_000).all()


def test_a_purge_shorter_than_the_features_need_is_refused(features: pd.DataFrame) -> None:
    with pytest.raises(DatasetError, match="shorter than the longest feature window"):
        make_dataset(features, SplitConfig(purge_bars=10))


def test_too_little_data_is_a_clear_error(features: pd.DataFrame) -> None:
    with pytest.raises(DatasetError, match=r"split train would hold 0 rows .* use more data"):
        make_dataset(features.iloc[:700], SplitConfig())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_start": "2026-01-13"},
        {"val_start": "2026-02-01", "test_start": "2026-01-01"},
        {"val_start": "13/01/2026", "test_start": "2026-02-01"},
        {"train_fraction": 0.9, "val_fraction": 0.2},
    ],
)
def test_bad_split_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SplitConfig(**kwargs)  # type: ignore[arg-type]
