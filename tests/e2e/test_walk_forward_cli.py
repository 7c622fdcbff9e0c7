"""`dreamer walk-forward` as a user runs it: two folds of the bundled sample with the tiny config, stitched;
a rerun resumes from the finished tasks without training again; a changed config is refused.
The statistics (`dreamer.research.statistics.summarise`) see every (seed, fold) and the stitched curve."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.cli import main
from dreamer.evaluation.baselines import BASELINE_NAMES
from dreamer.research.backtests import load_backtests

BAR = timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def walk_forward(tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "walk-forward", "--source", "sample", "--config", "tiny", "--start", "2026-03-01", "--end", "2026-03-28",
            "--seeds", "1", "--folds", "2", "--threads", "1", "--db", str(tmp_path / "db.duckdb"),
            "--out", str(tmp_path / "wf"), "--metrics-out", str(tmp_path / "wf.json"), *extra,
        ]
    )  # fmt: skip


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text  # ISO-8601, UTC
    return moment


@pytest.mark.slow
def test_walk_forward_stitches_the_folds_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert walk_forward(tmp_path) == 0
    printed = capsys.readouterr().out
    assert "seed 0 fold 1: test" in printed and "buy_and_hold" in printed
    report = json.loads((tmp_path / "wf.json").read_text())
    assert report["walk_forward"]["seeds"] == [0] and report["walk_forward"]["folds"] == 2
    purge = report["data"]["purge_bars"]

    folds = report["folds"]
    assert [(f["seed"], f["fold"]) for f in folds] == [(0, 0), (0, 1)]
    for fold in folds:
        train, val, test = (fold[split] for split in ("train", "val", "test"))
        assert (utc(val["start"]) - utc(train["end"])) / BAR - 1 >= purge  # purged, in bars left out
        assert (utc(test["start"]) - utc(val["end"])) / BAR - 1 >= purge
        assert fold["window"]["start"] == test["start"] and fold["window"]["end"] == test["end"]
        assert tuple(fold["baselines"]) == (*BASELINE_NAMES[:-1], "ppo", "random")  # as `dreamer run`
        assert set(fold["comparison"]) == set(fold["baselines"])
        for key in ("sharpe", "sharpe_ci", "total_return", "max_drawdown", "fees_paid", "funding_paid"):
            assert key in fold["agent"]
    assert folds[0]["test"]["end"] == folds[1]["test"]["start"]  # consecutive: one window's end opens the next
    assert folds[1]["test"]["end"] == "2026-03-28T00:00:00+00:00"  # the last fold ends at the data's end
    assert utc(folds[1]["test"]["end"]) - utc(folds[1]["test"]["start"]) == timedelta(days=1)

    stitched = report["stitched"]
    assert stitched["test"] == {
        "start": folds[0]["test"]["start"],
        "end": folds[1]["test"]["end"],
        "bars": sum(f["window"]["bars"] for f in folds),
    }
    assert stitched["seeds"] == [0] and stitched["per_seed"][0]["seed"] == 0
    for name in ("agent", "buy_and_hold", "momentum"):
        metrics = stitched["agent"] if name == "agent" else stitched["baselines"][name]
        per_fold = [f["agent"] if name == "agent" else f["baselines"][name] for f in folds]
        assert metrics["total_return"] == pytest.approx(np.prod([1 + m["total_return"] for m in per_fold]) - 1)
        assert metrics["num_trades"] == sum(m["num_trades"] for m in per_fold)
        low, high = metrics["sharpe_ci"]
        assert low <= high and "max_drawdown" in metrics
    assert set(stitched["comparison"]) == set(stitched["baselines"])

    # The stitched account is the fold backtests, concatenated exactly.
    runs = tmp_path / "wf" / "runs" / "seed-0"
    fold_backtests = [load_backtests(runs / f"fold-{k}" / "evaluation" / "backtests.npz") for k in range(2)]
    curve = load_backtests(tmp_path / "wf" / "stitched" / "seed-0.npz")
    for name in curve.names:
        expected = np.concatenate([b.results[name].net_returns for b in fold_backtests])
        assert np.array_equal(curve.results[name].net_returns, expected), name

    summary = report["statistics"]["symbols"]["BTCUSDT/5"]
    tiny = summary["configs"]["tiny"]
    assert (tiny["seeds"], tiny["folds"], tiny["runs"]) == (1, 2, 2)
    assert tiny["sharpe"] == pytest.approx(np.mean([fold["agent"]["sharpe"] for fold in folds]))
    assert set(tiny["baselines"]) == set(folds[0]["baselines"])
    assert tiny["deflated_sharpe"]["num_bars"] == stitched["test"]["bars"]
    assert summary["verdict"].startswith("BTCUSDT/5")

    # A rerun trains nothing (every task finished) and reports the same.
    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished fold was trained again")

    for stage in ("stage_train_world_model", "stage_train_policy", "stage_train_ppo", "stage_evaluate"):
        monkeypatch.setattr(f"dreamer.pipeline.{stage}", must_not_train)
    first = (tmp_path / "wf.json").read_bytes()
    assert walk_forward(tmp_path) == 0
    assert (tmp_path / "wf.json").read_bytes() == first

    assert walk_forward(tmp_path, "--test-days", "0.5") == 1  # another plan on the same --out: refused
    assert "holds a walk-forward with another config and folds" in capsys.readouterr().err


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys) -> None:
    assert walk_forward(tmp_path, "--seeds", "0") == 1
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert walk_forward(tmp_path, "--workers", "0") == 1
    assert "workers must be >= 1" in capsys.readouterr().err
    assert walk_forward(tmp_path, "--folds", "0") == 1
    assert "walk_forward.folds must be in [1, 1,000], got 0" in capsys.readouterr().err
    assert not (tmp_path / "db.duckdb").exists()  # rejected before anything ran


@pytest.mark.slow
def test_evaluation_without_diagnostics_backtests_the_same(tmp_path: Path) -> None:
    """`evaluation.diagnostics: false` (the `sweep` config) skips the forecast scores, diagnostics, plots and
    tear sheet, and changes no backtest: the agent's and every baseline's numbers are those of a full one."""
    from dreamer.config import load_config
    from dreamer.pipeline import stage_evaluate

    assert walk_forward(tmp_path, "--folds", "1") == 0
    fold = tmp_path / "wf" / "runs" / "seed-0" / "fold-0"
    full = json.loads((fold / "evaluation" / "metrics.json").read_text())
    lean = stage_evaluate(
        tmp_path / "wf" / "folds" / "fold-0",
        fold / "agent" / "checkpoint.pt",
        load_config("tiny", {"evaluation": {"diagnostics": False}}),
        tmp_path / "lean",
        ppo_model=fold / "ppo",
    )
    assert full["world_model"] and full["diagnostics"]
    assert lean["agent"] == full["agent"] and lean["baselines"] == full["baselines"]
    assert lean["comparison"] == full["comparison"]
    assert lean["world_model"] == {} and lean["plots"] == {} and lean["tearsheet"] is None
    assert sorted(path.name for path in (tmp_path / "lean").iterdir()) == ["backtests.npz", "metrics.json"]
