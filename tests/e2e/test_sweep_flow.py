"""`dreamer-sweep` on a local Dask cluster of 2 worker processes: the bundled sample slice, the tiny config,
2 folds × 2 seeds. Every task writes its result.json, every (market, config, seed, fold) gets its MLflow
child run under one parent run with the statistics table and the stitched curves; a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from flows.walk_forward import run_sweep

SAMPLE_SLICE = {"source": "sample", "start": "2026-03-01", "end": "2026-03-28"}


def sweep(flow_env: dict[str, Any], out: Path) -> dict[str, Any]:
    return run_sweep(
        workers=2,
        markets=[SAMPLE_SLICE],
        intervals=["5"],
        seeds=[0, 1],
        configs={"base": {}},
        config="tiny",
        overrides={"walk_forward": {"folds": 2}},
        out_dir=str(out),
        db_path=flow_env["db"],
        threads=1,
    )


@pytest.mark.slow
def test_sweep_on_two_dask_workers_logs_every_task(flow_env: dict[str, Any]) -> None:
    out = flow_env["root"] / "sweep"
    summary = sweep(flow_env, out)

    tasks = sorted((out / "linear-BTCUSDT-5" / "base" / "runs").glob("seed-*/fold-*/result.json"))
    assert len(tasks) == 4
    for path in tasks:
        result = json.loads(path.read_text())
        assert f"seed-{result['seed']}/fold-{result['fold']}" in str(path)
        assert "sharpe" in result["agent"] and "buy_and_hold" in result["baselines"]

    statistics = summary["statistics"]["symbols"]["BTCUSDT/5"]
    assert statistics["configs"]["base"]["runs"] == 4 and statistics["verdict"]
    assert (out / "summary.md").read_text().startswith("| market | config |")

    client = MlflowClient(flow_env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(summary["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted((c.data.tags["seed"], c.data.tags["fold"]) for c in children) == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1"),
    ]  # fmt: skip
    for child in children:
        metrics = child.data.metrics
        for key in ("agent.sharpe", "agent.sharpe_ci_low", "agent.sharpe_ci_high", "agent.total_return",
                    "agent.max_drawdown", "vs_buy_and_hold.sharpe_diff"):  # fmt: skip
            assert key in metrics, key
        result = json.loads((Path(child.data.tags["task_dir"]) / "result.json").read_text())
        assert metrics["agent.sharpe"] == pytest.approx(result["agent"]["sharpe"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "summary.json", "stitched"} <= artifacts
    curves = {a.path for a in client.list_artifacts(parent.info.run_id, "stitched/BTCUSDT-5/base")}
    assert curves == {"stitched/BTCUSDT-5/base/seed-0.npz", "stitched/BTCUSDT-5/base/seed-1.npz"}

    before = {path: path.stat().st_mtime_ns for path in tasks}
    again = sweep(flow_env, out)  # resumes: every task is finished, nothing is retrained
    assert {path: path.stat().st_mtime_ns for path in tasks} == before
    assert again["statistics"] == summary["statistics"]
