"""Speed-up of a walk-forward sweep on a local Dask cluster of 2 worker processes over 1 process.

    .venv/bin/python -m bench.bench_sweep [--seeds 2] [--folds 2] [--config tiny]

The same small sweep (the bundled BTCUSDT sample, 2026-03-01 .. 2026-03-28, `--seeds` × `--folds` tasks)
runs twice from scratch into separate directories: once with the tasks in this process one after another
(`run_sequentially`), once on `dask_runner(2)`, each task on one torch thread. The klines are ingested
once beforehand (not timed); both timings include validation, features and fold snapshots (a few seconds)
and the second the cluster's start. Prints one JSON object: both wall times, the speed-up, the machine's
cores and its load average before and after (a shared, loaded machine makes the speed-up smaller).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from dreamer.pipeline import DataSpec, stage_ingest
from dreamer.research.distributed import dask_runner
from dreamer.research.walk_forward import TaskRunner, run_sequentially, run_walk_forward

SPEC = DataSpec(source="sample", start="2026-03-01", end="2026-03-28")


def timed_sweep(runner: TaskRunner, root: Path, name: str, config: str, seeds: int, folds: int) -> float:
    began = time.perf_counter()
    run_walk_forward(
        SPEC,
        root / "db.duckdb",
        config,
        {"walk_forward": {"folds": folds}},
        range(seeds),
        root / name,
        threads=1,
        runner=runner,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--config", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stage_ingest(SPEC, root / "db.duckdb")  # once, untimed: the first run would otherwise pay for it
        load_before = os.getloadavg()
        one = timed_sweep(run_sequentially, root, "workers-1", args.config, args.seeds, args.folds)
        two = timed_sweep(dask_runner(2, torch_threads=1), root, "workers-2", args.config, args.seeds, args.folds)
        load_after = os.getloadavg()
    print(
        json.dumps(
            {
                "benchmark": "sweep",
                "tasks": args.seeds * args.folds,
                "config": args.config,
                "workers_1_s": round(one, 2),
                "workers_2_s": round(two, 2),
                "speedup": round(one / two, 3),
                "cpu_count": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": load_after,
            }
        )
    )


if __name__ == "__main__":
    main()
