"""A training stage's progress while it runs: its step curves streamed to the stage's MLflow run, and a
progress bar on a terminal (a rounded log line elsewhere) saying how far it is and how long is left.

`TrainingProgress` is the `on_metrics(step, metrics)` callback that `train_world_model` and `train_policy`
take. Its curve keeps the updates on a grid of about `max_points` evenly spaced steps (`curve_stride`; a
stage that ends off the grid, stopped early or by an error, keeps its last update too), written to the
run every `every` updates in one `log_batch` call. `stage_logs.log_training` then adds from the stage's
`metrics.jsonl` only what was not streamed (`unstreamed`: the updates a resumed stage had done before), on
the same grid, so every curve holds each step once.

Where it is shown: a tqdm bar (steps done of the total, the shown metrics, time left) when the stream is a
terminal; otherwise (a Prefect worker, CI, a log file) a line to the logger at every tenth of the steps, at
most one every `LINE_MIN_GAP_S` and at least one every `LINE_MAX_GAP_S`, and at the last step, e.g.
`world model 400/1000 (40%), loss 1.23, 35 s left`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from dreamer.orchestration.stage_logs import MAX_CURVE_POINTS
from dreamer.orchestration.tracking import RunLogger

if TYPE_CHECKING:
    from tqdm import tqdm

Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]

STREAM_EVERY = 25
"""Updates between two writes of a stage's curves to MLflow (one `log_batch` call each)."""
LINE_MIN_GAP_S = 5.0
LINE_MAX_GAP_S = 30.0
WORLD_MODEL_SHOWN = {"loss": "loss/total"}
POLICY_SHOWN = {"imagined return": "imagined/return", "turnover": "imagined/turnover"}
"""What the bar and the lines show of each trainer's metrics: label -> metric name."""

log = logging.getLogger(__name__)


def curve_stride(total_steps: int, max_points: int) -> int:
    """Steps between two points of a curve of at most about `max_points` points over `total_steps` updates."""
    return max(1, math.ceil(total_steps / max_points))


def format_duration(seconds: float) -> str:
    """`42 s`, `4 min 10 s`, `2 h 5 min`: rounded to the second, the two largest units."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal a bar can be drawn on: a TTY with columns (a pseudo-terminal opened
    without a size, e.g. by `script -c`, has none, and tqdm would draw nothing on it)."""
    if not stream.isatty():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):  # no file descriptor (a stream object standing in for a terminal)
        return True


class TrainingProgress:
    """The progress of one training stage of `total_steps` updates, reported into `run` (see the module
    docstring). Use it as a context manager, or call `close` at the end: the last points are written then."""

    def __init__(
        self,
        name: str,
        total_steps: int,
        run: RunLogger,
        *,
        shown: Mapping[str, str] | None = None,
        every: int = STREAM_EVERY,
        max_points: int = MAX_CURVE_POINTS,
        logger: Logger | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.name = name
        self.total_steps = total_steps
        self.run = run
        self.shown = dict(shown or {})
        self.every = every
        self.stride = curve_stride(total_steps, max_points)
        self.logger: Logger = logger or log
        self.stream = sys.stderr if stream is None else stream
        self.shows_bar = is_terminal(self.stream)
        self.clock = clock
        self.first_step: int | None = None
        """The first update reported (1 for a fresh stage, the checkpoint's step + 1 for a resumed one)."""
        self._started = clock()
        self._first_at = self._started  # when the first update was reported: the stage's setup is over
        self._latest: tuple[int, dict[str, float]] | None = None
        self._queued: list[tuple[int, dict[str, float]]] = []
        self._curve_end = 0  # the last step queued: a step at or before it is never written again
        self._bar: tqdm[Any] | None = None
        self._line_step = 0  # the step of the last line, when it was logged and its tenth of the steps
        self._line_at = self._started
        self._line_tenth = 0

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        """The trainers' `on_metrics`: called after every update with its step and metrics."""
        if self.first_step is None:
            self.first_step, self._first_at = step, self.clock()
            self._line_step = step - 1
            self._line_tenth = self._tenth(step - 1)
        self._latest = (step, dict(metrics))
        if step > self._curve_end and self.on_curve(step):
            self._queue(self._latest)
        if step % self.every == 0 or step >= self.total_steps:
            try:
                self._write_queued()
            except Exception as exc:  # a progress write must not stop training: kept, retried, raised by close
                self.logger.warning(
                    "%s: metrics not streamed to MLflow yet (%s: %s)", self.name, type(exc).__name__, exc
                )
        if self.shows_bar:
            self._update_bar(step, metrics)
        elif self._line_due(step):
            self._log_line(step, metrics, self._time_left(step))

    def close(self) -> None:
        """Write the queued points, and the last update if it is off the grid (the stage stopped early or
        failed); close the bar, or log the last line if it was not. Raises what MLflow raised."""
        if self._latest is not None:
            step, metrics = self._latest
            if step > self._curve_end:
                self._queue(self._latest)
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif step != self._line_step:
                self._log_line(step, metrics, f"stopped after {format_duration(self.clock() - self._started)}")
        self._write_queued()

    def on_curve(self, step: int) -> bool:
        """Whether update `step` is a point of the curve."""
        return step % self.stride == 0 or step == self.total_steps

    def unstreamed(self, records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Of the stage's metric records (its metrics.jsonl, one per update with its `step`), those its curve
        needs besides the streamed ones: the updates before the first reported (done before a resume; all of
        them when none was reported) on the grid, and the last of them."""
        before = [record for record in records if self.first_step is None or int(record["step"]) < self.first_step]
        points = [record for record in before[:-1] if self.on_curve(int(record["step"]))]
        return points + before[-1:]

    def describe(self, step: int, metrics: Mapping[str, float]) -> str:
        """`world model 400/1000 (40%), loss 1.23`: the step, its share of the total and the shown metrics."""
        share = step / self.total_steps if self.total_steps else 1.0
        return ", ".join([f"{self.name} {step}/{self.total_steps} ({share:.0%})", *self._shown_values(metrics)])

    def _shown_values(self, metrics: Mapping[str, float]) -> list[str]:
        return [f"{label} {metrics[key]:.3g}" for label, key in self.shown.items() if key in metrics]

    def _queue(self, point: tuple[int, dict[str, float]]) -> None:
        self._queued.append(point)
        self._curve_end = point[0]

    def _write_queued(self) -> None:
        if self._queued:
            self.run.history([{"step": step, **metrics} for step, metrics in self._queued])
            self._queued.clear()

    def _update_bar(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_steps, initial=step - 1, desc=self.name, unit="step", file=self.stream, leave=True
            )
        self._bar.set_postfix_str(", ".join(self._shown_values(metrics)), refresh=False)
        self._bar.update(step - self._bar.n)

    def _tenth(self, step: int) -> int:
        return math.floor(10 * step / self.total_steps) if self.total_steps else 10

    def _line_due(self, step: int) -> bool:
        since = self.clock() - self._line_at
        new_tenth = self._tenth(step) > self._line_tenth
        return step >= self.total_steps or since >= LINE_MAX_GAP_S or (new_tenth and since >= LINE_MIN_GAP_S)

    def _time_left(self, step: int) -> str:
        now = self.clock()
        if step >= self.total_steps:
            return f"done in {format_duration(now - self._started)}"
        assert self.first_step is not None  # set by the first report
        # The pace of the updates since the first, without the stage's setup (at the first: with it).
        since_first = step - self.first_step
        per_step = (now - self._first_at) / since_first if since_first else now - self._started
        return f"{format_duration(per_step * (self.total_steps - step))} left"

    def _log_line(self, step: int, metrics: Mapping[str, float], timing: str) -> None:
        self.logger.info("%s, %s", self.describe(step, metrics), timing)
        self._line_step, self._line_at, self._line_tenth = step, self.clock(), self._tenth(step)
