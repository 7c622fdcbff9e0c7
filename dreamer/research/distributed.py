"""Walk-forward tasks on Dask: a `TaskRunner` that fans `run_fold` out to worker processes.

Why Dask (`distributed`, with Prefect's `prefect-dask` for the sweep flow) rather than Ray: it is a light
pip install of pure-Python wheels; `distributed.LocalCluster` starts a local cluster of worker *processes*
(each task gets its own interpreter, so torch's threads and memory are per worker), and the same code
runs against a remote cluster by giving its scheduler's address (`dask scheduler` on one machine,
`dask worker tcp://host:8786` on each of the others); `prefect-dask` is maintained by Prefect itself.
Ray's wheels are heavy (a large native runtime per platform) for what these tasks need: a pool of
processes that run a picklable function on plain values.

`dask_runner` maps `run_fold` over the tasks: each task is one Dask future; a warm-started fold depends
on the future of the fold it starts from, so the scheduler runs every chain of `task_chains` in order and
different chains in parallel. Results come back in task order; `on_result` sees each as it completes.
A killed run resumes: `run_fold` returns a finished task's `result.json` without recomputing.

Torch threads: every worker runs one task at a time (`threads_per_worker=1`) and sets torch to
`torch_threads` intra-op threads when it starts (`TorchThreads`), so N workers use N × torch_threads cores
instead of each spinning up one thread per core; a task with `threads` > 0 sets its own, as in one process.

A remote cluster needs every worker to import this package (the same environment) and to reach the paths
the tasks name (the dataset snapshots and the output directory on a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from dreamer.errors import ConfigError
from dreamer.research.walk_forward import FoldTask, ResultCallback, TaskRunner, run_fold, task_chains

if TYPE_CHECKING:
    from distributed import Client


class TorchThreads(WorkerPlugin):
    """A Dask worker plugin: torch runs `threads` intra-op threads in the worker process from its start."""

    name = "dreamer-torch-threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        from dreamer.pipeline import use_cpu_threads

        use_cpu_threads(self.threads)


def local_cluster_kwargs(workers: int, threads_per_worker: int = 1) -> dict[str, Any]:
    """`distributed.LocalCluster` arguments of a local cluster of `workers` worker processes (also the
    `cluster_kwargs` of `prefect_dask.DaskTaskRunner`): one task at a time per worker by default, no
    dashboard (it would need bokeh and a fixed port on a shared machine)."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if threads_per_worker < 1:
        raise ConfigError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    return {
        "n_workers": workers,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "dashboard_address": None,
    }


@contextmanager
def dask_client(workers: int | None, address: str | None, threads_per_worker: int = 1) -> Iterator[Client]:
    """A client of the scheduler at `address`, or of a fresh local cluster of `workers` processes that
    closes with the block."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    if workers is None:
        raise ConfigError("a local Dask cluster needs a number of workers (or give a scheduler address)")
    with LocalCluster(**local_cluster_kwargs(workers, threads_per_worker)) as cluster, Client(cluster) as client:
        yield client


def dask_runner(
    workers: int | None = None,
    address: str | None = None,
    *,
    threads_per_worker: int = 1,
    torch_threads: int = 1,
) -> TaskRunner:
    """The `TaskRunner` that runs tasks on a local cluster of `workers` worker processes, or on the Dask
    scheduler at `address` (e.g. `tcp://10.0.0.5:8786`) and its workers; each worker's torch runs
    `torch_threads` threads (0: torch's default)."""
    if address is None and (workers is None or workers < 1):
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if torch_threads < 0:
        raise ConfigError(f"torch_threads must be >= 0 (0: torch's default), got {torch_threads}")

    def run(tasks: Sequence[FoldTask], on_result: ResultCallback | None = None) -> list[dict[str, Any]]:
        from distributed import as_completed

        if not tasks:
            return []
        chains = task_chains(tasks)  # checks that every warm start follows the task it starts from
        with dask_client(workers, address, threads_per_worker) as client:
            client.register_plugin(TorchThreads(torch_threads))
            future_of: dict[str, Any] = {}  # a task's out_dir -> its future
            for chain in chains:
                previous = None
                for task in chain:
                    # `after` makes the scheduler hold the task until the fold it warm-starts from is done
                    future_of[task.out_dir] = client.submit(
                        _run_after, task, previous, key=_task_key(task), pure=False, retries=0
                    )
                    previous = future_of[task.out_dir]
            results: dict[str, dict[str, Any]] = {}
            out_dir_of = {future.key: out_dir for out_dir, future in future_of.items()}
            for future in as_completed(list(future_of.values())):
                result = future.result()  # a failed task raises here; finished tasks stay on disk for a rerun
                results[out_dir_of[future.key]] = result
                if on_result is not None:
                    on_result(result)
        return [results[task.out_dir] for task in tasks]

    return run


def _run_after(task: FoldTask, after: dict[str, Any] | None) -> dict[str, Any]:
    """`run_fold(task)`; `after` is the result of the task it must follow (unused: only the order matters)."""
    return run_fold(task)


def _task_key(task: FoldTask) -> str:
    import uuid

    # unique per submission: a rerun on a long-lived scheduler must not be served an old run's result
    return f"run-fold-seed-{task.seed}-fold-{task.fold}-{uuid.uuid4().hex[:8]}"
