"""What the experiment commands share (`dreamer benchmark`, `dreamer sample-efficiency`): resumable cases run
in worker processes, and summaries of a value over seeds.

A case is anything with a `name`; it runs as `run_one(case, out_dir / case.name)` in a worker process (spawned,
each single-threaded by the caller's `run_one`), which writes `result.json` in its directory when done. A rerun
with the same `out_dir` reads the finished cases back and runs only the missing ones, so an interrupted
experiment resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from dreamer.errors import ConfigError

CASE_RESULT = "result.json"


class Case(Protocol):
    @property
    def name(self) -> str: ...


CaseT = TypeVar("CaseT", bound=Case)


def run_cases(
    cases: Sequence[CaseT],
    run_one: Callable[[CaseT, Path], dict[str, Any]],
    out_dir: str | Path,
    *,
    workers: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every case's result, in case order: finished cases are read back from `out_dir/<case>/result.json`,
    the others run as `run_one(case, out_dir/<case>)` in `workers` processes (`run_one` must be picklable: a
    module-level function or a `functools.partial` of one). `on_result` sees each result as it arrives (the
    finished ones first)."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    results: dict[str, dict[str, Any]] = {}
    pending = []
    for case in cases:
        done = out / case.name / CASE_RESULT
        if done.exists():
            results[case.name] = json.loads(done.read_text(encoding="utf-8"))
            if on_result is not None:
                on_result(results[case.name])
        else:
            pending.append(case)
    if pending:
        # spawn, not fork: a forked torch with live thread pools can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {case.name: pool.submit(run_one, case, out / case.name) for case in pending}
            for name, future in futures.items():
                results[name] = future.result()
                if on_result is not None:
                    on_result(results[name])
    return [results[case.name] for case in cases]


def ratio(numerator: Any, denominator: Any) -> float | None:
    """`numerator / denominator`, or None where either is missing, not finite, or the denominator is 0."""
    if numerator is None or denominator is None or not (math.isfinite(numerator) and math.isfinite(denominator)):
        return None
    return float(numerator) / float(denominator) if denominator != 0 else None


def finite_values(runs: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Any]) -> np.ndarray:
    """`[M]` the finite values of `get(run)` over `runs` (missing ones left out)."""
    values = [get(run) for run in runs]
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def spread(values: np.ndarray) -> dict[str, float | None]:
    """Median, minimum and maximum of `values` (all None when there are none)."""
    if not values.size:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}


def spread_cell(value: dict[str, float | None], fmt: str = "{:.2f}", show_range: bool = True) -> str:
    """A `spread` as a table cell: the median, then `[min, max]` where they differ; "n/a" without values."""
    if value["median"] is None:
        return "n/a"
    text = fmt.format(value["median"])
    if show_range and value["min"] != value["max"]:
        text += f" [{fmt.format(value['min'])}, {fmt.format(value['max'])}]"
    return text
