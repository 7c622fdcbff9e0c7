"""`make up` / `make down` (scripts/up.sh, scripts/down.sh) as a user runs them, isolated in temp dirs:
after `up`, a new shell with nothing but the Prefect profile reaches the server and finds `dreamer/daily`,
and the MLflow UI answers; `down` stops exactly the recorded processes and restores the previous profile."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dreamer.paths import PROJECT_ROOT
from tests.e2e.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

PROCESSES = ("prefect-server", "prefect-worker", "mlflow-ui")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_flow_process(worker: int, timeout: float = 180) -> int:
    """The PID of the first flow-run process the worker starts (`python -m prefect.engine`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(worker)], capture_output=True, text=True)
        for line in children.stdout.splitlines():
            pid, args = line.split(maxsplit=1)
            if "prefect" in args and "engine" in args:
                return int(pid)
        time.sleep(1)
    raise AssertionError(f"the worker started no flow run within {timeout} s")


def test_up_then_down(tmp_path: Path) -> None:
    prefect_port, mlflow_port = free_port(), free_port()
    home = tmp_path / "prefect-home"
    state = tmp_path / "state"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))},
        "PREFECT_HOME": str(home),
        "PREFECT_PORT": str(prefect_port),
        "MLFLOW_PORT": str(mlflow_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "DREAMER_STATE_DIR": str(state),
        "BIN": str(Path(sys.executable).parent),
    }
    up = subprocess.run(["bash", "scripts/up.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    pids = {name: int((state / f"{name}.pid").read_text()) for name in PROCESSES if (state / f"{name}.pid").exists()}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert set(pids) == set(PROCESSES) and all(alive(pid) for pid in pids.values())

        # A new shell: no PREFECT_API_URL, only the profile that `up` activated in PREFECT_HOME.
        shell = {k: v for k, v in env.items() if k != "PREFECT_PORT"}
        inspect = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "deployment", "inspect", "dreamer/daily"],
            cwd=tmp_path,
            env=shell,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert inspect.returncode == 0, inspect.stdout + inspect.stderr
        assert "'name': 'daily'" in inspect.stdout and "'work_pool_name': 'dreamer'" in inspect.stdout
        assert "0 * * *" in inspect.stdout and "UTC" in inspect.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health", timeout=10) as response:
            assert response.status == 200
        assert f'PREFECT_API_URL = "http://127.0.0.1:{prefect_port}/api"' in (home / "profiles.toml").read_text()

        again = subprocess.run(["bash", "scripts/up.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        assert again.returncode != 0 and "already running" in again.stderr  # and nothing was stopped by it
        assert all(alive(pid) for pid in pids.values())

        # A deployment run in progress when `down` comes: the worker's flow-run process must not outlive it.
        started = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "deployment", "run", "dreamer/daily",
             "--param", "source=sample", "--param", "config=daily", "--param", f"db_path={tmp_path / 'db.duckdb'}"],
            cwd=tmp_path, env=shell, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        flow_process = wait_for_flow_process(pids["prefect-worker"])
    finally:
        down = subprocess.run(
            ["bash", "scripts/down.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert "Cancelling flow run" in down.stdout and not alive(flow_process), down.stdout
    assert not list(state.glob("*.pid"))
    assert 'active = "ephemeral"' in (home / "profiles.toml").read_text()
    for port in (prefect_port, mlflow_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
