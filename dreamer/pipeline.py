"""The pipeline as plain stage functions: what the Prefect flow's tasks (`flows/pipeline.py`) wrap.

Stages exchange paths and plain dicts (JSON-ready), never connections or models, so each can run in its
own process. Every stage writes under its own directory of the run (`docs/ARCHITECTURE.md`):

    run_dir/validation/  report.html, summary.json
    run_dir/dataset/     dataset.npz, dataset.json, normaliser.json, features.parquet
    run_dir/world_model/ checkpoint.pt, metrics.jsonl
    run_dir/agent/       checkpoint.pt, metrics.jsonl
    run_dir/evaluation/  metrics.json, backtests.npz (every backtest, bar by bar), trace.npz,
                         tearsheet.html, equity.png, drawdown.png, positions.png, imagined_vs_real.png
    run_dir/metrics.json the run's report (`run_report`, with timings; `dreamer run --metrics-out` writes it)

Which bars a run reads: `[start, end]` of the `DataSpec`; without `start`, the `lookback_days` before the
end (or before the newest stored bar); without either, every stored bar of the series. The training
stages resume from their checkpoints, so rerunning an interrupted run completes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from dreamer.config import RunConfig
from dreamer.data.markets import PERPETUAL_CATEGORIES
from dreamer.errors import ConfigError

if TYPE_CHECKING:
    from dreamer.agent.policy import TradingPolicy
    from dreamer.evaluation.baselines import SupervisedBaseline
    from dreamer.evaluation.report import Evaluation
    from dreamer.features.dataset import MarketDataset
    from dreamer.training.world_model import MetricsCallback

Source = Literal["bybit", "csv", "sample"]
SOURCES: tuple[str, ...] = ("bybit", "csv", "sample")
SAMPLE_MARKET = ("linear", "BTCUSDT", "5")
RUN_REPORT = "metrics.json"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """Which market a run trades and where its klines (and, on perpetuals, funding settlements) come from."""

    source: Source = "bybit"
    symbol: str = "BTCUSDT"
    interval: str = "5"
    category: str = "linear"
    path: str | None = None  # csv: the kline file
    funding_path: str | None = None  # csv: the funding file (funding_time_ms,funding_rate) of a perpetual
    start: str | None = None  # first candle start (ISO date/time, UTC) of the bars the run uses
    end: str | None = None  # last candle start (inclusive)
    lookback_days: int | None = None  # without start: this many days before end (or the newest stored bar)
    base_url: str | None = None  # bybit: API base URL (default: $DREAMER_BYBIT_URL or mainnet)

    def __post_init__(self) -> None:
        from dreamer.data.markets import parse_category, parse_interval, parse_symbol

        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "csv" and not self.path:
            raise ConfigError("source csv needs a path to the kline file")
        if self.funding_path and self.source != "csv":
            raise ConfigError(f"funding_path is for source csv (source {self.source} brings its own funding)")
        if self.lookback_days is not None and self.lookback_days < 1:
            raise ConfigError(f"lookback_days must be >= 1, got {self.lookback_days}")
        # Normalise spellings ("btcusdt", "5m" are rejected or canonicalised by the data layer).
        object.__setattr__(self, "symbol", parse_symbol(self.symbol))
        object.__setattr__(self, "category", parse_category(self.category))
        object.__setattr__(self, "interval", parse_interval(self.interval).code)
        if self.source == "sample" and (self.category, self.symbol, self.interval) != SAMPLE_MARKET:
            raise ConfigError(
                f"the bundled sample is {'/'.join(SAMPLE_MARKET)}; got {self.category}/{self.symbol}/{self.interval}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as the run logs it (the `data.*` MLflow params): a base URL's credentials redacted."""
        from dreamer.data.bybit import redact_url

        return {**dataclasses.asdict(self), "base_url": self.base_url and redact_url(self.base_url)}


# --- stages ------------------------------------------------------------------------------------


def stage_ingest(spec: DataSpec, db_path: str | Path) -> dict[str, Any]:
    """Bring the klines of `spec` into the DuckDB file `db_path` (incremental and idempotent), and on the
    perpetual categories the funding settlements covering them: fetched from Bybit, the sample's own, or
    `spec.funding_path` for a CSV source. The result is the klines' report, the funding run's as `funding`."""
    from dreamer.data.ingest import ingest_bybit, ingest_csv, ingest_sample

    if spec.source == "sample":
        report = ingest_sample(db_path)
    elif spec.source == "csv":
        assert spec.path is not None
        report = ingest_csv(
            db_path, spec.path, spec.category, spec.symbol, spec.interval, funding_path=spec.funding_path
        )
    else:
        from dreamer.data import store

        con = store.connect(db_path)
        try:
            stored_last = store.last_open_time(con, spec.category, spec.symbol, spec.interval)
        finally:
            con.close()
        start = spec.start
        if start is None and stored_last is None:  # first run: fetch the lookback window
            days = spec.lookback_days or 365
            start = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")
        report = ingest_bybit(
            db_path, spec.category, spec.symbol, spec.interval, start=start, end=spec.end, base_url=spec.base_url
        )
    return report.to_dict()


def stage_validate(spec: DataSpec, db_path: str | Path, cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the validation gate on the run's bars; raises `DataValidationError` (report written) on failure."""
    from dreamer.data import store
    from dreamer.features.validate import REPORT_FILE, SUMMARY_FILE, validate_series

    start, end = data_window(spec, db_path)
    con = store.connect(db_path, read_only=True)
    try:
        report = validate_series(
            con, spec.category, spec.symbol, spec.interval, cfg.validation, start=start, end=end, out_dir=out_dir
        )
    finally:
        con.close()
    out = Path(out_dir)
    return {**report.to_dict(), "report_html": str(out / REPORT_FILE), "summary_json": str(out / SUMMARY_FILE)}


def stage_features(spec: DataSpec, db_path: str | Path, cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Build the causal features (sql/features.sql), split them and save the `MarketDataset` in `out_dir`.

    Returns the dataset directory and the data's identity: rows, time ranges, and a SHA-256 of the klines
    read (open time and OHLCV), which changes whenever the input does."""
    from dreamer.data import store
    from dreamer.features.build import compute_features, read_funding_for, write_parquet
    from dreamer.features.split import make_dataset

    start, end = data_window(spec, db_path)
    con = store.connect(db_path, read_only=True)
    try:
        klines = store.read_klines(con, spec.category, spec.symbol, spec.interval, start=start, end=end)
        funding = None if klines.empty else read_funding_for(con, spec.category, spec.symbol, klines)
    finally:
        con.close()
    if klines.empty:
        raise ConfigError(f"no klines stored for {spec.category}/{spec.symbol}/{spec.interval} in [{start}, {end}]")
    if funding is None and spec.category in PERPETUAL_CATEGORIES:
        log.warning(
            "%s/%s has no funding stored: it trades without funding (validation.check_funding is off)",
            spec.category,
            spec.symbol,
        )
    features = compute_features(klines, spec.interval, funding)
    meta = {
        "category": spec.category,
        "symbol": spec.symbol,
        "interval": spec.interval,
        "source": spec.source,
        "funding_settlements": 0 if funding is None else len(funding),
    }
    dataset = make_dataset(features, cfg.split, meta)
    out = Path(out_dir)
    dataset.save(out)
    write_parquet(features, out / "features.parquet")
    return {
        "dataset_dir": str(out),
        **meta,
        "klines": len(klines),
        "rows": len(dataset),
        "features": list(dataset.feature_names),
        "first_open_time": _iso(int(dataset.open_time_ms[0])),
        "last_open_time": _iso(int(dataset.open_time_ms[-1])),
        "content_hash": klines_hash(klines),
        "funding_hash": funding_hash(funding),
        "splits": split_ranges(dataset),
        "purge_bars": dataset.meta.get("purge_bars"),
    }


def stage_train_world_model(
    dataset_dir: str | Path,
    cfg: RunConfig,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    on_metrics: MetricsCallback | None = None,
) -> dict[str, Any]:
    """Train (or resume training) the world model on the dataset's train split; a fresh start from the
    agent checkpoint `init_from` (warm start, `dreamer.orchestration.warm_start`) when given.
    `on_metrics(step, metrics)` after every update (e.g. a `dreamer.orchestration.progress.TrainingProgress`)."""
    from dreamer.training import train_world_model

    result = train_world_model(dataset_dir, cfg.dreamer, out_dir, init_from=init_from, on_metrics=on_metrics)
    return {
        "checkpoint": str(result.checkpoint),
        "metrics_path": str(result.metrics_path),
        "steps": result.steps,
        "final_metrics": result.final_metrics,
        "seconds": result.seconds,
    }


def stage_train_policy(
    dataset_dir: str | Path,
    world_model_checkpoint: str | Path,
    cfg: RunConfig,
    out_dir: str | Path,
    init_from: str | Path | None = None,
    on_metrics: MetricsCallback | None = None,
) -> dict[str, Any]:
    """Train (or resume training) the actor-critic in imagination inside the trained world model; a fresh
    start from the actor-critic of the agent checkpoint `init_from` (warm start) when given.
    `on_metrics(step, metrics)` after every update."""
    from dreamer.agent.trainer import train_policy

    result = train_policy(
        world_model_checkpoint, dataset_dir, cfg.dreamer, out_dir, init_from=init_from, on_metrics=on_metrics
    )
    return {
        "checkpoint": str(result.checkpoint),
        "metrics_path": str(result.metrics_path),
        "steps": result.steps,
        "final_metrics": result.final_metrics,
        "seconds": result.seconds,
    }


def stage_train_ppo(dataset_dir: str | Path, cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Train the model-free baseline `ppo` (`cfg.ppo`) on the dataset's train split with the agent's costs
    and funding, and save it in `out_dir`; a rerun reuses a saved one."""
    import time

    from dreamer.evaluation.ppo import save_ppo, saved_ppo, train_ppo
    from dreamer.features.dataset import MarketDataset

    began = time.perf_counter()
    if not saved_ppo(out_dir):
        dataset = MarketDataset.load(dataset_dir)
        dreamer_cfg = cfg.dreamer
        policy = train_ppo(
            dataset,
            cfg.ppo,
            dreamer_cfg.seed,
            cost_rate=dreamer_cfg.cost_rate,
            position_levels=dreamer_cfg.position_levels,
        )
        save_ppo(policy, out_dir)
    return {"model_dir": str(out_dir), "timesteps": cfg.ppo.total_timesteps, "seconds": time.perf_counter() - began}


def stage_evaluate(
    dataset_dir: str | Path,
    agent_checkpoint: str | Path,
    cfg: RunConfig,
    out_dir: str | Path,
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
    ppo_model: str | Path | None = None,
) -> dict[str, Any]:
    """Backtest the agent and the baselines on the test split and, unless `evaluation.diagnostics` is off,
    score the world model's forecasts there and draw the plots and the tear sheet. Writes `metrics.json` and
    every backtest bar by bar (`backtests.npz`, `dreamer.research.backtests`: what a paired comparison with
    another agent on this window, or the stitching of a walk-forward's test windows, needs; the baseline
    `random`: its first seed); returns its content plus the file paths. Logs each of these steps, with its
    duration, to `logger` as it ends. `ppo_model`: a `stage_train_ppo` model directory, traded as the
    baseline `ppo`."""
    from dreamer.evaluation.diagnostics import load_critic, policy_diagnostics
    from dreamer.evaluation.forecast import forecast_metrics
    from dreamer.evaluation.report import jsonable, write_json, write_plots
    from dreamer.evaluation.tearsheet import TEARSHEET_FILE, write_tearsheet
    from dreamer.features.dataset import MarketDataset
    from dreamer.research.backtests import BACKTESTS_FILE, save_backtests

    dataset = MarketDataset.load(dataset_dir)
    dreamer_cfg = cfg.dreamer
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy, evaluation = backtest_test_split(dataset, agent_checkpoint, cfg, logger=logger, ppo_model=ppo_model)
    window = evaluation.window
    backtests_path = save_backtests(out / BACKTESTS_FILE, evaluation.results, window.open_time_ms)
    forecasts: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    plots: dict[str, str] = {}
    tearsheet: Path | None = None
    if cfg.evaluation.diagnostics:
        with logged_duration(logger, "evaluation: world-model forecasts"):
            forecasts = forecast_metrics(policy.world_model, dataset, "test", seed=dreamer_cfg.seed)
        with logged_duration(logger, "evaluation: diagnostics"):
            critic = load_critic(agent_checkpoint, policy)
            diagnostics = policy_diagnostics(
                policy,
                critic,
                evaluation.inputs,
                evaluation.results["agent"],
                out,
                funding=dataset.funding.take(window.rows),
                seed=dreamer_cfg.seed,
            )
        with logged_duration(logger, "evaluation: plots"):
            plots = write_plots(
                evaluation,
                dataset,
                policy.world_model,
                out,
                horizon=dreamer_cfg.imagination_horizon,
                context=dreamer_cfg.sequence_length,
                seed=dreamer_cfg.seed,
            )
        with logged_duration(logger, "evaluation: tear sheet"):
            tearsheet = write_tearsheet(evaluation, dataset, out / TEARSHEET_FILE, config_name=cfg.name)
    report = {**evaluation.report, "world_model": jsonable(forecasts), "diagnostics": jsonable(diagnostics)}
    metrics_path = write_json(out / "metrics.json", report)
    return {
        **report,
        "metrics_path": str(metrics_path),
        "backtests_path": str(backtests_path),
        "plots": plots,
        "tearsheet": None if tearsheet is None else str(tearsheet),
    }


def backtest_test_split(
    dataset: MarketDataset,
    agent_checkpoint: str | Path,
    cfg: RunConfig,
    *,
    logger: logging.Logger | logging.LoggerAdapter[Any] = log,
    ppo_model: str | Path | None = None,
    supervised: SupervisedBaseline | None = None,
) -> tuple[TradingPolicy, Evaluation]:
    """The backtests of `stage_evaluate`: the agent of `agent_checkpoint` and the baselines on the test split
    of `dataset` (`evaluate_policy`; `ppo_model`: a `stage_train_ppo` model directory, traded as the baseline
    `ppo`; `supervised`: the supervised baseline when fitted already). Returns the loaded policy too."""
    from dreamer.agent.policy import TradingPolicy
    from dreamer.evaluation.report import evaluate_policy
    from dreamer.training import resolve_device

    policy = TradingPolicy.load(agent_checkpoint, resolve_device(cfg.dreamer.device))
    trained_baselines = {}
    if ppo_model is not None:
        from dreamer.evaluation.ppo import load_ppo, ppo_positions

        with logged_duration(logger, "evaluation: the PPO baseline's positions"):
            trained_baselines["ppo"] = ppo_positions(load_ppo(ppo_model), dataset, "test")
    with logged_duration(logger, "evaluation: backtests of the agent and the baselines"):
        evaluation = evaluate_policy(
            policy,
            dataset,
            cfg.evaluation,
            cfg.dreamer.cost_rate,
            str(dataset.meta.get("interval", "5")),
            # The agent's own latent warm-up and seed (from its checkpoint), as its MLflow model trades
            # (`dreamer.orchestration.pyfunc`): a re-evaluated champion gets the positions it trades with.
            warm_up_bars=policy.cfg.sequence_length,
            seed=policy.cfg.seed,
            trained_baselines=trained_baselines,
            supervised=supervised,
        )
    return policy, evaluation


def run_report(
    spec: DataSpec,
    cfg: RunConfig,
    data: dict[str, Any],
    world_model: dict[str, Any],
    agent: dict[str, Any],
    evaluation: dict[str, Any],
    warm_start: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's report (the JSON `dreamer run --metrics-out` writes) from the stages' results: `agent`,
    `baselines`, `comparison`, `world_model`, `config`, `data`, `evaluation`, `training`. A function of the
    data, the config and its seed only (no paths, no clocks): on CPU two runs give identical JSON, unless
    one of them fine-tuned a champion (`warm_start`, the `warm-start` stage's result, says which)."""
    from dreamer.evaluation.report import jsonable

    return jsonable(
        {
            "agent": evaluation["agent"],
            "baselines": evaluation["baselines"],
            "comparison": evaluation["comparison"],
            "world_model": evaluation["world_model"],
            "diagnostics": evaluation.get("diagnostics"),
            "config": cfg.to_dict(),
            "data": {
                "source": spec.source,
                "category": spec.category,
                "symbol": spec.symbol,
                "interval": spec.interval,
                "rows": data["rows"],
                "klines": data["klines"],
                "first_open_time": data["first_open_time"],
                "last_open_time": data["last_open_time"],
                "content_hash": data["content_hash"],
                "purge_bars": data["purge_bars"],
                **data["splits"],
            },
            "evaluation": evaluation["window"],
            "training": {
                # where training started: the source (scratch | champion), and the model or the reason
                "warm_start": {key: value for key, value in (warm_start or {}).items() if key != "checkpoint"},
                "world_model": {"steps": world_model["steps"], "final": _stable(world_model["final_metrics"])},
                "policy": {"steps": agent["steps"], "final": _stable(agent["final_metrics"])},
            },
        }
    )


def use_cpu_threads(threads: int) -> None:
    """Run torch's CPU ops on `threads` intra-op threads from now on in this process (0: leave torch's
    default, one per core). The models are small: on a shared or busy machine the default's spin-waiting
    threads make training and evaluation many times slower than one thread does."""
    if threads < 0:
        raise ConfigError(f"threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


# --- helpers -----------------------------------------------------------------------------------


def data_window(spec: DataSpec, db_path: str | Path) -> tuple[str | None, str | None]:
    """`(start, end)` candle-start bounds of the bars the run uses (see the module docstring)."""
    if spec.start is not None or spec.lookback_days is None:
        return spec.start, spec.end
    from dreamer.data import store
    from dreamer.data.markets import parse_time_ms

    if spec.end is not None:
        end_ms: int | None = parse_time_ms(spec.end, "end")
    else:
        con = store.connect(db_path, read_only=True)
        try:
            end_ms = store.last_open_time(con, spec.category, spec.symbol, spec.interval)
        finally:
            con.close()
    if end_ms is None:
        return None, None
    return _iso(end_ms - spec.lookback_days * 86_400_000), spec.end


@contextmanager
def logged_duration(logger: logging.Logger | logging.LoggerAdapter[Any], what: str) -> Iterator[None]:
    """Log `"<what> in 1.2 s"` at INFO when the body has run (nothing if it raises)."""
    began = time.perf_counter()
    yield
    logger.info("%s in %.1f s", what, time.perf_counter() - began)


def klines_hash(klines: pd.DataFrame) -> str:
    """SHA-256 over the open times (epoch ms) and OHLCV values, in time order."""
    digest = hashlib.sha256()
    times = pd.to_datetime(klines["open_time"], utc=True)
    digest.update(((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(np.int64).tobytes())
    for column in ("open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(klines[column].to_numpy(np.float64)).tobytes())
    return digest.hexdigest()


def funding_hash(funding: pd.DataFrame | None) -> str:
    """SHA-256 over the settlement times and rates a dataset read; "none" without funding."""
    if funding is None:
        return "none"
    digest = hashlib.sha256(funding["funding_time_ms"].to_numpy(np.int64).tobytes())
    digest.update(np.ascontiguousarray(funding["funding_rate"].to_numpy(np.float64)).tobytes())
    return digest.hexdigest()


def split_ranges(dataset: Any) -> dict[str, dict[str, Any]]:
    """`{split: {start, end (ISO-8601 UTC candle starts, inclusive), rows}}`."""
    ranges = {}
    for name, (start, stop) in dataset.splits.items():
        ranges[name] = {
            "start": _iso(int(dataset.open_time_ms[start])) if stop > start else None,
            "end": _iso(int(dataset.open_time_ms[stop - 1])) if stop > start else None,
            "rows": stop - start,
        }
    return ranges


def _stable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Training metrics without wall-clock measurements (they differ between identical runs)."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/") and "per_s" not in k}


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
