"""`dreamer sample-efficiency` as a user runs it, on tiny settings: one synthetic market, N = 3,000 and all,
one seed; the three methods scored on the same test split, the JSON, the plot, the table, MLflow, and a
rerun that resumes instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamer.cli import main
from dreamer.features.dataset import MarketDataset


@pytest.mark.slow
def test_sample_efficiency_trains_the_three_methods_on_the_last_n_bars_and_resumes(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out, report, plot = tmp_path / "runs", tmp_path / "se.json", tmp_path / "se.png"
    args = ["sample-efficiency", "--config", "tiny", "--markets", "regime", "--bars", "20000"]
    args += ["--train-bars", "3000", "all", "100000", "--seeds", "1", "--out", str(out)]
    args += ["--metrics-out", str(report), "--plot", str(plot)]
    assert main(args) == 0

    payload = json.loads(report.read_text())
    market = payload["markets"]["regime"]
    assert market["synthetic"] is True and market["oracle"]["sharpe"] > 3  # the drift is there to be found
    assert payload["left_out"] == {"regime": [100_000]}  # more than the train split: it would repeat "all"
    small, whole = payload["cases"]
    assert (small["case"], whole["case"]) == ("regime-n3000-seed0", "regime-nall-seed0")
    assert small["train_rows"]["rows"] == 3_000 and whole["train_rows"]["rows"] == market["train_rows"]
    assert small["train_rows"]["end"] == whole["train_rows"]["end"]  # the last N bars of the same train split
    assert small["test"] == whole["test"]  # the same test window, bootstrap and costs for every N
    for case in (small, whole):
        assert set(case["methods"]) == {"dreamer", "ppo", "supervised"}
        for method in case["methods"].values():
            low, high = method["sharpe_ci"]
            assert low <= method["sharpe"] <= high and method["train_seconds"] > 0
            assert method["total_return"] is not None
        assert case["budget"]["ppo_env_steps"] == 256  # the tiny config's
        assert set(case["dreamer_minus"]) == {"ppo", "supervised"}
        versus = case["dreamer_minus"]["supervised"]
        assert versus["sharpe_diff"] == pytest.approx(
            case["methods"]["dreamer"]["sharpe"] - case["methods"]["supervised"]["sharpe"]
        )
        assert case["resumed"] is False  # trained in one go: its seconds are the whole training's
    cut = MarketDataset.load(out / "regime-n3000-seed0" / "dataset")
    full = MarketDataset.load(market["dataset_dir"])
    assert cut.splits["val"] == full.splits["val"] and cut.splits["test"] == full.splits["test"]
    assert cut.splits["train"][1] - cut.splits["train"][0] == 3_000
    assert not np.allclose(cut.normaliser.mean, full.normaliser.mean)  # fitted on the 3,000 rows used

    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 20_000
    table = (out / "sample_efficiency.md").read_text()
    assert (
        "| regime (synthetic) | 3,000 |" in table
        and f"| regime (synthetic) | all ({market['train_rows']:,}) |" in table
    )
    assert table in capsys.readouterr().out

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("dreamer-sample-efficiency")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    children = sorted(run.info.run_name for run in runs if "mlflow.parentRunId" in run.data.tags)
    assert children == ["regime-n3000-seed0", "regime-nall-seed0"]

    finished = [(out / name / "result.json").stat().st_mtime_ns for name in children]
    assert main(args) == 0  # a rerun reads the finished cases back instead of training again
    assert [(out / name / "result.json").stat().st_mtime_ns for name in children] == finished
    assert json.loads(report.read_text())["cases"] == payload["cases"]
