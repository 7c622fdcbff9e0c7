"""The features cache of the flow, under Prefect's test harness: a damaged cached dataset is rebuilt, not
reused to fail a later stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dreamer.features.dataset import DATASET_ARRAYS

pytestmark = pytest.mark.slow


def test_a_truncated_cached_dataset_is_rebuilt(flow_env: dict[str, Any], tmp_path: Path) -> None:
    from flows.pipeline import dreamer_flow

    params = {"source": "sample", "config": "tiny", "db_path": flow_env["db"], "start": "2026-05-01"}
    first = dreamer_flow(**params, run_dir=str(tmp_path / "first"))
    arrays = Path(first["data"]["dataset_dir"]) / DATASET_ARRAYS
    assert arrays.resolve().is_relative_to(Path(flow_env["DREAMER_RUNS_DIR"]).resolve())
    arrays.write_bytes(arrays.read_bytes()[:1000])  # a disk that filled up, a copy cut short

    second = dreamer_flow(**params, run_dir=str(tmp_path / "second"))
    assert not second["features_cached"] and second["data"] == first["data"]
    assert second["report"] == first["report"]
