"""Benchmark: the scheduled daily job on a year of 5-minute bars, against the 15-minute budget (issue 13).

Two consecutive days of what the `dreamer/daily` deployment runs (`config: daily`), each a `dreamer run`
process against the loopback fake Bybit (`tests/fakes/bybit_server.py`) serving the real BTCUSDT klines and
funding of ../shared/data:

* day 1, a fresh machine: empty DuckDB and MLflow store; ingests the year (105,120 bars and its funding),
  trains from scratch (no champion yet) and registers the first champion;
* day 2, the next day: ingests the new day, uses the `lookback_days: 365` window like the deployment,
  fine-tunes day 1's champion (warm start), re-evaluates that champion on the new window and decides.
  Day 1's agent is made champion whatever it scores (`promotion.metric_floor: null`, the one change to the
  daily config), so that day 2 takes the warm-started path.

Each day's wall time is the whole `dreamer run` process (its temporary Prefect server included, which a
deployment run does not start), next to the flow's own stage timings. The torch threads are the flow's
default (1). Run: `.venv/bin/python -m bench.bench_daily` (about 20 minutes on 2 cores); needs ../shared/data.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dreamer.paths import BUNDLED_CONFIGS_DIR, PROJECT_ROOT
from dreamer.pipeline import RUN_REPORT
from tests.fakes.bybit_server import FakeBybit, FundingSeries, KlineSeries

SHARED = PROJECT_ROOT.parent / "shared" / "data"
KLINES = SHARED / "bybit_BTCUSDT_5m_2025-01_2026-07.csv.gz"
FUNDING = SHARED / "bybit_BTCUSDT_funding_8h_2025-01_2026-07.csv"
FIRST_BAR = "2025-07-01T00:00:00Z"
BARS_A_DAY = 288
YEAR_BARS = 365 * BARS_A_DAY
BUDGET_S = 15 * 60


def serve_until(series: KlineSeries, last: int) -> KlineSeries:
    """The candles up to index `last`, plus the next one, which the fake serves as still open."""
    return KlineSeries(rows=series.rows[: last + 2], open_time_ms=series.open_time_ms[: last + 2])


def run_day(fake_url: str, env: dict[str, str], config: Path, args: list[str], run_dir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "dreamer.cli", "run", "--source", "bybit", "--base-url", fake_url]
    command += ["--symbol", "BTCUSDT", "--interval", "5", "--config", str(config), "--run-dir", str(run_dir), *args]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
        raise SystemExit(f"dreamer run failed with exit code {done.returncode}")
    result = json.loads((run_dir / RUN_REPORT).read_text())  # the run's report, with its stage timings
    timings = {stage: round(seconds, 1) for stage, seconds in result["timings_s"].items()}
    policy = result["training"]["policy"]
    world_model = result["training"]["world_model"]
    return {
        "wall_s": round(wall, 1),
        "warm_start": result["training"]["warm_start"],
        "within_budget": wall <= BUDGET_S,
        "stage_s": timings,
        "rows": result["data"]["rows"],
        "world_model_steps": world_model["steps"],
        "world_model_best_step": world_model["final"].get("selection/best_step"),
        "policy_steps": policy["steps"],
        "policy_best_step": policy["final"].get("selection/best_step"),
        "agent_sharpe": round(result["agent"]["sharpe"], 3),
        "agent_mean_abs_position": round(result["agent"]["mean_abs_position"], 3),
    }


def main() -> None:
    if not KLINES.exists():
        raise SystemExit(f"{KLINES} is missing: this benchmark needs ../shared/data")
    series = KlineSeries.from_csv(KLINES)
    funding = FundingSeries.from_csv(FUNDING)
    first = int(np.searchsorted(series.open_time_ms, np.datetime64(FIRST_BAR.rstrip("Z"), "ms").astype(np.int64)))
    key = ("linear", "BTCUSDT", "5")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "DREAMER_DB": str(root / "dreamer.duckdb"),
            "DREAMER_RUNS_DIR": str(root / "runs"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "PREFECT_HOME": str(root / "prefect"),
        }
        # The daily config, except that day 1's agent becomes champion whatever it scores (no Sharpe floor),
        # so that day 2 measures the warm-started path the deployment takes once a champion exists.
        config = root / "daily.yaml"
        config.write_text((BUNDLED_CONFIGS_DIR / "daily.yaml").read_text() + "promotion:\n  metric_floor: null\n")
        days = {}
        last_of_day_one = first + YEAR_BARS - 1
        with FakeBybit({key: serve_until(series, last_of_day_one)}, {key[:2]: funding}) as fake:
            days["day_1_scratch"] = run_day(fake.url, env, config, ["--start", FIRST_BAR], root / "day1")
        with FakeBybit({key: serve_until(series, last_of_day_one + BARS_A_DAY)}, {key[:2]: funding}) as fake:
            days["day_2_warm_start"] = run_day(fake.url, env, config, ["--lookback-days", "365"], root / "day2")
    print(
        json.dumps(
            {
                "benchmark": "daily_flow_year_5m",
                "data": f"{KLINES.name}: {FIRST_BAR} + 365 days, then one more day",
                "budget_s": BUDGET_S,
                **days,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
