"""`dreamer run` as a process, with its temporary Prefect server: it does not follow the active profile to a
server (here one that is gone, as after `make down`), and leaves nothing listening when it completes or is
terminated."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SERVER_LINE = re.compile(r"Starting temporary server on http://127\.0\.0\.1:(\d+)")


def start_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """`dreamer run` on the bundled sample, in a Prefect home whose active profile points at a dead server;
    returns the process and its stderr file."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        'active = "gone"\n\n[profiles.gone]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "DREAMER_", "MLFLOW_"))}
    env |= {
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "DREAMER_RUNS_DIR": str(tmp_path / "runs"),
    }
    stderr = tmp_path / "stderr.log"
    command = [
        sys.executable, "-m", "dreamer.cli", "run", "--source", "sample", "--config", "tiny",
        "--start", "2026-05-01", "--db", str(tmp_path / "db.duckdb"),
    ]  # fmt: skip
    with stderr.open("w") as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    return process, stderr


def wait_for(stderr: Path, text: str, process: subprocess.Popen[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = stderr.read_text()
        if text in log:
            return log
        assert process.poll() is None, log
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the run's output within {timeout} s:\n{stderr.read_text()}")


def server_port(log: str) -> int:
    match = SERVER_LINE.search(log)
    assert match, log
    return int(match.group(1))


def assert_nothing_listens(port: int) -> None:
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, f"the temporary server still listens on {port}"


def test_a_run_does_not_follow_the_profile_and_stops_its_server(tmp_path: Path) -> None:
    process, stderr = start_run(tmp_path)
    assert process.wait(timeout=600) == 0, stderr.read_text()
    log = stderr.read_text()
    assert "Finished in state Completed()" in log and "127.0.0.1:9" not in log
    assert_nothing_listens(server_port(log))


def test_sigterm_stops_the_temporary_server_and_closes_the_mlflow_runs(tmp_path: Path) -> None:
    process, stderr = start_run(tmp_path)
    log = wait_for(stderr, "Task run 'ingest", process)  # the flow is running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM, stderr.read_text()
    assert_nothing_listens(server_port(log))

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    runs = client.search_runs([client.get_experiment_by_name("dreamer").experiment_id])
    (parent,) = (run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    assert parent.info.status == "FAILED"
    assert {run.info.status for run in runs} <= {"FINISHED", "FAILED"}  # nothing left RUNNING
