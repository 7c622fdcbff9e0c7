"""`dreamer sweep` as a user runs it on a cluster: MLflow is an `mlflow server` reached over HTTP (its own
sqlite store and a served artifact store in another directory), the tasks run on a local Dask cluster of
2 worker processes. The parent run, one child per (seed, fold) and every artifact are read back through the
server, and the artifacts lie in the server's artifact destination, not in anything the sweep wrote. The
first try is killed (-9, the whole process group) as soon as a task has written its result: the rerun
leaves that task as it was and completes the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.servers import free_port, stop, wait_for_http

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

DREAMER = str(Path(sys.executable).with_name("dreamer"))
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[dict[str, Path | str]]:
    """`mlflow server` on a free loopback port, proxying an artifact store in its own directory."""
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = tmp_path / "mlflow-server.log"
    process = subprocess.Popen(
        [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", str(store / "artifacts")],
        cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, log)
        yield {"url": url, "artifacts": store / "artifacts"}
    finally:
        stop(process)


def test_sweep_logs_to_an_mlflow_server_over_http(tmp_path: Path, mlflow_server: dict[str, Path | str]) -> None:
    out, work = tmp_path / "sweep", tmp_path / "work"
    work.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))},
        "MLFLOW_TRACKING_URI": str(mlflow_server["url"]),
        "DREAMER_RUNS_DIR": str(tmp_path / "runs"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [
        DREAMER, "sweep", "--markets", "sample", "--start", "2026-03-01", "--end", "2026-03-28",
        "--config", "tiny", "--folds", "2", "--seeds", "2", "--workers", "2",
        "--db", str(tmp_path / "dreamer.duckdb"), "--out", str(out), "--metrics-out", str(tmp_path / "sweep.json"),
    ]  # fmt: skip
    runs = out / "linear-BTCUSDT-5" / "base" / "runs"
    first_try = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not list(runs.glob("seed-*/fold-*/result.json")):
        assert first_try.poll() is None and time.monotonic() < deadline, "the first try wrote no result"
        time.sleep(0.2)
    os.killpg(first_try.pid, signal.SIGKILL)
    first_try.wait()
    finished = {path: path.stat().st_mtime_ns for path in runs.glob("seed-*/fold-*/result.json")}
    assert 1 <= len(finished) < 4

    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| BTCUSDT/5 | base | 4 |" in done.stdout
    assert not (work / "mlflow").exists()  # nothing fell back to a local store
    assert len(list(runs.glob("seed-*/fold-*/result.json"))) == 4
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # kept, not redone

    summary = json.loads((tmp_path / "sweep.json").read_text())
    client = MlflowClient(str(mlflow_server["url"]))
    parent = client.get_run(summary["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server, reachable anywhere
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted((child.data.tags["seed"], child.data.tags["fold"]) for child in children) == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1"),
    ]  # fmt: skip
    for child in children:
        result = json.loads(
            Path(client.download_artifacts(child.info.run_id, "result.json", str(tmp_path))).read_text()
        )
        assert child.data.metrics["agent.sharpe"] == pytest.approx(result["agent"]["sharpe"])
        assert child.data.metrics["agent.sharpe_ci_low"] <= child.data.metrics["agent.sharpe_ci_high"]

    table = Path(client.download_artifacts(parent.info.run_id, "summary.md", str(tmp_path / "read-back")))
    assert table.read_text() == (out / "summary.md").read_text()
    served = {path.name for path in Path(mlflow_server["artifacts"]).rglob("*") if path.is_file()}
    assert {"summary.md", "summary.json", "seed-0.npz", "seed-1.npz", "result.json"} <= served
