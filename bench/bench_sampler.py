"""Throughput of the sequence sampler and time to build features (and validate) one year of 5m klines.

    .venv/bin/python -m bench.bench_sampler

Prints one JSON object per measurement. The sampler runs on a MarketDataset of 163,212 bars x 32 features
(random values, a gap every ~20k bars: only the shapes matter for its speed). Feature building and
validation run on one year of real BTCUSDT 5m klines (2025, 105,120 bars) from ../shared/data, or on the
bundled sample (58,092 bars) where that is absent.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamer.data import store
from dreamer.data.ingest import ingest_csv
from dreamer.features.build import build_features
from dreamer.features.config import SplitConfig, ValidationConfig
from dreamer.features.dataset import MarketDataset
from dreamer.features.sampler import SequenceSampler
from dreamer.features.split import make_dataset
from dreamer.features.validate import validate_series
from dreamer.paths import PROJECT_ROOT, SAMPLE_CSV, SAMPLE_FUNDING_CSV

SHARED_BTC = PROJECT_ROOT.parent / "shared" / "data" / "bybit_BTCUSDT_5m_2025-01_2026-07.csv.gz"
SHARED_BTC_FUNDING = SHARED_BTC.with_name("bybit_BTCUSDT_funding_8h_2025-01_2026-07.csv")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_dataset(bars: int = 163_212, features: int = 32) -> MarketDataset:
    rng = np.random.default_rng(0)
    step = np.full(bars, 300_000, dtype=np.int64)
    gaps = np.arange(20_000, bars, 20_000)
    step[gaps] = 600_000
    segment_id = np.cumsum(np.isin(np.arange(bars), gaps)).astype(np.int32)
    next_log_return = rng.normal(0, 1e-3, bars)
    next_log_return[gaps - 1] = np.nan
    next_log_return[-1] = np.nan
    return MarketDataset.from_arrays(
        open_time_ms=1_735_689_600_000 + np.cumsum(step),
        close=np.full(bars, 1.0),
        features=rng.normal(size=(bars, features)),
        next_log_return=next_log_return,
        segment_id=segment_id,
        feature_names=[f"f{i}" for i in range(features)],
        splits={"train": (0, 114_000), "val": (114_300, 138_000), "test": (138_300, bars)},
    )


def bench_sampler(device: str, threads: int, batch_size: int = 16, seq_len: int = 64, iterations: int = 3000) -> None:
    torch.set_num_threads(threads)
    dataset = synthetic_dataset()
    start = time.perf_counter()
    sampler = SequenceSampler(dataset, "train", seq_len=seq_len, batch_size=batch_size, seed=0, device=device)
    build_s = time.perf_counter() - start
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(100):
        sampler.sample()
    sync()
    start = time.perf_counter()
    for _ in range(iterations):
        sampler.sample()
    sync()
    elapsed = time.perf_counter() - start
    emit(
        {
            "bench": "sampler.sample",
            "device": device,
            "torch_threads": threads,
            "bars": len(dataset),
            "features": dataset.num_features,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "valid_windows": sampler.num_windows,
            "setup_s": round(build_s, 4),
            "batches_per_s": round(iterations / elapsed, 1),
            "sequences_per_s": round(iterations * batch_size / elapsed, 1),
            "us_per_batch": round(1e6 * elapsed / iterations, 1),
        }
    )
    start = time.perf_counter()
    windows = sum(obs.shape[0] for obs, _ in sampler.iter_windows(batch_size=256))
    sync()
    emit(
        {
            "bench": "sampler.iter_windows",
            "device": device,
            "torch_threads": threads,
            "windows": windows,
            "seconds": round(time.perf_counter() - start, 4),
        }
    )


def bench_features() -> None:
    source, funding, start, end = (
        (SHARED_BTC, SHARED_BTC_FUNDING, "2025-01-01", "2025-12-31 23:55")
        if SHARED_BTC.exists()
        else (SAMPLE_CSV, SAMPLE_FUNDING_CSV, None, None)
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        ingest_csv(db, source, "linear", "BTCUSDT", "5", funding_path=funding)  # the gate checks funding too
        con = store.connect(db, read_only=True)
        try:
            features = build_features(con, "linear", "BTCUSDT", "5", start=start, end=end)
            build_s = median_seconds(lambda: build_features(con, "linear", "BTCUSDT", "5", start=start, end=end), 3)
            dataset_s = median_seconds(lambda: make_dataset(features, SplitConfig()), 3)
            validate_series(con, "linear", "BTCUSDT", "5", ValidationConfig(), start=start, end=end)  # GX import
            validate_s = median_seconds(
                lambda: validate_series(con, "linear", "BTCUSDT", "5", ValidationConfig(), start=start, end=end), 3
            )
        finally:
            con.close()
    common = {"source": source.name, "start": start, "end": end, "bars": len(features)}
    emit(
        {
            "bench": "features.build_features",
            **common,
            "seconds": round(build_s, 3),
            "bars_per_s": round(len(features) / build_s),
        }
    )
    emit({"bench": "features.make_dataset", **common, "seconds": round(dataset_s, 3)})
    emit({"bench": "features.validate_series", **common, "seconds": round(validate_s, 3)})


def main() -> None:
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        bench_sampler("cpu", threads)
    if torch.cuda.is_available():
        bench_sampler("cuda", default_threads)
    torch.set_num_threads(default_threads)
    bench_features()


if __name__ == "__main__":
    main()
