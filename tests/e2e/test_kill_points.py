"""`dreamer run` killed with -9 at each stage boundary and rerun on the same run directory ends with the
report of an uninterrupted run, byte for byte (issue 12, finding 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
KILL_AFTER = (" - world model: ", " - policy: ", " - held-out: ")
"""Log lines of finished stages (not their progress lines): killing right after one interrupts the next
(policy, evaluation, promotion)."""


def start_run(tmp_path: Path, name: str, run_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "DREAMER_", "MLFLOW_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "DREAMER_RUNS_DIR": str(tmp_path / "runs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
    }
    log = tmp_path / f"{name}.log"
    command = [
        sys.executable, "-m", "dreamer.cli", "run", "--source", "sample", "--config", "tiny", "--threads", "1",
        "--start", "2026-05-01", "--db", str(tmp_path / f"{run_dir.name}.duckdb"), "--run-dir", str(run_dir),
        "--metrics-out", str(tmp_path / f"{name}.json"),
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    return process, log


def kill_after(process: subprocess.Popen[str], log: Path, line: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while line not in log.read_text():
        assert process.poll() is None, f"the run ended before {line!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{line!r} not logged within {timeout} s"
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=30)


def test_a_run_killed_at_every_stage_and_rerun_reports_what_an_uninterrupted_run_does(tmp_path: Path) -> None:
    whole, whole_log = start_run(tmp_path, "whole", tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole_log.read_text()[-3000:]

    resumed_dir = tmp_path / "resumed"
    for point, line in enumerate(KILL_AFTER):
        killed, killed_log = start_run(tmp_path, f"killed-{point}", resumed_dir)
        kill_after(killed, killed_log, line)
    rerun, rerun_log = start_run(tmp_path, "resumed", resumed_dir)
    assert rerun.wait(timeout=600) == 0, rerun_log.read_text()[-3000:]
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
