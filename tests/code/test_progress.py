"""Code tier: a training stage's progress (`dreamer.orchestration.progress`): curves streamed to MLflow in
batches, each step once (resumed stages included), and what a person sees on a terminal or in a log."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dreamer.orchestration import stage_logs
from dreamer.orchestration.progress import TrainingProgress, curve_stride, format_duration, is_terminal
from dreamer.orchestration.tracking import RunLogger


class FakeMlflow:
    """The part of `MlflowClient` a `RunLogger` uses, recording every `log_batch` call's metrics."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int, float]]] = []
        self.artifacts: list[str] = []

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        if metrics:
            self.batches.append([(m.key, m.step, m.value) for m in metrics])

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self.artifacts.append(local_path)

    def points(self, key: str) -> list[int]:
        """The steps logged for metric `key`, in order, repeats included."""
        return [step for batch in self.batches for name, step, _ in batch if name == key]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def metrics_at(step: int) -> dict[str, float]:
    return {"loss/total": 10.0 / step, "grad_norm": 1.0}


def reporter(total: int, **options: Any) -> tuple[TrainingProgress, FakeMlflow]:
    mlflow = FakeMlflow()
    options = {"stream": io.StringIO(), "logger": logging.getLogger("test-progress"), **options}
    progress = TrainingProgress("world model", total, RunLogger(mlflow, "run"), shown={"loss": "loss/total"}, **options)
    return progress, mlflow


def train(progress: TrainingProgress, steps: range, clock: Clock | None = None, seconds_per_step: float = 1.0) -> None:
    """What a trainer does: `on_metrics` after every update."""
    for step in steps:
        if clock is not None:
            clock.now += seconds_per_step
        progress(step, metrics_at(step))


def test_the_curve_is_written_every_n_updates_in_one_batch_each() -> None:
    progress, mlflow = reporter(60, every=25)
    train(progress, range(1, 25))
    assert mlflow.batches == []  # nothing before the 25th update
    train(progress, range(25, 61))
    assert [sorted({step for _, step, _ in batch}) for batch in mlflow.batches] == [
        list(range(1, 26)),
        list(range(26, 51)),
        list(range(51, 61)),  # the last step: written at once, not at the next 25
    ]
    assert ("loss/total", 50, 10.0 / 50) in mlflow.batches[1] and ("grad_norm", 7, 1.0) in mlflow.batches[0]
    progress.close()
    assert len(mlflow.batches) == 3  # nothing left to write


def test_a_long_stage_is_thinned_to_a_grid_that_ends_with_its_last_step() -> None:
    assert curve_stride(95, 10) == 10 and curve_stride(20, 1000) == 1 and curve_stride(0, 1000) == 1
    progress, mlflow = reporter(95, every=25, max_points=10)
    with progress:
        train(progress, range(1, 96))
    assert mlflow.points("loss/total") == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert len(mlflow.batches) == 4  # at steps 25, 50, 75 and the last


def test_a_stage_that_stops_early_still_logs_its_last_update() -> None:
    progress, mlflow = reporter(100, every=25, max_points=10)
    with pytest.raises(RuntimeError), progress:  # e.g. a non-finite loss at step 38
        train(progress, range(1, 38))
        raise RuntimeError("stopped")
    assert mlflow.points("loss/total") == [10, 20, 30, 37]


def write_metrics(path: Path, steps: range) -> None:
    path.write_text("".join(json.dumps({"step": step, **metrics_at(step)}) + "\n" for step in steps))


def test_a_resumed_stage_has_every_step_of_its_curve_once(tmp_path: Path) -> None:
    """Steps 1..41 were done before the resume (metrics.jsonl cut back to the checkpoint's step 41); this
    run streams 42..100 and `log_training` adds the earlier ones on the same grid, and step 41."""
    metrics_path = tmp_path / "metrics.jsonl"
    write_metrics(metrics_path, range(1, 42))
    progress, mlflow = reporter(100, every=25, max_points=50)  # a point every 2 steps
    with progress:
        train(progress, range(42, 101))
    write_metrics(metrics_path, range(1, 101))
    result = {"metrics_path": str(metrics_path), "steps": 100, "seconds": 3.0, "checkpoint": "checkpoint.pt"}
    stage_logs.log_training(RunLogger(mlflow, "run"), result, streamed=progress)

    steps = mlflow.points("loss/total")
    assert Counter(steps).most_common(1)[0][1] == 1  # no step twice
    assert sorted(steps) == [*range(2, 41, 2), 41, *range(42, 101, 2)]
    assert mlflow.artifacts == [str(metrics_path)]


def test_a_step_redone_in_the_same_run_is_not_written_again() -> None:
    progress, mlflow = reporter(40, every=10)
    with progress:
        train(progress, range(1, 26))
        train(progress, range(21, 41))  # the trainer went back to its checkpoint at 20
    assert mlflow.points("loss/total") == list(range(1, 41))


def test_a_finished_stage_rerun_logs_its_whole_history_once(tmp_path: Path) -> None:
    metrics_path = tmp_path / "metrics.jsonl"
    write_metrics(metrics_path, range(1, 31))
    progress, mlflow = reporter(30, max_points=10)
    with progress:  # the trainer had nothing left to do: no update reported
        pass
    assert mlflow.batches == []
    stage_logs.log_training(RunLogger(mlflow, "run"), {"metrics_path": str(metrics_path)}, streamed=progress)
    assert mlflow.points("loss/total") == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_without_a_reporter_log_training_logs_the_thinned_file(tmp_path: Path) -> None:
    metrics_path = tmp_path / "metrics.jsonl"
    write_metrics(metrics_path, range(1, 11))
    mlflow = FakeMlflow()
    stage_logs.log_training(RunLogger(mlflow, "run"), {"metrics_path": str(metrics_path)})
    assert mlflow.points("loss/total") == list(range(1, 11))


def test_a_failed_write_is_retried_and_close_raises_if_it_still_fails(caplog: pytest.LogCaptureFixture) -> None:
    progress, mlflow = reporter(50, every=10)
    healthy = mlflow.log_batch
    calls = {"failures": 1}

    def flaky(run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        if calls["failures"]:
            calls["failures"] -= 1
            raise OSError("database is locked")
        healthy(run_id, metrics, params, tags)

    mlflow.log_batch = flaky
    with caplog.at_level(logging.WARNING, logger="test-progress"):
        train(progress, range(1, 21))  # the write at 10 fails, the one at 20 takes both
    assert "not streamed to MLflow yet (OSError: database is locked)" in caplog.text
    assert mlflow.points("loss/total") == list(range(1, 21))

    calls["failures"] = 10
    train(progress, range(21, 26))
    with pytest.raises(OSError, match="locked"):
        progress.close()


def test_lines_say_how_far_a_stage_is_at_every_tenth(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress, _ = reporter(100, clock=clock)
    clock.now = 3.0  # the stage's setup (loading the data, building the model)
    with caplog.at_level(logging.INFO, logger="test-progress"), progress:
        train(progress, range(1, 101), clock, seconds_per_step=0.5)
    lines = caplog.messages
    assert len(lines) == 10  # 10%, 20%, ..., 100%, each 5 s after the last
    assert lines[3] == "world model 40/100 (40%), loss 0.25, 30 s left"  # at the updates' pace, setup left out
    assert lines[-1] == "world model 100/100 (100%), loss 0.1, done in 53 s"


def test_a_short_stage_logs_only_its_end_and_a_slow_one_every_30_seconds(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    fast, _ = reporter(100, clock=clock)
    with caplog.at_level(logging.INFO, logger="test-progress"), fast:
        train(fast, range(1, 101), clock, seconds_per_step=0.02)
    assert caplog.messages == ["world model 100/100 (100%), loss 0.1, done in 2 s"]

    caplog.clear()
    clock.now = 0.0
    slow, _ = reporter(1000, clock=clock)
    with caplog.at_level(logging.INFO, logger="test-progress"), slow:
        train(slow, range(1, 20), clock, seconds_per_step=7.0)  # a tenth would take 700 s
    assert caplog.messages[0] == "world model 5/1000 (0%), loss 2, 1 h 56 min left"
    assert len(caplog.messages) == 4  # at 35, 70, 105 s of 133: then stopped, and said so
    assert caplog.messages[-1] == "world model 19/1000 (2%), loss 0.526, stopped after 2 min 13 s"


def test_a_resumed_stage_counts_its_time_left_from_its_own_updates(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress, _ = reporter(100, clock=clock)
    with caplog.at_level(logging.INFO, logger="test-progress"), progress:
        train(progress, range(61, 101), clock, seconds_per_step=1.0)  # resumed at 60
    assert caplog.messages[0] == "world model 70/100 (70%), loss 0.143, 30 s left"
    assert caplog.messages[-1] == "world model 100/100 (100%), loss 0.1, done in 40 s"


def test_a_terminal_gets_a_bar_and_no_lines(caplog: pytest.LogCaptureFixture) -> None:
    terminal = Terminal()
    progress, mlflow = reporter(50, stream=terminal)
    with caplog.at_level(logging.INFO, logger="test-progress"), progress:
        train(progress, range(11, 51))
    bar = terminal.getvalue().splitlines()[-1].split("\r")[-1]
    assert bar.startswith("world model: 100%") and "50/50" in bar and "loss 0.2" in bar
    assert caplog.messages == []
    assert mlflow.points("loss/total") == list(range(11, 51))


def test_durations_are_rounded_to_two_units() -> None:
    assert [format_duration(s) for s in (0.4, 42.6, 250, 3599.6, 7530)] == [
        "0 s",
        "43 s",
        "4 min 10 s",
        "1 h 0 min",
        "2 h 5 min",
    ]


def test_a_terminal_without_columns_gets_no_bar() -> None:
    """A pseudo-terminal opened without a size (`script -c`, some CI runners): tqdm would draw nothing."""
    import fcntl
    import os
    import struct
    import termios

    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        assert terminal.isatty() and not is_terminal(terminal)
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        assert is_terminal(terminal)
    os.close(leader)
    assert not is_terminal(io.StringIO()) and is_terminal(Terminal())
