"""The MLflow store under several `dreamer run` processes at once: a fresh sqlite store is created and
migrated by exactly one of them, and all of them can use it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

OPENER = """
import sys, time
from pathlib import Path
import mlflow  # imported before the start signal, so that the processes open the store together
from dreamer.orchestration import tracking

Path(sys.argv[3]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
mlflow_client = tracking.client(sys.argv[1])
experiment_id = tracking.ensure_experiment(mlflow_client)
mlflow_client.create_run(experiment_id)
mlflow_client.search_registered_models()
"""


@pytest.mark.slow
def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(4)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, uri, str(go), str(flag)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.1)
    go.touch()
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output

    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    (experiment,) = client.search_experiments(filter_string="name = 'dreamer'")
    assert len(client.search_runs([experiment.experiment_id])) == 4
