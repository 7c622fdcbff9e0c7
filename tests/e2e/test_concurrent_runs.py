"""Stress: several `dreamer run` processes at once on one fresh MLflow store (issue 12's findings 1 and 2).

Each run is its own process with its own DuckDB file and run directory, reporting to the module's Prefect
test server; they share a fresh MLflow store, the registered model and its `champion` alias.
Afterwards the store must open, every run must have finished with a decision, and the champion must be
the best candidate on the (common) test window whatever order the runs finished in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from dreamer.orchestration.registry import CHAMPION, TAG_PREFIX, champion_version
from dreamer.paths import BUNDLED_CONFIGS_DIR

RUNS = 3
MODEL = "dreamer-linear-btcusdt-5"


@pytest.mark.slow
def test_concurrent_runs_share_one_store_and_end_with_the_best_champion(
    flow_env: dict[str, Any], tmp_path: Path
) -> None:
    import prefect.settings

    config = yaml.safe_load((BUNDLED_CONFIGS_DIR / "tiny.yaml").read_text())
    # every candidate passes the guard rails and a higher Sharpe is enough (tiny agents' differences are not
    # significant), so the champion is decided by the comparison alone
    config["promotion"] = {
        "metric": "sharpe",
        "metric_floor": None,
        "max_drawdown_limit": 1.0,
        "require_significance": False,
    }
    config_path = tmp_path / "stress.yaml"
    config_path.write_text(yaml.safe_dump(config))
    uri = flow_env["MLFLOW_TRACKING_URI"]
    server = str(prefect.settings.PREFECT_API_URL.value())

    processes = []
    for seed in range(RUNS):
        command = [
            sys.executable, "-m", "dreamer.cli", "run", "--source", "sample", "--config", str(config_path),
            "--prefect-api-url", server,
            "--seed", str(seed), "--threads", "1", "--db", str(tmp_path / f"db-{seed}.duckdb"),
            "--run-dir", str(tmp_path / f"run-{seed}"), "--metrics-out", str(tmp_path / f"report-{seed}.json"),
        ]  # fmt: skip
        log = (tmp_path / f"run-{seed}.log").open("w")
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    for process, log in processes:
        assert process.wait(timeout=900) == 0, Path(log.name).read_text()[-3000:]
        log.close()

    client = MlflowClient(uri, uri)  # the store opens and answers
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == RUNS
    assert all(f"{TAG_PREFIX}decision" in version.tags for version in versions)
    sharpe = {str(version.version): float(version.tags[f"{TAG_PREFIX}candidate_value"]) for version in versions}
    reports = [json.loads((tmp_path / f"report-{seed}.json").read_text()) for seed in range(RUNS)]
    assert len({json.dumps(report["evaluation"]["start"]) for report in reports}) == 1  # one window for all
    champion = champion_version(client, MODEL)
    assert champion is not None
    assert sharpe[str(champion.version)] == max(sharpe.values())
    # the tags agree with the alias: only the champion is tagged champion without having been replaced
    standing = [
        str(version.version)
        for version in versions
        if version.tags[f"{TAG_PREFIX}decision"] == CHAMPION and f"{TAG_PREFIX}replaced_by" not in version.tags
    ]
    assert standing == [str(champion.version)]
    runs = client.search_runs([client.get_experiment_by_name("dreamer").experiment_id])
    assert runs and all(run.info.status == "FINISHED" for run in runs)
