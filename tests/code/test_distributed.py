"""`dreamer.research.distributed`: the Dask task runner on a local cluster of 2 worker processes, fed tasks
whose `result.json` exists (`run_fold` returns those without training), so the runner's own behaviour is
what is tested: task order, warm-start chains, `on_result`, torch threads in the workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamer.errors import ConfigError
from dreamer.research import walk_forward as wf
from dreamer.research.distributed import dask_client, dask_runner, local_cluster_kwargs


def finished_tasks(tmp_path: Path, warm_start: bool) -> list[wf.FoldTask]:
    snapshots = [wf.FoldSnapshot(fold, str(tmp_path / f"fold-{fold}"), {}) for fold in range(3)]
    tasks = wf.fold_tasks(snapshots, [0, 1], "tiny", {}, tmp_path, warm_start=warm_start)
    for task in tasks:
        Path(task.out_dir).mkdir(parents=True)
        (Path(task.out_dir) / wf.FOLD_RESULT).write_text(json.dumps({"fold": task.fold, "seed": task.seed}))
    return tasks


@pytest.mark.slow
@pytest.mark.parametrize("warm_start", [False, True])
def test_dask_runner_returns_results_in_task_order(tmp_path: Path, warm_start: bool) -> None:
    tasks = finished_tasks(tmp_path, warm_start)
    seen: list[tuple[int, int]] = []
    results = dask_runner(2, torch_threads=1)(tasks, lambda result: seen.append((result["seed"], result["fold"])))
    assert [(r["seed"], r["fold"]) for r in results] == [(t.seed, t.fold) for t in tasks]
    assert sorted(seen) == sorted((t.seed, t.fold) for t in tasks)
    if warm_start:  # a chain's folds complete in order
        for seed in (0, 1):
            assert [fold for s, fold in seen if s == seed] == [0, 1, 2]


@pytest.mark.slow
def test_workers_are_separate_processes_with_the_torch_threads_set(tmp_path: Path) -> None:
    import os

    from dreamer.research.distributed import TorchThreads

    def torch_threads() -> tuple[int, int]:
        import torch

        return os.getpid(), torch.get_num_threads()

    with dask_client(2, None) as client:
        client.register_plugin(TorchThreads(1))
        workers = client.run(torch_threads)
    assert len(workers) == 2
    pids = {pid for pid, _ in workers.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {threads for _, threads in workers.values()} == {1}


def test_runner_arguments_are_checked() -> None:
    assert wf.task_runner(1) is wf.run_sequentially
    assert wf.task_runner(2) is not wf.run_sequentially
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        dask_runner(0)
    with pytest.raises(ConfigError, match="torch_threads"):
        dask_runner(2, torch_threads=-1)
    assert local_cluster_kwargs(3) == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }
