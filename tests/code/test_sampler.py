"""Code tier: MarketDataset round trip and the sequence sampler's window rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.features.dataset import DatasetError, MarketDataset, Normaliser
from dreamer.features.sampler import (
    SamplerError,
    SequenceSampler,
    consecutive_window_starts,
    valid_window_starts,
)

FEATURES = ("a", "b", "c")


def make_dataset(n: int = 400, gaps: tuple[int, ...] = (150,), missing: tuple[int, ...] = (60,)) -> MarketDataset:
    """Synthetic bars with a time gap before each row in `gaps` and a NaN return at each row in `missing`."""
    rng = np.random.default_rng(0)
    step = np.full(n, 300_000, dtype=np.int64)
    step[list(gaps)] = 900_000
    open_time_ms = 1_700_000_000_000 + np.cumsum(step)
    segment_id = np.zeros(n, dtype=np.int32)
    for gap in gaps:
        segment_id[gap:] += 1
    next_log_return = rng.normal(0, 1e-3, n).astype(np.float32)
    next_log_return[[g - 1 for g in gaps]] = np.nan  # the bar before a gap has no next bar
    next_log_return[list(missing)] = np.nan
    next_log_return[-1] = np.nan
    features = rng.normal(5.0, 2.0, (n, len(FEATURES)))
    features[:, 0] += np.arange(n) * 0.01  # drifts, so train-only statistics differ from full-sample ones
    splits = {"train": (0, 200), "val": (220, 300), "test": (320, n)}
    return MarketDataset.from_arrays(
        open_time_ms, 100 + np.arange(n, dtype=float), features, next_log_return, segment_id, FEATURES, splits
    )


def test_normaliser_is_fitted_on_train_rows_only() -> None:
    dataset = make_dataset()
    train = dataset.obs[slice(*dataset.splits["train"])].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)
    # The drifting feature is far from zero-mean outside train: statistics did not see those rows.
    assert dataset.obs[slice(*dataset.splits["test"]), 0].mean() > 1.0


def test_save_load_round_trip(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.save(tmp_path / "ds")
    loaded = MarketDataset.load(tmp_path / "ds")
    for name in ("open_time_ms", "close", "obs", "next_log_return", "segment_id"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(dataset, name))
        assert getattr(loaded, name).dtype == getattr(dataset, name).dtype
    assert loaded.splits == dataset.splits
    assert loaded.feature_names == dataset.feature_names
    np.testing.assert_array_equal(loaded.normaliser.mean, dataset.normaliser.mean)
    assert Normaliser.load(tmp_path / "ds" / "normaliser.json").feature_names == FEATURES


def test_load_of_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing dataset\.npz"):
        MarketDataset.load(tmp_path)


def test_overlapping_splits_are_rejected() -> None:
    dataset = make_dataset()
    with pytest.raises(DatasetError, match="chronological"):
        MarketDataset(**{**dataset.__dict__, "splits": {"train": (0, 200), "val": (150, 300), "test": (300, 400)}})


def _window_is_valid(dataset: MarketDataset, split: str, start: int, seq_len: int) -> bool:
    lo, hi = dataset.splits[split]
    rows = slice(start, start + seq_len)
    return (
        lo <= start
        and start + seq_len <= hi
        and len(set(dataset.segment_id[rows].tolist())) == 1
        and bool(np.isfinite(dataset.next_log_return[rows]).all())
        and bool((np.diff(dataset.open_time_ms[rows]) == 300_000).all())
    )


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("seq_len", [1, 16, 40])
def test_valid_starts_are_exactly_the_valid_windows(split: str, seq_len: int) -> None:
    dataset = make_dataset()
    lo, hi = dataset.splits[split]
    brute = [s for s in range(lo, hi) if _window_is_valid(dataset, split, s, seq_len)]
    assert valid_window_starts(dataset, split, seq_len).tolist() == brute
    assert brute  # the fixture leaves room for windows in every split


def test_samples_never_cross_a_gap_a_missing_return_or_a_split() -> None:
    dataset = make_dataset()
    sampler = SequenceSampler(dataset, "train", seq_len=32, batch_size=64, seed=1)
    obs_to_row = {tuple(row): i for i, row in enumerate(dataset.obs.tolist())}
    for _ in range(20):
        obs, ret = sampler.sample()
        assert obs.shape == (64, 32, 3) and ret.shape == (64, 32)
        assert obs.dtype == torch.float32 and ret.dtype == torch.float32
        assert torch.isfinite(ret).all()
        for window in obs.tolist():
            start = obs_to_row[tuple(window[0])]
            assert _window_is_valid(dataset, "train", start, 32)
            np.testing.assert_array_equal(np.asarray(window), dataset.obs[start : start + 32])


def test_sampler_is_reproducible_from_its_seed() -> None:
    dataset = make_dataset()
    first = SequenceSampler(dataset, "train", seq_len=16, batch_size=8, seed=7)
    second = SequenceSampler(dataset, "train", seq_len=16, batch_size=8, seed=7)
    other = SequenceSampler(dataset, "train", seq_len=16, batch_size=8, seed=8)
    torch.manual_seed(123)  # the global RNG must not matter
    a = [first.sample() for _ in range(3)]
    torch.manual_seed(456)
    b = [second.sample() for _ in range(3)]
    for (obs_a, ret_a), (obs_b, ret_b) in zip(a, b, strict=True):
        assert torch.equal(obs_a, obs_b) and torch.equal(ret_a, ret_b)
    assert not torch.equal(a[0][0], other.sample()[0])


def test_iter_windows_covers_each_valid_run_back_to_back() -> None:
    dataset = make_dataset()
    starts = consecutive_window_starts(dataset, "train", 16).tolist()
    # train rows 0..199: NaN return at 60 and at 149 (before the gap) -> runs [0,60), [61,150), [150,200)
    assert starts == [0, 16, 32, 61, 77, 93, 109, 125, 150, 166, 182]
    sampler = SequenceSampler(dataset, "train", seq_len=16, batch_size=4, seed=0)
    batches = list(sampler.iter_windows())
    assert [b[0].shape[0] for b in batches] == [4, 4, 3]
    obs = torch.cat([b[0] for b in batches])
    for window, start in zip(obs, starts, strict=True):
        np.testing.assert_array_equal(window.numpy(), dataset.obs[start : start + 16])
    assert [b[0].shape[0] for b in sampler.iter_windows(batch_size=100)] == [11]


def test_too_long_sequences_are_a_clear_error() -> None:
    with pytest.raises(SamplerError, match="no gap-free window of 90 bars"):
        SequenceSampler(make_dataset(), "val", seq_len=90)
