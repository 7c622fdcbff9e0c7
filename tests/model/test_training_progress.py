"""A training stage's curve streamed to a real MLflow store by the real trainer, interrupted and resumed
in a new run (as a rerun of the flow does): the resumed run's curve holds every step once, with the values
of metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dreamer.features.dataset import MarketDataset
from dreamer.orchestration import stage_logs, tracking
from dreamer.orchestration.progress import WORLD_MODEL_SHOWN, TrainingProgress
from dreamer.orchestration.tracking import RunLogger, read_jsonl
from dreamer.training import train_world_model
from tests.model.conftest import TINY


class Interrupted(Exception):
    pass


def stage_result(result: Any) -> dict[str, Any]:
    return {"metrics_path": str(result.metrics_path), "steps": result.steps, "seconds": result.seconds}


def test_a_resumed_world_model_stage_streams_and_backfills_each_step_once(
    small_market: MarketDataset, tmp_path: Path
) -> None:
    client = tracking.client(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment_id = tracking.ensure_experiment(client, "tests")
    out = tmp_path / "world_model"
    total = TINY.world_model_steps  # 6

    interrupted = RunLogger(client, client.create_run(experiment_id).info.run_id)
    progress = TrainingProgress("world model", total, interrupted, shown=WORLD_MODEL_SHOWN, every=2)

    def report_then_stop_at_5(step: int, metrics: dict[str, float]) -> None:
        progress(step, metrics)
        if step == 5:
            raise Interrupted

    with pytest.raises(Interrupted), progress:
        train_world_model(small_market, TINY, out, checkpoint_every=2, on_metrics=report_then_stop_at_5)
    assert [m.step for m in client.get_metric_history(interrupted.run_id, "loss/total")] == [1, 2, 3, 4, 5]

    resumed = RunLogger(client, client.create_run(experiment_id).info.run_id)
    with TrainingProgress("world model", total, resumed, shown=WORLD_MODEL_SHOWN, every=2) as progress:
        result = train_world_model(small_market, TINY, out, checkpoint_every=2, on_metrics=progress)
    assert result.resumed_from == 4 and progress.first_step == 5
    stage_logs.log_training(resumed, stage_result(result), streamed=progress)

    curve = sorted((m.step, m.value) for m in client.get_metric_history(resumed.run_id, "loss/total"))
    assert curve == [(record["step"], record["loss/total"]) for record in read_jsonl(result.metrics_path)]
    assert [step for step, _ in curve] == list(range(1, total + 1))
