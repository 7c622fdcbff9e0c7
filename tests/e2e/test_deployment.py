"""End to end, as a user: a real Prefect server, `prefect deploy` from prefect.yaml, a process worker, and
`prefect deployment run dreamer/daily` against the loopback fake Bybit, with the tiny config.

Checks that the run Completed, the fake's closed klines are in DuckDB, and the registry has a champion.
Everything started here (server, worker, fake) is stopped at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dreamer.paths import BUNDLED_CONFIGS_DIR, PROJECT_ROOT, SAMPLE_CSV
from tests.conftest import FAKE_FUNDING_KEY, FAKE_SERIES_KEY
from tests.e2e.servers import free_port, stop, wait_for_http
from tests.fakes.bybit_server import FakeBybit, FundingSeries, KlineSeries

DEPLOYMENT_CANDLES = 12_321
"""What the fake serves here: a tiny run needs a week of feature warm-up and two week-long purges besides
its splits (the ingestion tests' shorter series would leave no train split)."""

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]
LOOSE_GUARD_RAILS = "promotion:\n  max_drawdown_limit: 1.0\n  metric_floor: null\n"
"""An agent trained 20 steps loses money: without these, the tiny config would never produce a champion."""

PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "dreamer"  # prefect.yaml's work pool


@pytest.fixture
def deployment_bybit(sample_funding: FundingSeries) -> Iterator[FakeBybit]:
    """A fake Bybit serving the first DEPLOYMENT_CANDLES candles of the sample and its funding."""
    series = KlineSeries.from_csv(SAMPLE_CSV, count=DEPLOYMENT_CANDLES)
    with FakeBybit({FAKE_SERIES_KEY: series}, {FAKE_FUNDING_KEY: sample_funding}) as fake:
        yield fake


@pytest.fixture
def stack(tmp_path: Path, deployment_bybit: FakeBybit) -> Iterator[dict[str, Any]]:
    """A Prefect server on a free loopback port with a temporary PREFECT_HOME, and the environment a
    worker would be started in (Bybit URL, MLflow store, runs dir, all temporary)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLI_COLORS": "false",
        "DREAMER_BYBIT_URL": deployment_bybit.url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "DREAMER_RUNS_DIR": str(tmp_path / "runs"),
    }
    env.pop("DREAMER_DB", None)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [PREFECT, *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so `stop` reaches its children
        )
        processes.append(process)
        return process

    server = spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_for_http(f"{api}/health", server, tmp_path / "server.log")
        yield {"env": env, "spawn": spawn, "tmp": tmp_path, "fake": deployment_bybit, "api": api}
    finally:
        for process in reversed(processes):
            stop(process)


def prefect(stack: dict[str, Any], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [PREFECT, *args], cwd=PROJECT_ROOT, env=stack["env"], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_deployment_run_from_a_user_shell(stack: dict[str, Any]) -> None:
    tmp: Path = stack["tmp"]
    config = tmp / "tiny.yaml"
    config.write_text((BUNDLED_CONFIGS_DIR / "tiny.yaml").read_text() + LOOSE_GUARD_RAILS)
    db = tmp / "data" / "dreamer.duckdb"

    prefect(stack, "work-pool", "create", POOL, "--type", "process")
    deployed = prefect(stack, "--no-prompt", "deploy", "--name", "daily")
    assert "dreamer/daily" in deployed
    worker = stack["spawn"]("worker", "worker", "start", "--pool", POOL, "--name", "e2e-worker")

    params = ["source=bybit", "symbol=BTCUSDT", "category=linear", "lookback_days=365"]
    params += [f"config={config}", f"db_path={db}"]
    started = time.monotonic()
    command = [PREFECT, "deployment", "run", "dreamer/daily", "--watch", "--watch-timeout", "600"]
    command += [arg for param in params for arg in ("--param", param)]
    run = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=700,
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    worker_log = (tmp / "worker.log").read_text(errors="replace")
    assert worker.poll() is None, f"the worker died:\n{worker_log[-3000:]}"
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output
    state = flow_run_state(stack["api"], match.group(1))
    assert state == "COMPLETED", f"flow run ended {state} after {elapsed:.0f} s\n{output[-2000:]}\n{worker_log[-4000:]}"

    # The klines came from the fake Bybit named by DREAMER_BYBIT_URL, and every closed one is stored.
    fake: FakeBybit = stack["fake"]
    assert fake.kline_requests, "the worker never called the fake Bybit"
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(
            "SELECT count(*) FROM klines WHERE category = ? AND symbol = ? AND interval = ?", list(FAKE_SERIES_KEY)
        ).fetchone()
    assert stored is not None and stored[0] == len(fake.closed_rows(FAKE_SERIES_KEY))

    # The registry at the worker's MLFLOW_TRACKING_URI has a champion, written by this flow run.
    from mlflow import MlflowClient

    uri = stack["env"]["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri, uri)
    champion = client.get_model_version_by_alias("dreamer-linear-btcusdt-5", "champion")
    assert champion.tags["promotion.decision"] == "champion"
    assert champion.run_id is not None
    parent = client.get_run(champion.run_id)
    assert parent.data.tags["prefect.flow_run_id"] == match.group(1)
    assert parent.data.tags["prefect.deployment"] == "daily"
    assert parent.info.status == "FINISHED"


def flow_run_state(api: str, flow_run_id: str) -> str:
    with urllib.request.urlopen(f"{api}/flow_runs/{flow_run_id}", timeout=10) as response:
        return str(json.load(response)["state"]["type"])
