"""The Prefect flow `dreamer`: ingest → validate → features → world model → policy → evaluate → promote.

Deployed as `dreamer/daily` (prefect.yaml); run ad hoc, without a deployment, with `dreamer run …` (or its
alias `python -m flows.pipeline …`) and `dreamer demo`. Every task is a thin wrapper: one call to a plain
stage function of `dreamer.pipeline` (or `dreamer.orchestration`), one call that logs its result into the
stage's nested MLflow run. Tasks exchange paths and plain dicts.

- ingest retries with exponential backoff, except on errors that a retry cannot fix (a rejected symbol,
  an unreadable file, a geo-blocked IP);
- the features task is cached on a hash of the klines it reads, the split settings and the feature code
  (`dreamer.orchestration.cache`), and writes its dataset to a directory named by that key;
- a validation failure fails the run, with the report as a Prefect artifact and in MLflow;
- the training and evaluation tasks run torch on `threads` CPU threads (default 1: the models are small
  and extra threads only spin-wait on a shared machine);
- the training tasks stream their curves to their stage's MLflow run while they train and show their
  progress, a bar on a terminal or log lines elsewhere (`dreamer.orchestration.progress`); the evaluation
  task logs each of its steps with its duration;
- a completed run writes its report (`dreamer.pipeline.run_report`, plus stage timings) to
  `<run_dir>/metrics.json` and returns it as `report`;
- every run, completed or failed, ends with the Markdown artifact `dreamer-run-summary`, which links to the
  MLflow run, the experiment's runs table and the evaluation's tear sheet (when an MLflow UI is known).

Environment: DREAMER_BYBIT_URL (Bybit base URL), DREAMER_DB (DuckDB file when `db_path` is not given),
MLFLOW_TRACKING_URI (default: ./mlflow), DREAMER_RUNS_DIR (run outputs, default ./runs),
DREAMER_MLFLOW_UI (base URL for links to runs).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import deployment, flow_run
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from dreamer.config import RunConfig, load_config
from dreamer.data.errors import BybitAccessDenied, BybitRequestRejected, InvalidMarketError, SourceFileError
from dreamer.errors import ConfigError
from dreamer.features.validate import DataValidationError
from dreamer.orchestration import stage_logs, tracking
from dreamer.orchestration.cache import features_cache_key, prefect_cache_key, reusable_dataset, touch_and_prune
from dreamer.orchestration.progress import POLICY_SHOWN, WORLD_MODEL_SHOWN, TrainingProgress
from dreamer.orchestration.summary import render_summary, validation_markdown
from dreamer.orchestration.tracking import FlowTracking, stage_run
from dreamer.paths import default_db_path, default_runs_dir
from dreamer.pipeline import (
    RUN_REPORT,
    DataSpec,
    run_report,
    stage_evaluate,
    stage_features,
    stage_ingest,
    stage_train_policy,
    stage_train_ppo,
    stage_train_world_model,
    stage_validate,
    use_cpu_threads,
)

BYBIT_URL_ENV = "DREAMER_BYBIT_URL"
SUMMARY_ARTIFACT = "dreamer-run-summary"
MLFLOW_ARTIFACT_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PERMANENT_INGEST_ERRORS = (InvalidMarketError, SourceFileError, BybitAccessDenied, BybitRequestRejected, ConfigError)
"""Ingest failures a retry cannot fix; anything else (Bybit unavailable, a locked database) is retried."""


def _retry_unless_permanent(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    error = state.result(raise_on_failure=False)
    return not isinstance(error, PERMANENT_INGEST_ERRORS)


@task(
    name="ingest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),  # 30 s, 60 s, 120 s
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_unless_permanent,
)
def ingest(spec: DataSpec, db_path: str, parent: FlowTracking) -> dict[str, Any]:
    with stage_run(parent, "ingest") as run:
        result = stage_ingest(spec, db_path)
        stage_logs.log_ingest(run, result)
    get_run_logger().info(
        "ingested %s: %s new, %s updated bars; stored %s .. %s",
        spec.source,
        result.get("rows_inserted"),
        result.get("rows_updated"),
        result.get("effective_start"),
        result.get("effective_end"),
    )
    funding = result.get("funding")
    if funding:
        get_run_logger().info(
            "ingested funding: %s new, %s updated settlements; covered %s .. %s",
            funding.get("rows_inserted"),
            funding.get("rows_updated"),
            funding.get("effective_start"),
            funding.get("effective_end"),
        )
    return result


@task(name="validate")
def validate(spec: DataSpec, db_path: str, cfg: RunConfig, out_dir: str, parent: FlowTracking) -> dict[str, Any]:
    with stage_run(parent, "validate") as run:
        try:
            summary = stage_validate(spec, db_path, cfg, out_dir)
        except DataValidationError as exc:
            failed = {**exc.report.to_dict(), "report_html": str(Path(out_dir) / "report.html")}
            stage_logs.log_validation(run, failed, exc.report_dir)
            create_markdown_artifact(
                validation_markdown(failed), key="validation-report", description="failed kline validation"
            )
            get_run_logger().error("%s", exc)
            raise
        stage_logs.log_validation(run, summary, out_dir)
    get_run_logger().info(
        "validation %s: %s rows, %s missing bars", summary["status"], summary["rows"], summary["missing_bars"]
    )
    return summary


@task(name="fingerprint-data")
def fingerprint(spec: DataSpec, db_path: str, cfg: RunConfig) -> str:
    key = features_cache_key(spec, db_path, cfg)
    get_run_logger().info("features cache key %s", key)
    return key


@task(
    name="build-features",
    cache_key_fn=lambda context, parameters: prefect_cache_key(parameters["cache_key"], parameters["out_dir"]),
)
def build_features(spec: DataSpec, db_path: str, cfg: RunConfig, cache_key: str, out_dir: str) -> dict[str, Any]:
    """Cached on `cache_key` (see `fingerprint`) and `out_dir`; MLflow logging happens in the flow, for hits too."""
    result = stage_features(spec, db_path, cfg, out_dir)
    get_run_logger().info("dataset of %s bars in %s", result["rows"], out_dir)
    return result


@task(name="warm-start")
def warm_start(cfg: RunConfig, data: dict[str, Any], out_dir: str, parent: FlowTracking) -> dict[str, Any]:
    """Where training starts: the market's champion (`warm_start: champion`) or the seed, tagged on the parent run."""
    from dreamer.orchestration.warm_start import initial_checkpoint

    start = initial_checkpoint(parent.tracking_uri, data, cfg, out_dir)
    parent.logger().tags({"warm_start": start["source"], "warm_start.detail": start.get("model") or start["reason"]})
    if start["source"] == "champion":
        get_run_logger().info("training starts from the champion %s", start["model"])
    else:
        get_run_logger().info("training starts from scratch: %s", start["reason"])
    return start


@task(name="train-world-model")
def train_world_model(
    dataset_dir: str, cfg: RunConfig, out_dir: str, init_from: str | None, threads: int, parent: FlowTracking
) -> dict[str, Any]:
    use_cpu_threads(threads)
    total = cfg.dreamer.world_model_steps
    with stage_run(parent, "world_model") as run:
        with TrainingProgress("world model", total, run, shown=WORLD_MODEL_SHOWN, logger=get_run_logger()) as progress:
            result = stage_train_world_model(dataset_dir, cfg, out_dir, init_from, on_metrics=progress)
        stage_logs.log_training(run, result, streamed=progress)
    validation = result["final_metrics"].get("val/loss/total")
    get_run_logger().info(
        "world model: %s steps in %.0f s, validation loss %s",
        result["steps"],
        result["seconds"],
        "n/a" if validation is None else f"{validation:.3g}",
    )
    return result


@task(name="train-policy")
def train_policy(
    dataset_dir: str,
    world_model_checkpoint: str,
    cfg: RunConfig,
    out_dir: str,
    init_from: str | None,
    threads: int,
    parent: FlowTracking,
) -> dict[str, Any]:
    use_cpu_threads(threads)
    total = cfg.dreamer.policy_steps
    with stage_run(parent, "policy") as run:
        with TrainingProgress("policy", total, run, shown=POLICY_SHOWN, logger=get_run_logger()) as progress:
            result = stage_train_policy(
                dataset_dir, world_model_checkpoint, cfg, out_dir, init_from, on_metrics=progress
            )
        stage_logs.log_training(run, result, streamed=progress)
    get_run_logger().info("policy: %s steps in %.0f s", result["steps"], result["seconds"])
    return result


@task(name="train-ppo")
def train_ppo(dataset_dir: str, cfg: RunConfig, out_dir: str, threads: int, parent: FlowTracking) -> dict[str, Any]:
    """The model-free baseline (`cfg.ppo`), trained on the same train split with the same costs."""
    use_cpu_threads(threads)
    with stage_run(parent, "ppo") as run:
        result = stage_train_ppo(dataset_dir, cfg, out_dir)
        run.metrics({"timesteps": result["timesteps"], "seconds": result["seconds"]})
    get_run_logger().info("PPO baseline: %s environment steps in %.0f s", result["timesteps"], result["seconds"])
    return result


@task(name="evaluate")
def evaluate(
    dataset_dir: str,
    agent_checkpoint: str,
    cfg: RunConfig,
    out_dir: str,
    ppo_model: str | None,
    threads: int,
    parent: FlowTracking,
) -> dict[str, Any]:
    use_cpu_threads(threads)
    with stage_run(parent, "evaluate") as run:
        result = stage_evaluate(
            dataset_dir, agent_checkpoint, cfg, out_dir, logger=get_run_logger(), ppo_model=ppo_model
        )
        stage_logs.log_evaluation(run, result)
    stage_logs.log_parent_headline(parent, result)
    stage_logs.log_parent_plots(parent, result)
    agent = result["agent"]
    numbers = {key: agent.get(key) for key in ("sharpe", "max_drawdown", "total_return", "funding_paid")}
    shown = {key: "n/a" if value is None else f"{value:.4g}" for key, value in numbers.items()}
    get_run_logger().info(
        "held-out: agent Sharpe %s, max drawdown %s, total return %s, funding paid %s",
        *(shown[key] for key in numbers),
    )
    return result


@task(name="register-and-promote")
def register_and_promote(
    cfg: RunConfig,
    data: dict[str, Any],
    evaluation: dict[str, Any],
    agent_checkpoint: str,
    db_path: str,
    work_dir: str,
    threads: int,
    parent: FlowTracking,
) -> dict[str, Any]:
    from dreamer.orchestration.promotion import register_and_promote as promote

    use_cpu_threads(threads)  # the champion is re-evaluated here
    with stage_run(parent, "promote") as run:
        result = promote(parent, cfg, data, evaluation, agent_checkpoint, db_path, work_dir)
        stage_logs.log_promotion(run, result)
    stage_logs.log_parent_promotion(parent, result)
    decision = result["decision"]
    get_run_logger().info(
        "%s version %s -> %s: %s",
        result["model_name"],
        result["version"],
        decision["alias"],
        "; ".join(decision["reasons"]),
    )
    return result


def cached_features(
    spec: DataSpec, db_path: str, cfg: RunConfig, run_dir: Path, parent: FlowTracking
) -> tuple[dict[str, Any], bool]:
    """The run's dataset, built or reused from the features cache, and whether it was reused. The dataset
    lives under `<runs>/cache/features/<key>` (linked as `run_dir/dataset`); the few most recently used are
    kept. A cache record whose dataset was deleted or damaged is refreshed (the dataset rebuilt) instead of
    returning a dangling or broken path."""
    key = fingerprint(spec, db_path, cfg)
    cache_root = default_runs_dir() / "cache" / "features"
    dataset_dir = cache_root / key
    features = build_features.with_options(refresh_cache=not reusable_dataset(dataset_dir))
    state = features(spec, db_path, cfg, key, str(dataset_dir), return_state=True)
    data, cached = state.result(), state.name == "Cached"
    for pruned in touch_and_prune(cache_root, dataset_dir):
        get_run_logger().info("pruned cached dataset %s", pruned)
    run_dir.mkdir(parents=True, exist_ok=True)
    link = run_dir / "dataset"
    if link.is_symlink():  # a rerun in the same run directory
        link.unlink()
    link.symlink_to(dataset_dir, target_is_directory=True)
    with stage_run(parent, "features") as run:
        stage_logs.log_features(run, data, cached=cached)
    stage_logs.log_data_identity(parent, data, db_path)
    return data, cached


def run_inputs(
    source: str = "bybit",
    symbol: str = "BTCUSDT",
    interval: str | int = "5",
    category: str = "linear",
    lookback_days: int | None = 365,
    config: str = "default",
    path: str | None = None,
    funding_path: str | None = None,
    start: str | None = None,
    end: str | None = None,
    base_url: str | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> tuple[DataSpec, RunConfig]:
    """The run's data spec and config from the flow's parameters; `ConfigError` for bad values."""
    spec = DataSpec(
        source=source,  # type: ignore[arg-type]  # checked by DataSpec
        symbol=symbol,
        interval=str(interval),
        category=category,
        path=path,
        funding_path=funding_path,
        start=start,
        end=end,
        lookback_days=lookback_days,
        base_url=base_url or os.environ.get(BYBIT_URL_ENV) or None,
    )
    overrides = {key: value for key, value in (("seed", seed), ("device", device)) if value is not None}
    return spec, load_config(config, {"dreamer": overrides} if overrides else None)


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Raise `ConfigError` for flow parameters the run would reject, before anything starts (a caller
    without a Prefect server would otherwise wait for a temporary one just to see the error)."""
    inputs = inspect.signature(run_inputs).parameters
    run_inputs(**{name: value for name, value in parameters.items() if name in inputs})
    if int(parameters.get("threads", 1)) < 0:
        raise ConfigError(f"threads must be >= 0 (0: torch's default), got {parameters['threads']}")


@flow(name="dreamer", description="Train, evaluate and promote a DreamerV3 trading agent on Bybit klines.")
def dreamer_flow(
    source: Literal["bybit", "csv", "sample"] = "bybit",
    symbol: str = "BTCUSDT",
    interval: str | int = "5",  # `--param interval=15` arrives as a number
    category: str = "linear",
    lookback_days: int | None = 365,
    config: str = "default",
    db_path: str | None = None,
    path: str | None = None,
    funding_path: str | None = None,
    start: str | None = None,
    end: str | None = None,
    base_url: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    threads: int = 1,
    run_dir: str | None = None,
) -> dict[str, Any]:
    """One pipeline run. `config`: a bundled config name (tiny, demo, default) or a YAML path; `db_path`:
    the DuckDB file (default $DREAMER_DB or data/dreamer.duckdb); `path`: the kline file for source csv,
    `funding_path` its funding file (perpetuals: the validation gate requires funding covering the klines);
    `start`/`end`: explicit bounds (ISO UTC) instead of the `lookback_days` before the newest stored bar
    (`lookback_days` null: every stored bar); `base_url`: Bybit's (default $DREAMER_BYBIT_URL or mainnet);
    `seed`/`device`: override the config's; `threads`: torch CPU threads of the training and evaluation
    stages (0: torch's default); `run_dir`: the run's output directory (default a new one under
    $DREAMER_RUNS_DIR or ./runs; an existing one resumes its training stages).
    Returns the run's summary (data, validation, evaluation, promotion, report, timings, MLflow run)."""
    from dreamer.evaluation.report import write_json  # imports torch

    # MLflow draws a bar for every artifact download (promotion reads the registered model back), even
    # into log files; the training stages report their own progress. Set it to true to see it.
    os.environ.setdefault(MLFLOW_ARTIFACT_BAR_ENV, "false")
    logger = get_run_logger()
    spec, cfg = run_inputs(
        source=source,
        symbol=symbol,
        interval=interval,
        category=category,
        lookback_days=lookback_days,
        config=config,
        path=path,
        funding_path=funding_path,
        start=start,
        end=end,
        base_url=base_url,
        seed=seed,
        device=device,
    )
    db = str(Path(db_path or default_db_path()).resolve())
    run_name = flow_run.name or "local"
    out = (
        Path(run_dir).resolve()
        if run_dir
        else default_runs_dir() / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{spec.symbol.lower()}-{spec.interval}-{run_name}"
    )
    parent = tracking.start_flow_run(
        run_name=f"{spec.symbol.lower()}-{spec.interval}-{run_name}",
        tags={
            "prefect.flow_run_id": flow_run.id,
            "prefect.flow_run_name": run_name,
            "prefect.deployment": deployment.name,
            "git_commit": tracking.git_commit(),
            "symbol": spec.symbol,
            "interval": spec.interval,
            "category": spec.category,
            "source": spec.source,
            "config": cfg.name,
            "run_dir": str(out),
        },
        params=stage_logs.parent_params(cfg, {**spec.to_dict(), "db_path": db}),
    )
    summary: dict[str, Any] = {
        "market": {"category": spec.category, "symbol": spec.symbol, "interval": spec.interval},
        "run_dir": str(out),
        "mlflow": {
            "run_id": parent.run_id,
            "experiment_id": parent.experiment_id,
            "tracking_uri": parent.tracking_uri,
            "url": parent.run_url(),
            "runs_table_url": parent.runs_table_url(),
        },
    }
    logger.info("MLflow run %s in %s; outputs in %s", parent.run_id, parent.tracking_uri, out)
    timings: dict[str, float] = {}  # seconds per stage, filled as they finish
    summary["timings_s"] = timings
    timed = stopwatch(timings)
    try:
        summary["ingest"] = timed("ingest", ingest, spec, db, parent)
        summary["validation"] = timed("validate", validate, spec, db, cfg, str(out / "validation"), parent)

        data, summary["features_cached"] = timed("features", cached_features, spec, db, cfg, out, parent)
        summary["data"] = data

        initial = summary["warm_start"] = timed("warm_start", warm_start, cfg, data, str(out / "warm_start"), parent)
        init_from = initial.get("checkpoint")
        world_model = summary["world_model"] = timed(
            "world_model",
            train_world_model,
            data["dataset_dir"],
            cfg,
            str(out / "world_model"),
            init_from,
            threads,
            parent,
        )
        agent = summary["policy"] = timed(
            "policy",
            train_policy,
            data["dataset_dir"],
            world_model["checkpoint"],
            cfg,
            str(out / "agent"),
            init_from,
            threads,
            parent,
        )
        ppo_model = None
        if cfg.ppo.enabled:
            ppo = summary["ppo"] = timed("ppo", train_ppo, data["dataset_dir"], cfg, str(out / "ppo"), threads, parent)
            ppo_model = ppo["model_dir"]
        evaluation = summary["evaluation"] = timed(
            "evaluate",
            evaluate,
            data["dataset_dir"],
            agent["checkpoint"],
            cfg,
            str(out / "evaluation"),
            ppo_model,
            threads,
            parent,
        )
        tearsheet = stage_logs.tearsheet_artifact(evaluation)
        if tearsheet:
            summary["mlflow"]["tearsheet_url"] = parent.artifact_url(tearsheet)
        report = summary["report"] = run_report(spec, cfg, data, world_model, agent, evaluation, initial)
        summary["promotion"] = timed(
            "promote",
            register_and_promote,
            cfg,
            data,
            evaluation,
            agent["checkpoint"],
            db,
            str(out / "promotion"),
            threads,
            parent,
        )
        summary["metrics_path"] = str(write_json(out / RUN_REPORT, {**report, "timings_s": timings}))
        summary["status"] = "Completed"
    except BaseException as exc:
        summary["status"] = "Failed"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        markdown = render_summary(summary)
        create_markdown_artifact(markdown, key=SUMMARY_ARTIFACT, description="dreamer pipeline run")
        parent.logger().text_artifact(markdown, "summary.md")
        tracking.finish_run(parent, failed=summary["status"] != "Completed")
    return summary


def stopwatch(timings: dict[str, float]) -> Callable[..., Any]:
    """`timed(name, fn, *args)`: `fn(*args)`, its wall time in seconds recorded as `timings[name]`."""

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        result = fn(*args)
        timings[name] = round(time.perf_counter() - began, 3)
        return result

    return timed


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.pipeline ARGS`: the same as `dreamer run ARGS` (one run of the flow, here)."""
    import sys

    from dreamer.cli import main as cli

    return cli(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
