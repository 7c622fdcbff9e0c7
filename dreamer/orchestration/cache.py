"""Cache key of the feature stage: a hash of exactly what it reads and of the code that turns it into a dataset.

The flow computes the key before building features (one read of the window's klines and funding from DuckDB, a
fraction of a second for a year of 5-minute bars) and keys the Prefect task cache and the dataset's
directory on it: same klines, same split settings, same feature code -> the dataset built before is
reused; any corrected candle or settlement, new bar, changed setting or edited SQL -> a new key. A cached
dataset is reused only from this runs directory's cache and only if it loads cleanly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from dreamer.config import RunConfig
from dreamer.paths import PROJECT_ROOT, SQL_DIR

FEATURE_CACHE_KEEP = 5
"""Cached datasets kept (most recently used first); a daily run on new bars gets a new key every day."""
FEATURE_CODE = ("dreamer/features/*.py", "dreamer/pipeline.py")
"""Python sources (besides every file of sql/) whose edits change the dataset built from the same klines."""


def features_cache_key(spec: Any, db_path: str | Path, cfg: RunConfig) -> str:
    """Key of `stage_features(spec, db_path, cfg, ...)`: 32 hex digits of a SHA-256."""
    from dreamer.data import store
    from dreamer.features.build import read_funding_for
    from dreamer.pipeline import data_window, funding_hash, klines_hash

    start, end = data_window(spec, db_path)
    con = store.connect(db_path, read_only=True)
    try:
        klines = store.read_klines(con, spec.category, spec.symbol, spec.interval, start=start, end=end)
        funding = read_funding_for(con, spec.category, spec.symbol, klines) if len(klines) else None
    finally:
        con.close()
    payload = {
        "market": [spec.source, spec.category, spec.symbol, spec.interval],
        "window": [start, end],
        "klines": klines_hash(klines) if len(klines) else "empty",
        "funding": funding_hash(funding),
        "split": dataclasses.asdict(cfg.split),
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prefect_cache_key(cache_key: str, dataset_dir: str | Path) -> str:
    """Key of the features task in Prefect's result cache: `cache_key` and the dataset's directory. That
    cache lives in the user's Prefect home, shared by every project: keyed on the data alone, a run would be
    handed the dataset directory of another project's run on the same data (gone once that is cleaned)."""
    location = hashlib.sha256(str(Path(dataset_dir).resolve()).encode()).hexdigest()[:16]
    return f"dreamer-features-{cache_key}-{location}"


def reusable_dataset(dataset_dir: str | Path) -> bool:
    """Whether `dataset_dir` holds a dataset that loads, every array read in full (zip checksums included):
    a missing, truncated or corrupted one is rebuilt rather than reused to fail a later stage."""
    from dreamer.features.dataset import MarketDataset

    try:
        MarketDataset.load(dataset_dir)
    except Exception:  # whatever the damage (a bad zip, a missing array, bad JSON), the cure is a rebuild
        return False
    return True


def code_fingerprint() -> str:
    """SHA-256 over the feature code: every SQL file and the `FEATURE_CODE` sources, by relative path."""
    digest = hashlib.sha256()
    files = sorted(SQL_DIR.glob("*.sql")) + sorted(p for pattern in FEATURE_CODE for p in PROJECT_ROOT.glob(pattern))
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def touch_and_prune(cache_root: str | Path, used: str | Path, keep: int = FEATURE_CACHE_KEEP) -> list[Path]:
    """Mark `used` (a directory under `cache_root`) as just used, then delete all but the `keep` most
    recently used directories. Returns the deleted ones (a Prefect cache record pointing at one of them is
    refreshed by the flow, not followed)."""
    os.utime(used)
    entries = sorted((p for p in Path(cache_root).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    stale = [p for p in entries[: max(len(entries) - keep, 0)] if p.resolve() != Path(used).resolve()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
