"""The Prefect flows `dreamer-walk-forward` (one market, `dreamer.research.walk_forward`) and `dreamer-sweep`
(markets × intervals × seeds × folds × configurations, `dreamer.research.sweep`), on Dask.

`dreamer-sweep` ingests and builds the features of each (symbol, interval) once, in the flow process (the
DuckDB file is single-writer), then submits every (market, config, seed, fold) as its own Prefect task
`run-fold` to the flow's `prefect_dask.DaskTaskRunner`: a local cluster of worker processes
(`run_sweep(workers=N)`) or a running Dask cluster (`run_sweep(address="tcp://host:8786")`). A task gets a
`FoldTask` (paths to its dataset snapshot and output directory), writes its `result.json` and returns it;
a warm-started fold waits for the fold it starts from. A rerun with the same `out_dir` resumes: finished
tasks return their results from disk.

MLflow: only the flow process writes to the tracking store (workers return results; the flow logs them as
they complete), so the single-machine default (a local sqlite store) is safe with any number of workers.
One parent run per sweep (tags, params, the statistics table `summary.md`/`summary.json` and the stitched
curves `stitched/<market>/<config>/seed-<s>.npz`), one child run per (market, config, seed, fold) with the
task's sortable scalars (`agent.sharpe`, `agent.sharpe_ci_low`/`_high`, `agent.total_return`,
`agent.max_drawdown`, `vs_<baseline>.sharpe_diff`, …) and its `result.json`. The same table is the Prefect
Markdown artifact `dreamer-sweep-summary`. On several machines the flow may run anywhere, but the
artifact store must be one every reader can reach: run `mlflow server` and set MLFLOW_TRACKING_URI to
its http URL (README, "Sweeps on Dask").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from dreamer.orchestration import tracking
from dreamer.orchestration.tracking import FlowTracking, stage_run
from dreamer.paths import default_db_path, default_runs_dir
from dreamer.research.distributed import local_cluster_kwargs
from dreamer.research.sweep import (
    SUMMARY_JSON,
    SUMMARY_MARKDOWN,
    SweepGroup,
    child_metrics,
    prepare_market,
    summary_markdown,
    sweep_markets,
    sweep_summary,
)
from dreamer.research.walk_forward import FoldTask, run_fold, task_chains

SUMMARY_ARTIFACT = "dreamer-sweep-summary"
DEFAULT_WORKERS = 2


def dask_task_runner(workers: int = DEFAULT_WORKERS, address: str | None = None) -> TaskRunner[Any]:
    """Prefect's Dask task runner: the scheduler at `address`, or a local cluster of `workers` processes."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(workers))


@task(name="run-fold")
def fold_task(fold: FoldTask) -> dict[str, Any]:
    """One (market, config, seed, fold): train, evaluate, write result.json (or read it back)."""
    return run_fold(fold)


@task(name="prepare-market")
def prepare_task(
    spec: Any,
    db_path: str,
    config: str,
    overrides: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    out_dir: str,
    threads: int,
) -> list[SweepGroup]:
    return prepare_market(spec, db_path, config, overrides, configs, seeds, out_dir, threads)


@flow(
    name="dreamer-sweep",
    description="Walk-forward over markets, intervals, seeds and configurations on Dask, with honest statistics.",
    task_runner=dask_task_runner(),
)
def sweep_flow(
    markets: list[Any],
    intervals: list[str],
    seeds: list[int],
    configs: dict[str, dict[str, Any]] | None = None,
    config: str = "tiny",
    overrides: dict[str, Any] | None = None,
    out_dir: str | None = None,
    db_path: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """`markets`: "sample" or mappings of data fields (`{"path", "funding_path", "symbol"}` for a CSV file);
    `configs`: name -> nested overrides on top of `config` and `overrides` (default one, `base`);
    `threads`: torch threads per task. Returns the summary (statistics, groups, MLflow run)."""
    logger = get_run_logger()
    configs = configs or {"base": {}}
    specs = sweep_markets(markets, intervals)
    out = Path(out_dir).resolve() if out_dir else default_runs_dir() / "sweeps" / (flow_run.name or "local")
    db = str(Path(db_path or default_db_path()).resolve())
    parent = tracking.start_flow_run(
        run_name=f"sweep-{flow_run.name or 'local'}",
        tags={"prefect.flow_run_id": flow_run.id, "git_commit": tracking.git_commit(), "sweep_dir": str(out)},
        params={
            "markets": [f"{s.symbol}/{s.interval}" for s in specs],
            "seeds": list(seeds),
            "configs": configs,
            "config": config,
            "overrides": overrides or {},
        },
    )
    failed = True
    try:
        groups = [
            group
            for spec in specs
            for group in prepare_task(spec, db, config, overrides or {}, configs, seeds, str(out), threads)
        ]
        futures = submit_folds(groups)
        results = {}
        for future in as_completed(list(futures)):
            group, fold = futures[future]
            results[fold.out_dir] = future.result()
            log_child_run(parent, group, fold, results[fold.out_dir])
            logger.info("%s %s seed %s fold %s done", group.market, group.config, fold.seed, fold.fold)
        summary = sweep_summary(groups, results, config)
        markdown = summary_markdown(summary)
        log_summary(parent, summary, markdown, out)
        create_markdown_artifact(markdown, key=SUMMARY_ARTIFACT, description="dreamer sweep statistics")
        failed = False
    finally:
        tracking.finish_run(parent, failed=failed)
    return {**summary, "out_dir": str(out), "mlflow": {"run_id": parent.run_id, "tracking_uri": parent.tracking_uri}}


def submit_folds(groups: Sequence[SweepGroup]) -> dict[PrefectFuture[dict[str, Any]], tuple[SweepGroup, FoldTask]]:
    """Every group's tasks submitted to the flow's task runner, a warm-started fold after its predecessor."""
    futures: dict[PrefectFuture[dict[str, Any]], tuple[SweepGroup, FoldTask]] = {}
    for group in groups:
        for chain in task_chains(group.tasks):
            previous: PrefectFuture[dict[str, Any]] | None = None
            for fold in chain:
                named = fold_task.with_options(
                    task_run_name=f"{group.market}-{group.config}-seed-{fold.seed}-fold-{fold.fold}"
                )
                previous = named.submit(fold, wait_for=[previous] if previous else None, return_state=False)
                futures[previous] = (group, fold)
    return futures


def log_child_run(parent: FlowTracking, group: SweepGroup, fold: FoldTask, result: Mapping[str, Any]) -> None:
    """The child run of one task: its tags, sortable metrics and result.json."""
    name = f"{group.market}/{group.config}/seed-{fold.seed}/fold-{fold.fold}"
    with stage_run(parent, name) as run:
        run.tags(
            {
                "market": group.market,
                "config": group.config,
                "seed": fold.seed,
                "fold": fold.fold,
                "test_start": result["test"]["start"],
                "test_end": result["test"]["end"],
                "task_dir": fold.out_dir,
            }
        )
        run.metrics(child_metrics(result))
        run.dict_artifact(result, "result.json")


def log_summary(parent: FlowTracking, summary: Mapping[str, Any], markdown: str, out: Path) -> None:
    """The sweep's table and statistics (also written to `out`) and every stitched curve, on the parent run."""
    from dreamer.evaluation.report import write_json

    (out / SUMMARY_MARKDOWN).write_text(markdown, encoding="utf-8")
    write_json(out / SUMMARY_JSON, dict(summary))
    run = parent.logger()
    run.artifact(out / SUMMARY_MARKDOWN)
    run.artifact(out / SUMMARY_JSON)
    for group in summary["groups"]:
        for path in group["stitched_files"]:
            run.artifact(path, f"stitched/{group['market'].replace('/', '-')}/{group['config']}")


def run_sweep(workers: int = DEFAULT_WORKERS, address: str | None = None, **parameters: Any) -> dict[str, Any]:
    """`dreamer-sweep` with its tasks on a local cluster of `workers` processes or the Dask scheduler at `address`."""
    result: dict[str, Any] = sweep_flow.with_options(task_runner=dask_task_runner(workers, address))(**parameters)
    return result


@flow(name="dreamer-walk-forward", description="Walk-forward evaluation of one market, stitched out of sample.")
def walk_forward_flow(
    source: str = "sample",
    symbol: str = "BTCUSDT",
    interval: str = "5",
    category: str = "linear",
    path: str | None = None,
    funding_path: str | None = None,
    start: str | None = None,
    end: str | None = None,
    config: str = "tiny",
    overrides: dict[str, Any] | None = None,
    seeds: int = 1,
    out_dir: str | None = None,
    db_path: str | None = None,
    workers: int = 1,
    dask_address: str | None = None,
    threads: int = 1,
    n_configs: int = 1,
) -> dict[str, Any]:
    """`dreamer walk-forward` as a flow: the report (written to `<out_dir>/metrics.json`), its statistics
    table as the Markdown artifact `dreamer-walk-forward-summary`. `workers` > 1 or `dask_address`: on Dask."""
    from dreamer.evaluation.report import write_json
    from dreamer.pipeline import DataSpec
    from dreamer.research.walk_forward import run_walk_forward, task_runner

    spec = DataSpec(
        source=source,  # type: ignore[arg-type]  # checked by DataSpec
        symbol=symbol,
        interval=str(interval),
        category=category,
        path=path,
        funding_path=funding_path,
        start=start,
        end=end,
    )
    out = (
        Path(out_dir).resolve()
        if out_dir
        else default_runs_dir() / "walk-forward" / f"{spec.category}-{spec.symbol}-{spec.interval}-{Path(config).stem}"
    )
    report = run_walk_forward(
        spec,
        str(Path(db_path or default_db_path()).resolve()),
        config,
        overrides or {},
        range(seeds),
        out,
        n_configs=n_configs,
        threads=threads,
        runner=task_runner(workers, dask_address, threads),
    )
    write_json(out / "metrics.json", report)
    create_markdown_artifact(
        summary_markdown(report), key="dreamer-walk-forward-summary", description="walk-forward statistics"
    )
    return report
