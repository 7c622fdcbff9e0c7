"""`dreamer run` and `dreamer demo` as a user runs them: the Prefect flow on the bundled sample, without a
deployment, reproducible to the byte (under Prefect's test server, with MLflow and outputs in a temp dir)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from dreamer.cli import main
from dreamer.evaluation.baselines import BASELINE_NAMES


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_tiny(tmp_path: Path, name: str, seed: int = 0) -> tuple[Path, int]:
    out = tmp_path / f"{name}.json"
    code = main(
        [
            "run", "--source", "sample", "--config", "tiny", "--seed", str(seed), "--threads", "1",
            "--db", str(tmp_path / name / "db.duckdb"), "--run-dir", str(tmp_path / name / "run"),
            "--metrics-out", str(out),
        ]
    )  # fmt: skip
    return out, code


@pytest.mark.slow
def test_run_is_complete_and_reproducible(flow_env: dict[str, Any], tmp_path: Path, capsys) -> None:
    first, code = run_tiny(tmp_path, "first")
    assert code == 0
    printed = capsys.readouterr().out
    assert "agent" in printed and "buy_and_hold" in printed and "Sharpe" in printed
    assert f"run directory: {tmp_path / 'first' / 'run'}" in printed
    assert torch.get_num_threads() == 1  # --threads 1 reached the training and evaluation stages

    report = json.loads(first.read_text())
    for key in ("sharpe", "sortino", "max_drawdown", "total_return", "turnover", "sharpe_ci", "fees_paid"):
        assert key in report["agent"]
    assert tuple(report["baselines"]) == (*BASELINE_NAMES[:-1], "ppo", "random")  # tiny trains the PPO baseline
    assert set(report["comparison"]) == set(report["baselines"])
    for key in ("next_return_mse", "zero_forecast_mse", "direction_accuracy", "vol_forecast_corr"):
        assert isinstance(report["world_model"][key], float)
    assert report["config"]["name"] == "tiny" and report["config"]["dreamer"]["seed"] == 0
    data = report["data"]
    assert (data["symbol"], data["interval"], data["category"]) == ("BTCUSDT", "5", "linear")
    ends = []
    for split in ("train", "val", "test"):
        start, end = (datetime.fromisoformat(data[split][k]) for k in ("start", "end"))
        assert start.utcoffset().total_seconds() == 0 and start < end  # ISO-8601, UTC
        ends.append((start, end))
    assert ends[0][1] < ends[1][0] and ends[1][1] < ends[2][0]  # chronological
    assert report["evaluation"]["start"] == data["test"]["start"]
    run_dir = tmp_path / "first" / "run"
    for path in ("metrics.json", "evaluation/metrics.json", "evaluation/equity.png", "evaluation/drawdown.png",
                 "evaluation/positions.png", "evaluation/imagined_vs_real.png", "agent/checkpoint.pt",
                 "world_model/checkpoint.pt", "validation/report.html", "dataset/dataset.npz"):  # fmt: skip
        assert (run_dir / path).is_file(), path
    timings = json.loads((run_dir / "metrics.json").read_text())["timings_s"]
    assert set(timings) == {
        "ingest",
        "validate",
        "features",
        "warm_start",
        "world_model",
        "policy",
        "ppo",
        "evaluate",
        "promote",
    }

    from mlflow import MlflowClient  # the run is the flow's: tracked in MLflow, the agent registered

    client = MlflowClient(flow_env["MLFLOW_TRACKING_URI"], flow_env["MLFLOW_TRACKING_URI"])
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("dreamer").experiment_id],
        filter_string=f"tags.run_dir = '{run_dir}'",
    )
    assert parent.info.status == "FINISHED" and parent.data.tags["config"] == "tiny"
    assert client.get_latest_versions("dreamer-linear-btcusdt-5")

    second, code = run_tiny(tmp_path, "second")
    assert code == 0
    assert first.read_bytes() == second.read_bytes()  # same data, config, seed and threads on the CPU


@pytest.mark.slow
def test_demo_runs_the_flow_on_the_sample_and_summarises(
    flow_env: dict[str, Any], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dreamer.commands.demo.DEMO_CONFIG", "tiny")  # the demo's path, at test size
    assert main(["demo", "--db", str(tmp_path / "db.duckdb")]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("== dreamer demo: done ==") :]
    assert "data: linear/BTCUSDT 5m, " in summary and "2026-07-21T16:55:00+00:00" in summary
    assert "validation: passed" in summary
    assert "buy_and_hold" in summary and "agent Sharpe" in summary and "world model (test)" in summary
    assert "registry: dreamer-linear-btcusdt-5 version " in summary
    assert f"run directory: {flow_env['DREAMER_RUNS_DIR']}" in summary
    assert f"--backend-store-uri {flow_env['MLFLOW_TRACKING_URI']}" in summary


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    code = main(["run", "--source", "csv", "--symbol", "BTCUSDT", "--db", str(tmp_path / "db.duckdb")])
    assert code == 1
    assert "source csv needs a path" in capsys.readouterr().err
    code = main(["run", "--source", "sample", "--config", "nope", "--db", str(tmp_path / "db.duckdb")])
    assert code == 1
    assert "neither a bundled config" in capsys.readouterr().err
    code = main(["run", "--source", "sample", "--symbol", "ETHUSDT", "--db", str(tmp_path / "db.duckdb")])
    assert code == 1
    assert "bundled sample is linear/BTCUSDT/5" in capsys.readouterr().err
    code = main(["run", "--source", "sample", "--threads", "-1", "--db", str(tmp_path / "db.duckdb")])
    assert code == 1
    assert "threads must be >= 0" in capsys.readouterr().err

    from flows.pipeline import main as flow_main  # `python -m flows.pipeline` is `dreamer run`

    assert flow_main(["--source", "csv", "--db", str(tmp_path / "db.duckdb")]) == 1
    assert "source csv needs a path" in capsys.readouterr().err
    assert not (tmp_path / "db.duckdb").exists()  # rejected before anything ran


def test_data_spec_checks_and_windows(tmp_path):
    from dreamer.errors import ConfigError
    from dreamer.pipeline import DataSpec, data_window, stage_ingest

    spec = DataSpec(source="sample", symbol="btcusdt")
    assert spec.symbol == "BTCUSDT"
    with pytest.raises(ConfigError, match="source must be one of"):
        DataSpec(source="ftp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lookback_days"):
        DataSpec(source="sample", lookback_days=0)
    db = tmp_path / "db.duckdb"
    stage_ingest(spec, db)
    assert data_window(spec, db) == (None, None)  # every stored bar
    assert data_window(DataSpec(source="sample", start="2026-03-01", end="2026-04-01"), db) == (
        "2026-03-01",
        "2026-04-01",
    )
    start, end = data_window(DataSpec(source="sample", lookback_days=30), db)
    assert end is None and start == "2026-06-21T16:55:00+00:00"  # 30 days before the newest bar
