"""`dreamer benchmark` as a user runs it: synthetic markets through the whole library pipeline, the oracle on
the same test bars, every case in MLflow's `dreamer-benchmark` experiment, and a rerun that resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamer.cli import main


@pytest.mark.slow
def test_benchmark_runs_every_case_logs_it_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out, report = tmp_path / "runs", tmp_path / "benchmark.json"
    args = ["benchmark", "--config", "tiny", "--markets", "regime", "random_walk_leaked", "--seeds", "1"]
    args += ["--bars", "20000", "--out", str(out), "--metrics-out", str(report)]
    assert main(args) == 0

    payload = json.loads(report.read_text())
    assert [case["case"] for case in payload["cases"]] == ["regime-seed0", "random_walk_leaked-seed0"]
    regime = payload["cases"][0]
    assert regime["synthetic"] is True and set(regime["parameters"]) == {"drift_bps", "mean_regime_bars", "noise_bps"}
    assert 0.8 <= regime["parameters"]["drift_bps"] <= 1.5  # drawn from the acceptance ranges
    assert regime["oracle"]["sharpe"] > 3  # the oracle finds the drift on the test split
    assert set(regime["diagnostics"]) == {"forecast", "critic", "imagination"}
    assert -1 <= regime["world_model"]["forecast_corr_with_oracle"] <= 1
    assert set(payload["summary"]) == {"regime", "random_walk_leaked"}
    printed = capsys.readouterr().out
    assert "| market (synthetic) |" in printed and "| regime | 1 |" in printed
    sidecar = json.loads((out / "regime-seed0" / "synthetic-regime-seed0.csv.gz.json").read_text())
    assert sidecar["synthetic"] is True

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("dreamer-benchmark")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(run.info.run_name for run in children) == ["random_walk_leaked-seed0", "regime-seed0"]
    assert all(run.data.tags["dreamer.synthetic"] == "true" for run in runs)
    assert "oracle.sharpe" in children[0].data.metrics and "regime.passed" in parents[0].data.metrics

    finished = (out / "regime-seed0" / "result.json").stat().st_mtime_ns
    assert main(args) == 0  # a rerun reads the finished cases back instead of training again
    assert (out / "regime-seed0" / "result.json").stat().st_mtime_ns == finished
    assert json.loads(report.read_text())["cases"] == payload["cases"]
