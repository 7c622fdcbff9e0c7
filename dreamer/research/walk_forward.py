"""Walk-forward evaluation: one refit per fold over consecutive test windows, one stitched out-of-sample curve.

**Folds** (`plan_folds`, sized by `WalkForwardConfig`): K test windows of `test_days` each, consecutive and
non-overlapping, the last ending at the last bar; before each, `val_days` of validation bars and `train_days`
of training bars (rolling; expanding: every bar from the first with complete features), each followed by
the split's purge (`split.purge_bars`), as in a single run's split (`dreamer.features.split`). A test
window's traded bars are those opening in `[start, next start)`; its last row, the bar whose close marks
its last return, is the next window's first traded bar, so the windows together trade every bar once.

**Snapshots** (`write_fold_datasets`): the features are built once for the whole range (causal: a bar's
features do not depend on later bars, so slicing them later changes nothing), then each fold's rows become a
saved `MarketDataset` through `make_dataset`, the single run's own code path: its normaliser is fitted on
the fold's train rows only.

**Tasks** (`FoldTask`, `run_fold`): one (seed, fold) is plain values (paths, a config name and overrides),
so it runs in any process: world model, policy, the PPO baseline when the config trains it, and the
held-out evaluation, with the pipeline's stage functions. It writes `result.json` last; a rerun returns a
finished task's result without recomputing, and the training stages resume from their checkpoints.
`run_sequentially` runs a list of tasks here, in order; a distributed runner (`TaskRunner`, Dask's in
`dreamer.research.distributed`) runs each chain of `task_chains` in order (with
`warm_start_from_previous_fold` a fold starts from the previous fold's agent of the same seed) and chains in
parallel.

**Stitching** (`stitched_curves`, `stitched_report`): per seed, the folds' backtests of the agent and of
every baseline concatenated in time order (`dreamer.research.backtests.concatenate`) into one account, with
the single run's metrics and block-bootstrap confidence intervals; pooled over seeds, the account that
splits its equity equally between the seeds' agents (`average`).

Layout of an output directory (`run_walk_forward`):

    out/validation/              the validation gate's report of the whole range
    out/features/                the whole range's features (features.parquet) and single-run dataset
    out/plan.json                the data's identity, the config and the folds: a rerun with other data
                                 or another config is refused rather than mixed with these results
    out/folds/fold-<k>/          fold k's dataset snapshot
    out/runs/seed-<s>/fold-<k>/  one task: world_model/, agent/, ppo/, evaluation/ (with backtests.npz), result.json
    out/stitched/seed-<s>.npz    seed s's stitched account (`dreamer.research.backtests.load_backtests`)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from dreamer.config import RunConfig, load_config
from dreamer.errors import ConfigError, DreamerError
from dreamer.features.config import SplitConfig
from dreamer.research.backtests import BACKTESTS_FILE, Backtests, average, concatenate, load_backtests, save_backtests
from dreamer.research.config import WalkForwardConfig

if TYPE_CHECKING:
    from dreamer.evaluation.config import EvaluationConfig
    from dreamer.features.dataset import MarketDataset
    from dreamer.pipeline import DataSpec

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
PLAN_FILE = "plan.json"
FOLD_RESULT = "result.json"
FOLD_BACKTESTS = f"evaluation/{BACKTESTS_FILE}"  # a task's backtests, saved by its evaluation
SPLITS = ("train", "val", "test")

ResultCallback = Callable[[dict[str, Any]], None]


# --- folds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldWindow:
    """Half-open row ranges of one fold into the rows with complete features, oldest first."""

    fold: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]  # its last row ends the window: the next fold's first test row (or the last bar)

    @property
    def rows(self) -> tuple[int, int]:
        return self.train[0], self.test[1]

    def ranges(self, open_time_ms: np.ndarray) -> dict[str, dict[str, Any]]:
        """`{split: {start, end (ISO-8601 UTC candle starts, inclusive), rows}}`, as `pipeline.split_ranges`."""
        return {
            name: {"start": _iso(open_time_ms[start]), "end": _iso(open_time_ms[stop - 1]), "rows": stop - start}
            for name, (start, stop) in zip(SPLITS, (self.train, self.val, self.test), strict=True)
        }


def plan_folds(open_time_ms: np.ndarray, cfg: WalkForwardConfig, purge: int) -> list[FoldWindow]:
    """The folds of `cfg` over rows with strictly increasing `open_time_ms` (the module docstring says
    how they are laid out); `purge` rows separate train from validation and validation from test.
    Raises `ConfigError` naming the keys to change when they do not fit the data."""
    times = np.asarray(open_time_ms, dtype=np.int64)
    last = len(times) - 1
    if last < 1:
        raise ConfigError(f"walk-forward needs at least 2 bars with complete features, got {len(times)}")
    test_ms, val_ms, train_ms = (round(days * DAY_MS) for days in (cfg.test_days, cfg.val_days, cfg.train_days))
    starts = [_first_row_at(times, times[last] - (cfg.folds - k) * test_ms) for k in range(cfg.folds)]
    boundaries = [*starts, last]

    def too_little_data() -> ConfigError:
        span_days = (times[last] - times[0]) / DAY_MS
        return ConfigError(
            f"walk_forward: {cfg.folds} fold(s) of {cfg.test_days:g} test days, each after {cfg.train_days:g} train "
            f"days ({cfg.mode}) and {cfg.val_days:g} validation days, with a purge of {purge} bars after each, do "
            f"not fit the {span_days:.1f} days of bars with complete features ({_iso(times[0])} .. "
            f"{_iso(times[last])}): use fewer walk_forward.folds, shorter walk_forward.train_days / val_days / "
            "test_days, or more data"
        )

    windows = []
    for k in range(cfg.folds):
        test = (boundaries[k], boundaries[k + 1] + 1)
        if test[1] - test[0] < 3:  # a backtest needs two traded bars: their closes and the one ending them
            raise ConfigError(
                f"walk_forward.test_days: fold {k}'s test window from {_iso(times[test[0]])} holds "
                f"{test[1] - test[0] - 1} bar(s) with complete features; a backtest needs at least 2"
            )
        val_stop = test[0] - purge
        if val_stop < 1 or times[val_stop] - val_ms < times[0]:
            raise too_little_data()
        val = (_first_row_at(times, times[val_stop] - val_ms), val_stop)
        train_stop = val[0] - purge
        if train_stop < 2:
            raise too_little_data()
        if cfg.mode == "rolling":
            if times[train_stop] - train_ms < times[0]:
                raise too_little_data()
            train = (_first_row_at(times, times[train_stop] - train_ms), train_stop)
        else:
            if times[train_stop] - times[0] < train_ms and k == 0:
                raise too_little_data()
            train = (0, train_stop)
        for name, (start, stop) in (("train", train), ("val", val)):
            if stop - start < 2:
                raise ConfigError(
                    f"walk_forward.{name}_days: fold {k}'s {name} window holds {max(stop - start, 0)} bar(s) with "
                    "complete features (a gap in the data?); it needs at least 2"
                )
        windows.append(FoldWindow(k, train, val, test))
    return windows


def complete_open_times(features: pd.DataFrame) -> np.ndarray:
    """`[N]` open times of the feature rows that a dataset keeps (past their segment's warm-up), in order."""
    kept = features.loc[~features["warmup"].to_numpy(dtype=bool), "open_time_ms"]
    return np.sort(kept.to_numpy(dtype=np.int64))


def fold_dataset(
    features: pd.DataFrame, window: FoldWindow, split: SplitConfig, meta: Mapping[str, Any] | None = None
) -> MarketDataset:
    """Fold `window`'s dataset: its rows of `features` (a `compute_features` table of the whole range) split
    into its train / val / test by `make_dataset`, which fits the normaliser on the train rows only."""
    from dreamer.features.dataset import DatasetError
    from dreamer.features.split import make_dataset

    times = complete_open_times(features)
    first, stop = window.rows
    moments = features["open_time_ms"].to_numpy(dtype=np.int64)
    rows = features.loc[(moments >= times[first]) & (moments <= times[stop - 1])]
    fold_split = dataclasses.replace(
        split, val_start=_iso(times[window.val[0]]), test_start=_iso(times[window.test[0]])
    )
    dataset = make_dataset(rows, fold_split, {**dict(meta or {}), "walk_forward_fold": window.fold})
    planned = {name: (start - first, end - first) for name, (start, end) in zip(SPLITS, _splits(window), strict=True)}
    if dataset.splits != planned:  # e.g. folds planned with another purge than `split`'s
        raise DatasetError(f"fold {window.fold}: the dataset's splits {dataset.splits} are not the planned {planned}")
    return dataset


@dataclass(frozen=True)
class FoldSnapshot:
    """A fold's saved dataset and its splits' time ranges."""

    fold: int
    dataset_dir: str
    ranges: dict[str, dict[str, Any]]  # split -> {start, end, rows}, as `FoldWindow.ranges`


def write_fold_datasets(
    features: pd.DataFrame,
    windows: Sequence[FoldWindow],
    split: SplitConfig,
    out_dir: str | Path,
    meta: Mapping[str, Any] | None = None,
) -> list[FoldSnapshot]:
    """Save the dataset of each fold of `windows` (planned over `complete_open_times(features)` with the
    purge of `split`) under `out_dir/fold-<k>/`; `meta` (market, interval, ...) goes into every dataset."""
    times = complete_open_times(features)
    snapshots = []
    for window in windows:
        directory = Path(out_dir) / f"fold-{window.fold}"
        fold_dataset(features, window, split, meta).save(directory)
        snapshots.append(FoldSnapshot(window.fold, str(directory), window.ranges(times)))
    return snapshots


# --- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldTask:
    """One (seed, fold) of a walk-forward: everything `run_fold` needs, as plain values."""

    fold: int
    seed: int  # overrides dreamer.seed of the config
    dataset_dir: str  # the fold's dataset snapshot
    out_dir: str  # where the task writes (result.json last)
    config: str  # a bundled config name or a YAML path
    overrides: Mapping[str, Any] = field(default_factory=dict)  # nested, applied on top of `config`
    init_from: str | None = None  # warm start: the previous fold's agent checkpoint (same seed)
    threads: int = 1  # torch CPU threads of the process that runs it (0: torch's default)

    def run_config(self) -> RunConfig:
        dreamer_overrides = {**self.overrides.get("dreamer", {}), "seed": self.seed}
        return load_config(self.config, {**self.overrides, "dreamer": dreamer_overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fold_tasks(
    snapshots: Sequence[FoldSnapshot],
    seeds: Sequence[int],
    config: str,
    overrides: Mapping[str, Any],
    out_dir: str | Path,
    *,
    warm_start: bool = False,
    threads: int = 1,
) -> list[FoldTask]:
    """Every (seed, fold) task, seed by seed and each seed's folds in time order, writing under
    `out_dir/runs/seed-<s>/fold-<k>/`. With `warm_start`, a fold starts from the previous fold's agent."""
    from dreamer.agent.checkpoint import AGENT_CHECKPOINT

    if not seeds:
        raise ConfigError("a walk-forward needs at least one seed")
    tasks = []
    for seed in seeds:
        previous: FoldTask | None = None
        for snapshot in sorted(snapshots, key=lambda s: s.fold):
            task = FoldTask(
                fold=snapshot.fold,
                seed=seed,
                dataset_dir=snapshot.dataset_dir,
                out_dir=str(Path(out_dir) / "runs" / f"seed-{seed}" / f"fold-{snapshot.fold}"),
                config=config,
                overrides=dict(overrides),
                init_from=str(Path(previous.out_dir) / "agent" / AGENT_CHECKPOINT) if warm_start and previous else None,
                threads=threads,
            )
            tasks.append(task)
            previous = task
    return tasks


def task_chains(tasks: Sequence[FoldTask]) -> list[list[FoldTask]]:
    """`tasks` grouped into chains that must run in order (a warm-started fold after the fold it starts
    from); different chains are independent. Without warm starts every task is a chain of its own."""
    chains: list[list[FoldTask]] = []
    chain_of: dict[str, list[FoldTask]] = {}  # a task's out_dir -> its chain
    for task in tasks:
        if task.init_from is None:
            chain = [task]
            chains.append(chain)
        else:
            # init_from is <out_dir of the earlier task>/agent/checkpoint.pt (`fold_tasks`)
            chain = chain_of.get(str(Path(task.init_from).parent.parent), [])
            if not chain:
                raise ConfigError(f"fold {task.fold} (seed {task.seed}) warm-starts from a task not listed before it")
            chain.append(task)
        chain_of[task.out_dir] = chain
    return chains


def run_fold(task: FoldTask) -> dict[str, Any]:
    """Train and evaluate one (seed, fold) (the module docstring says how) and return its result, which is
    also written to `task.out_dir/result.json`: the fold, seed and splits' ranges, `agent`, `baselines`,
    `comparison` and `world_model` as `dreamer run` reports them on the fold's test window, and the name of
    the backtests file beside it. A task whose `result.json` exists returns it without recomputing."""
    out = Path(task.out_dir)
    done = out / FOLD_RESULT
    if done.exists():
        result: dict[str, Any] = json.loads(done.read_text(encoding="utf-8"))
        if (result.get("fold"), result.get("seed")) != (task.fold, task.seed):
            raise DreamerError(
                f"{done} is the result of fold {result.get('fold')} seed {result.get('seed')}, not of fold "
                f"{task.fold} seed {task.seed}"
            )
        return result
    from dreamer.evaluation.report import write_json
    from dreamer.features.dataset import MarketDataset
    from dreamer.pipeline import (
        split_ranges,
        stage_evaluate,
        stage_train_policy,
        stage_train_ppo,
        stage_train_world_model,
        use_cpu_threads,
    )

    if task.init_from is not None and not Path(task.init_from).is_file():
        raise DreamerError(
            f"fold {task.fold} (seed {task.seed}) warm-starts from {task.init_from}, which does not exist: the "
            "previous fold of the seed must finish first"
        )
    use_cpu_threads(task.threads)
    cfg = task.run_config()
    began = time.perf_counter()
    world_model = stage_train_world_model(task.dataset_dir, cfg, out / "world_model", init_from=task.init_from)
    agent = stage_train_policy(
        task.dataset_dir, world_model["checkpoint"], cfg, out / "agent", init_from=task.init_from
    )
    ppo_model = stage_train_ppo(task.dataset_dir, cfg, out / "ppo")["model_dir"] if cfg.ppo.enabled else None
    evaluation = stage_evaluate(
        task.dataset_dir,
        agent["checkpoint"],
        cfg,
        out / "evaluation",
        ppo_model=ppo_model,
    )
    result = {
        "fold": task.fold,
        "seed": task.seed,
        "config": cfg.name,
        **split_ranges(MarketDataset.load(task.dataset_dir)),
        "window": evaluation["window"],
        "agent": evaluation["agent"],
        "baselines": evaluation["baselines"],
        "comparison": evaluation["comparison"],
        "world_model": evaluation["world_model"],
        "training": {
            "world_model_steps": world_model["steps"],
            "policy_steps": agent["steps"],
            "warm_started": task.init_from is not None,
        },
        "backtests": FOLD_BACKTESTS,
        "seconds": time.perf_counter() - began,
    }
    write_json(done, result)
    loaded: dict[str, Any] = json.loads(done.read_text(encoding="utf-8"))  # what a resumed run reads back
    return loaded


class TaskRunner(Protocol):
    """Runs tasks, each chain of `task_chains(tasks)` in order, and returns their results in task order;
    `on_result` sees each result as it arrives."""

    def __call__(self, tasks: Sequence[FoldTask], on_result: ResultCallback | None = None) -> list[dict[str, Any]]: ...


def run_sequentially(tasks: Sequence[FoldTask], on_result: ResultCallback | None = None) -> list[dict[str, Any]]:
    """The `TaskRunner` of one process: `run_fold` on every task, in order."""
    results = []
    for task in tasks:
        results.append(run_fold(task))
        if on_result is not None:
            on_result(results[-1])
    return results


def task_runner(workers: int, address: str | None = None, threads: int = 1) -> TaskRunner:
    """The runner for `workers` worker processes: this process for 1, a local Dask cluster for more
    (`dreamer.research.distributed`), or the Dask scheduler at `address` and its workers whatever
    `workers` is; `threads`: torch threads per worker."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if workers == 1 and not address:
        return run_sequentially
    from dreamer.research.distributed import dask_runner

    return dask_runner(None if address else workers, address, torch_threads=threads)


# --- stitching ---------------------------------------------------------------------------------


def fold_backtests(task: FoldTask) -> Backtests:
    """The backtests (agent and baselines, bar by bar) a finished task saved beside its result."""
    return load_backtests(Path(task.out_dir) / FOLD_BACKTESTS)


def stitched_curves(tasks: Sequence[FoldTask]) -> dict[int, Backtests]:
    """Per seed, its folds' backtests concatenated in time order: one account over every test window."""
    by_seed: dict[int, list[FoldTask]] = {}
    for task in tasks:
        by_seed.setdefault(task.seed, []).append(task)
    return {
        seed: concatenate([fold_backtests(task) for task in sorted(seed_tasks, key=lambda t: t.fold)])
        for seed, seed_tasks in by_seed.items()
    }


def backtests_report(backtests: Backtests, interval: str, cfg: EvaluationConfig, seed: int) -> dict[str, Any]:
    """`agent`, `baselines` and `comparison` of `backtests` (one of them named `agent`), with the metrics and
    names of `dreamer run`'s report: every series' Sharpe with its block-bootstrap interval and standard
    error, and the agent's Sharpe difference to each baseline with a paired interval (`significant`: the
    whole interval above zero)."""
    from dreamer.evaluation.metrics import bootstrap_sharpe, compute_metrics, periods_per_year
    from dreamer.evaluation.report import paired_comparisons, position_concentration, sharpe_uncertainty

    if "agent" not in backtests.results:
        raise DreamerError(f"backtests {backtests.names} have no agent")
    periods = periods_per_year(interval)
    series = backtests.results
    draws = bootstrap_sharpe(
        {name: result.net_returns for name, result in series.items()},
        periods,
        cfg.bootstrap_block,
        cfg.bootstrap_samples,
        seed,
    )
    metrics = {name: compute_metrics(result, periods) for name, result in series.items()}
    reports: dict[str, dict[str, Any]] = {}
    for name in series:
        reports[name] = {**metrics[name], **sharpe_uncertainty(draws[name], cfg.confidence)}
    agent = reports.pop("agent") | position_concentration(series["agent"].positions)
    comparison = paired_comparisons(draws, metrics["agent"], reports, cfg.confidence)
    return {"agent": agent, "baselines": reports, "comparison": comparison}


def stitched_report(curves: Mapping[int, Backtests], interval: str, cfg: EvaluationConfig) -> dict[str, Any]:
    """The stitched out-of-sample report: its test span, the pooled account's `agent`, `baselines` and
    `comparison` (`backtests_report`; pooled: `average` of the seeds' accounts, bootstrapped with the first
    seed) and the same per seed under `per_seed`."""
    seeds = sorted(curves)
    pooled = average([curves[seed] for seed in seeds])
    times = pooled.open_time_ms
    return {
        "test": {"start": _iso(times[0]), "end": _iso(times[-1]), "bars": len(times) - 1},
        "seeds": seeds,
        **backtests_report(pooled, interval, cfg, seeds[0]),
        "per_seed": [{"seed": seed, **backtests_report(curves[seed], interval, cfg, seed)} for seed in seeds],
    }


# --- the whole walk-forward ----------------------------------------------------------------------


def prepare_folds(data: Mapping[str, Any], cfg: RunConfig, out_dir: str | Path) -> list[FoldSnapshot]:
    """The fold snapshots under `out_dir/folds/` from `stage_features`' result `data` (its dataset
    directory's `features.parquet`), after checking `out_dir/plan.json` against this data and config
    (written on the first call): resuming with either changed would mix results of two experiments."""
    from dreamer.features.split import purge_bars

    out = Path(out_dir)
    features = pd.read_parquet(Path(data["dataset_dir"]) / "features.parquet")
    times = complete_open_times(features)
    windows = plan_folds(times, cfg.walk_forward, purge_bars(cfg.split))
    plan = {
        "data": {key: data[key] for key in _DATA_IDENTITY},
        "config": json.loads(json.dumps(cfg.to_dict())),  # as read back from JSON: lists, not tuples
        "folds": [{"fold": window.fold, **window.ranges(times)} for window in windows],
    }
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        stored = json.loads(plan_path.read_text(encoding="utf-8"))
        changed = [key for key in plan if stored.get(key) != plan[key]]
        if changed:
            raise ConfigError(
                f"{out} holds a walk-forward with another {' and '.join(changed)}: use another --out, or delete it "
                "to start over"
            )
    meta = {key: data[key] for key in ("category", "symbol", "interval", "source", "funding_settlements")}
    snapshots = write_fold_datasets(features, windows, cfg.split, out / "folds", meta)
    if not plan_path.exists():
        from dreamer.features.dataset import atomic_write_text

        atomic_write_text(plan_path, json.dumps(plan, indent=2) + "\n")
    return snapshots


_DATA_IDENTITY = (
    "source",
    "category",
    "symbol",
    "interval",
    "first_open_time",
    "last_open_time",
    "content_hash",
    "funding_hash",
)


def fold_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """A task's result as one entry of the report's `folds`: without its timing and file name, so two
    walk-forwards of the same data, config and seeds give the same report."""
    return {key: value for key, value in result.items() if key not in ("seconds", "backtests")}


def statistics_records(
    symbol: str,
    interval: str,
    config: str,
    folds: Sequence[Mapping[str, Any]],
    stitched: Mapping[str, Any],
    curves: Mapping[int, Backtests],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs of `dreamer.research.statistics.summarise` for one (symbol, config): its fold records
    (`fold_record`s) and its seeds' stitched agents (`stitched_report`'s `per_seed` and the `curves`),
    labelled `<symbol>/<interval>` (e.g. "BTCUSDT/5") and `config`."""
    from dreamer.evaluation.metrics import periods_per_year
    from dreamer.research.statistics import return_moments

    market = {"symbol": f"{symbol}/{interval}", "config": config}
    stitched_agents = [
        {
            **market,
            "seed": entry["seed"],
            "periods_per_year": periods_per_year(interval),
            "agent": {
                "sharpe": entry["agent"]["sharpe"],
                "num_bars": curves[entry["seed"]].results["agent"].num_bars,
                **return_moments(curves[entry["seed"]].results["agent"].net_returns),
            },
        }
        for entry in stitched["per_seed"]
    ]
    return [{**fold, **market} for fold in folds], stitched_agents


def walk_forward_report(
    data: Mapping[str, Any],
    cfg: RunConfig,
    seeds: Sequence[int],
    results: Sequence[Mapping[str, Any]],
    curves: Mapping[int, Backtests],
    n_configs: int = 1,
) -> dict[str, Any]:
    """The walk-forward's JSON report: `data`, `config`, `walk_forward`, `folds` (one entry per task),
    `stitched` (`stitched_report` of the seeds' stitched `curves`) and `statistics`
    (`dreamer.research.statistics.summarise`), where `n_configs` is how many configurations were tried in all
    (this one included), which the deflated Sharpe ratio discounts for."""
    from dreamer.evaluation.report import jsonable
    from dreamer.research.statistics import summarise

    if n_configs < 1:
        raise ConfigError(f"n_configs must be >= 1, got {n_configs}")
    interval = str(data["interval"])
    folds = jsonable([fold_record(result) for result in results])
    stitched = jsonable(stitched_report(curves, interval, cfg.evaluation))
    fold_records, stitched_agents = statistics_records(str(data["symbol"]), interval, cfg.name, folds, stitched, curves)
    statistics = summarise(fold_records, stitched_agents, n_configs)
    return jsonable(
        {
            "data": {key: data[key] for key in (*_DATA_IDENTITY, "rows", "purge_bars")},
            "config": cfg.to_dict(),
            "walk_forward": {**dataclasses.asdict(cfg.walk_forward), "seeds": list(seeds), "n_configs": n_configs},
            "folds": folds,
            "stitched": stitched,
            "statistics": statistics,
        }
    )


def run_walk_forward(
    spec: DataSpec,
    db_path: str | Path,
    config: str,
    overrides: Mapping[str, Any],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    n_configs: int = 1,
    threads: int = 1,
    runner: TaskRunner = run_sequentially,
    on_result: ResultCallback | None = None,
) -> dict[str, Any]:
    """Ingest, validate and build the features of `spec` once, write the fold snapshots, run every (seed,
    fold) task with `runner`, stitch the test windows and return `walk_forward_report`. `config` and
    `overrides` (nested) make the run config; a rerun on the same `out_dir` resumes."""
    from dreamer.pipeline import stage_features, stage_ingest, stage_validate, use_cpu_threads

    cfg = load_config(config, dict(overrides))
    if cfg.warm_start != "scratch":
        log.warning(
            "warm_start: %s is ignored: a fold starts from its seed or (walk_forward.warm_start_from_previous_fold) "
            "from the previous fold, never from the registry's champion, which has seen later folds' data",
            cfg.warm_start,
        )
    use_cpu_threads(threads)
    out = Path(out_dir)
    stage_ingest(spec, db_path)
    stage_validate(spec, db_path, cfg, out / "validation")
    data = stage_features(spec, db_path, cfg, out / "features")
    snapshots = prepare_folds(data, cfg, out)
    tasks = fold_tasks(
        snapshots,
        seeds,
        config,
        overrides,
        out,
        warm_start=cfg.walk_forward.warm_start_from_previous_fold,
        threads=threads,
    )
    results = runner(tasks, on_result)
    curves = stitched_curves(tasks)
    for seed, curve in curves.items():
        save_backtests(out / "stitched" / f"seed-{seed}.npz", curve.results, curve.open_time_ms)
    return walk_forward_report(data, cfg, seeds, results, curves, n_configs)


def _splits(window: FoldWindow) -> tuple[tuple[int, int], ...]:
    return window.train, window.val, window.test


def _first_row_at(times: np.ndarray, moment_ms: int) -> int:
    return int(np.searchsorted(times, moment_ms, side="left"))


def _iso(ms: int | np.integer) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()
