"""Data tier: features, dataset and sampler on the real bundled sample, through the store and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dreamer.cli import main
from dreamer.data import store
from dreamer.data.ingest import ingest_sample
from dreamer.features.build import FEATURE_COLUMNS, LONGEST_WINDOW, build_features, compute_features
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import MarketDataset
from dreamer.features.sampler import SequenceSampler
from dreamer.features.split import make_dataset
from tests.feature_fixtures import read_funding_csv, sample_klines

COLUMNS = ["open_time_ms", "segment_id", "after_gap", "warmup", *FEATURE_COLUMNS]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "dreamer.duckdb"
    ingest_sample(path)
    return path


def test_causal_on_real_klines() -> None:
    klines, funding = sample_klines(3000), read_funding_csv()
    full = compute_features(klines, "5", funding)
    for t in (288, 2015, 2016, 2017, 2500, 2999):
        truncated = compute_features(klines.iloc[: t + 1], "5", funding)
        for column in COLUMNS:
            np.testing.assert_allclose(
                truncated[column].to_numpy(dtype=float),
                full[column].iloc[: t + 1].to_numpy(dtype=float),
                rtol=1e-12,
                atol=1e-12,
                equal_nan=True,
                err_msg=f"{column} at t={t}",
            )


def test_build_features_from_the_store_equals_compute_features(db: Path) -> None:
    con = store.connect(db, read_only=True)
    try:
        stored = build_features(con, "linear", "BTCUSDT", "5", start="2026-02-01", end="2026-02-28 23:55")
    finally:
        con.close()
    klines = sample_klines()
    in_month = klines[(klines["open_time"] >= "2026-02-01") & (klines["open_time"] < "2026-03-01")]
    direct = compute_features(in_month, "5", read_funding_csv())
    assert len(stored) == 28 * 288 and stored["open_time"].iloc[0] == pd.Timestamp("2026-02-01", tz="UTC")
    pd.testing.assert_frame_equal(stored[COLUMNS], direct[COLUMNS])


def test_cli_exports_features_and_the_dataset(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, dataset_dir = tmp_path / "features.parquet", tmp_path / "dataset"
    args = ["features", "--symbol", "BTCUSDT", "--interval", "5", "--db", str(db), "--out", str(out)]
    assert main([*args, "--dataset-dir", str(dataset_dir), "--config", "demo"]) == 0
    assert f"58,092 bars x {len(FEATURE_COLUMNS)} features" in capsys.readouterr().out
    exported = pd.read_parquet(out)
    assert list(exported.columns[6 : 6 + len(FEATURE_COLUMNS)]) == list(FEATURE_COLUMNS) and len(exported) == 58_092
    dataset = MarketDataset.load(dataset_dir)
    assert len(dataset) == 58_092 - LONGEST_WINDOW and dataset.meta["symbol"] == "BTCUSDT"
    obs, ret = SequenceSampler(dataset, "val", seq_len=64, batch_size=16, seed=0).sample()
    assert obs.shape == (16, 64, len(FEATURE_COLUMNS)) and bool(ret.isfinite().all())
    assert dataset.funding.next_settlements.sum() > 580  # the real settlements after the first week, 3 a day


def test_dataset_of_the_whole_sample() -> None:
    dataset = make_dataset(compute_features(sample_klines(), "5", read_funding_csv()), SplitConfig())
    train = dataset.obs[slice(*dataset.splits["train"])]
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-4)
    assert np.isfinite(dataset.obs).all()
    assert np.isnan(dataset.next_log_return[-1]) and np.isfinite(dataset.next_log_return[:-1]).all()
