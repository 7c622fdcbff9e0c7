"""`dreamer run` as a process, with its temporary Prefect server: it does not follow the active profile to a
server (here one that is gone, as after `make down`), and leaves nothing listening when it completes or is
terminated; a server left by a run killed with -9 is stopped by the next run."""

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


def start_run(tmp_path: Path, log_name: str = "stderr.log") -> tuple[subprocess.Popen[str], Path]:
    """`dreamer run` on the bundled sample, in a Prefect home whose active profile points at a dead server;
    returns the process and its stderr file."""
    home = tmp_path / "prefect-home"
    home.mkdir(exist_ok=True)
    (home / "profiles.toml").write_text(
        'active = "gone"\n\n[profiles.gone]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "DREAMER_", "MLFLOW_"))}
    env |= {
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "DREAMER_RUNS_DIR": str(tmp_path / "runs"),
    }
    stderr = tmp_path / log_name
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


def test_a_server_left_by_a_run_killed_with_9_is_stopped_by_the_next_run(tmp_path: Path) -> None:
    killed, killed_log = start_run(tmp_path, "killed.log")
    port = server_port(wait_for(killed_log, "Task run 'ingest", killed))
    killed.kill()  # SIGKILL: no clean-up of its own can run
    killed.wait(timeout=30)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) == 0  # its server is orphaned, still listening

    rerun, rerun_log = start_run(tmp_path, "rerun.log")
    log = wait_for(rerun_log, "Starting temporary server", rerun)
    assert "left listening by a killed run" in log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    assert_nothing_listens(port)
    rerun.send_signal(signal.SIGTERM)
    rerun.wait(timeout=60)
