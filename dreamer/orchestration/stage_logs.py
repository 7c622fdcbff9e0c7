"""What each pipeline stage leaves in MLflow (see `tracking` for the layout: a nested run per stage).

Each function takes the stage's nested-run logger and the plain dict the stage returned
(`dreamer.pipeline.stage_*`), so the Prefect tasks stay one call to the stage and one to its logger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dreamer.config import RunConfig
from dreamer.orchestration.tracking import FlowTracking, RunLogger, read_jsonl

if TYPE_CHECKING:
    from dreamer.orchestration.progress import TrainingProgress

INGEST_COUNTS = (
    "rows_received",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "open_candles_dropped",
    "requests",
    "retries",
    "gaps_found",
    "missing_candles",
    "duration_s",
    "fetch_s",
    "write_s",
)
MAX_CURVE_POINTS = 1_000
"""Step-wise training curves are thinned to this many points per metric (the full JSONL is an artifact)."""
HEADLINE = (
    "sharpe",
    "sortino",
    "calmar",
    "total_return",
    "total_return_ex_funding",
    "funding_paid",
    "fees_paid",
    "cagr",
    "max_drawdown",
    "turnover",
    "num_trades",
)
"""Backtest metrics copied to the parent run, where the MLflow experiment table compares runs."""
PLOTS_ARTIFACT_DIR = "plots"
TEARSHEET_ARTIFACT_DIR = "tearsheet"


def parent_params(cfg: RunConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """The parent run's params: the full config (`section.key`) and the data spec (`data.*`). `dreamer.device`
    is the device the run resolved (`auto` becomes `cpu` or `cuda`), so runs on the same hardware compare
    equal whatever their config said; the config's own value is `dreamer.device_requested`."""
    from dreamer.training import resolve_device  # imports torch

    params = cfg.flat_params()
    requested = str(cfg.dreamer.device)
    params["dreamer.device"] = str(resolve_device(requested))
    params["dreamer.device_requested"] = requested
    return params | {f"data.{key}": value for key, value in data.items()}


def log_ingest(run: RunLogger, result: Mapping[str, Any]) -> None:
    """The klines run's counts, and the funding run's (if any) as `funding.*`; the whole report as ingest.json."""
    run.tags({"source": result.get("source"), "status": result.get("status")})
    funding = result.get("funding") or {}
    run.metrics(
        {key: result[key] for key in INGEST_COUNTS if key in result}
        | {f"funding.{key}": funding[key] for key in INGEST_COUNTS if key in funding}
    )
    run.dict_artifact(result, "ingest.json")


def log_validation(run: RunLogger, summary: Mapping[str, Any], report_dir: str | Path | None) -> None:
    """The gate's outcome, passed or failed: counts as metrics, status as a tag, report.html + summary.json."""
    outcomes = summary.get("outcomes", [])
    run.tags({"status": summary.get("status")})
    run.metrics(
        {
            "rows": summary.get("rows"),
            "missing_bars": summary.get("missing_bars"),
            "gap_fraction": summary.get("gap_fraction"),
            "failures": len(summary.get("failures", [])),
            "warnings": len(summary.get("warnings", [])),
            "expectations": len(outcomes),
            "expectations_met": sum(bool(o.get("success")) for o in outcomes),
            "funding_settlements": (summary.get("funding") or {}).get("settlements"),
        }
    )
    if report_dir is not None and Path(report_dir).is_dir():
        run.artifact(report_dir, "validation")
    else:
        run.dict_artifact(summary, "validation/summary.json")


def log_features(run: RunLogger, data: Mapping[str, Any], cached: bool) -> None:
    """Data identity, split sizes, feature statistics per split (the drift a reader wants to see)."""
    run.tags(
        {
            "cached": cached,
            "content_hash": data.get("content_hash"),
            "funding_hash": data.get("funding_hash"),
            "dataset_dir": data.get("dataset_dir"),
        }
    )
    run.metrics(
        {
            "rows": data.get("rows"),
            "klines": data.get("klines"),
            "purge_bars": data.get("purge_bars"),
            "features": len(data.get("features", [])),
        }
        | {f"{split}.rows": bounds.get("rows") for split, bounds in data.get("splits", {}).items()}
    )
    run.dict_artifact(data, "data.json")
    dataset_dir = Path(data["dataset_dir"])
    for name in ("dataset.json", "normaliser.json"):
        if (dataset_dir / name).exists():
            run.artifact(dataset_dir / name, "dataset")
    run.client.log_table(run.run_id, data=feature_statistics(dataset_dir), artifact_file="feature_stats.json")


def feature_statistics(dataset_dir: str | Path) -> pd.DataFrame:
    """Mean, std, min and max of every normalised feature on each split: train is ~N(0, 1) by
    construction, so val/test rows far from it show drift."""
    from dreamer.features.dataset import MarketDataset

    dataset = MarketDataset.load(dataset_dir)
    rows = []
    for split in ("train", "val", "test"):
        obs = dataset.obs[dataset.split_slice(split)].astype(np.float64)  # [n, F]
        if not len(obs):
            continue
        for index, name in enumerate(dataset.feature_names):
            column = obs[:, index]
            rows.append(
                {
                    "feature": name,
                    "split": split,
                    "mean": float(column.mean()),
                    "std": float(column.std()),
                    "min": float(column.min()),
                    "max": float(column.max()),
                }
            )
    return pd.DataFrame(rows)


def log_training(run: RunLogger, result: Mapping[str, Any], streamed: TrainingProgress | None = None) -> None:
    """Step-wise curves from the stage's metrics.jsonl (with `streamed`, the reporter that streamed them while
    the stage ran: only the points it did not write), its totals, and the JSONL itself."""
    metrics_path = Path(result["metrics_path"])
    if metrics_path.exists():
        if streamed is None:
            run.history_file(metrics_path, max_points=MAX_CURVE_POINTS)
        else:
            run.history(streamed.unstreamed(read_jsonl(metrics_path)))
        run.artifact(metrics_path)
    run.metrics({"steps": result.get("steps"), "seconds": result.get("seconds")})
    run.tags({"checkpoint": result.get("checkpoint")})


def log_evaluation(run: RunLogger, evaluation: Mapping[str, Any]) -> None:
    """Agent and baseline backtests, comparisons (with the bounds of their intervals), world-model forecast
    metrics, held-out diagnostics, metrics.json, the diagnostics trace and plots."""
    comparison = evaluation.get("comparison") or {}
    run.metrics(
        {key: evaluation.get(key) for key in ("baselines", "world_model", "diagnostics")}
        | {"agent": with_interval_bounds(evaluation.get("agent") or {})}
        | {"comparison": {name: with_interval_bounds(c) for name, c in comparison.items()}}
        | {"window": {"bars": evaluation.get("window", {}).get("bars")}}
    )
    window = evaluation.get("window", {})
    run.tags({"window.start": window.get("start"), "window.end": window.get("end")})
    if evaluation.get("metrics_path"):
        run.artifact(evaluation["metrics_path"])
        from dreamer.evaluation.diagnostics import TRACE_FILE  # imports torch

        trace = Path(evaluation["metrics_path"]).parent / TRACE_FILE
        if trace.exists():
            run.artifact(trace)
    for path in (evaluation.get("plots") or {}).values():
        run.artifact(path, PLOTS_ARTIFACT_DIR)


def with_interval_bounds(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """`metrics` with every interval `<name>_ci: [low, high]` (a list, which MLflow cannot hold) also as the
    scalars `<name>_ci_low` and `<name>_ci_high`."""
    bounds = {
        f"{key}_{side}": bound
        for key, value in metrics.items()
        if key.endswith("_ci") and isinstance(value, list | tuple) and len(value) == 2
        for side, bound in zip(("low", "high"), value, strict=True)
    }
    return {**metrics, **bounds}


def versus(sharpe_diff: float | None, interval: Sequence[Any] | None, significant: bool | None) -> dict[str, Any]:
    """One paired comparison as the parent run's `vs_<other>.*` scalars: the agent's Sharpe minus the other's
    on the same bars, and the bounds of its paired block-bootstrap interval."""
    low, high = interval if isinstance(interval, list | tuple) and len(interval) == 2 else (None, None)
    return {
        "sharpe_diff": sharpe_diff,
        "sharpe_diff_ci_low": low,
        "sharpe_diff_ci_high": high,
        "significant": significant,
    }


def headline(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a reader compares runs by: `agent.*` (with `sharpe_ci_low`/`_high`), `baselines.<name>.*`,
    `vs_<baseline>.*` (the paired Sharpe differences) and `world_model.*`."""
    agent = with_interval_bounds(evaluation.get("agent") or {})
    baselines = evaluation.get("baselines") or {}
    comparison = evaluation.get("comparison") or {}
    return {
        "agent": {key: agent.get(key) for key in (*HEADLINE, "sharpe_ci_low", "sharpe_ci_high")},
        "baselines": {name: {key: m.get(key) for key in HEADLINE} for name, m in baselines.items()},
        **{
            f"vs_{name}": versus(c.get("sharpe_diff"), c.get("sharpe_diff_ci"), c.get("significant"))
            for name, c in comparison.items()
        },
        "world_model": evaluation.get("world_model") or {},
    }


def versus_champion(decision: Mapping[str, Any]) -> dict[str, Any]:
    """`{"vs_champion": versus(...)}` of a decision made against a champion's returns on the window, else {}."""
    diff = decision.get("sharpe_diff")
    if not diff:
        return {}
    return {"vs_champion": versus(diff["diff"], [diff["ci_low"], diff["ci_high"]], diff["significant"])}


def promotion_headline(promotion: Mapping[str, Any]) -> dict[str, Any]:
    """After the decision: `promotion.promoted`, the champion's numbers on this window (`champion.*`) and the
    paired comparison with it (`vs_champion.*`), when there was a champion to compare with."""
    decision = promotion["decision"]
    champion = promotion.get("champion")
    return (
        {"promotion": {"promoted": decision["promote"]}}
        | ({"champion": {key: champion["metrics"].get(key) for key in HEADLINE}} if champion else {})
        | versus_champion(decision)
    )


def log_promotion(run: RunLogger, promotion: Mapping[str, Any]) -> None:
    decision = promotion["decision"]
    run.tags(
        {
            "model_name": promotion["model_name"],
            "version": promotion["version"],
            "decision": decision["alias"],
            "reasons": "; ".join(decision["reasons"]),
        }
    )
    champion = promotion.get("champion")
    run.metrics(
        {
            "promoted": decision["promote"],
            "candidate": decision.get("candidate_value"),
            "champion": decision.get("champion_value"),
            "latest_target_position": (promotion.get("latest") or {}).get("target_position"),
        }
        | ({"champion_metrics": champion["metrics"]} if champion else {})
        | versus_champion(decision)
    )
    run.dict_artifact(promotion, "promotion.json")


def log_parent_headline(tracking: FlowTracking, evaluation: Mapping[str, Any]) -> None:
    """The evaluation's `headline` metrics on the parent run. Logged at step 0 before the model is: MLflow
    links a run's step-0 metrics to the model logged in it (the UI's Models view shows them per model)."""
    tracking.logger().metrics(headline(evaluation))


def log_parent_plots(tracking: FlowTracking, evaluation: Mapping[str, Any]) -> None:
    """The evaluation's plots (`plots/`) and, when the evaluation made one, its HTML tear sheet
    (`tearsheet_artifact`) on the parent run, beside the numbers they illustrate."""
    logger = tracking.logger()
    for path in (evaluation.get("plots") or {}).values():
        logger.artifact(path, PLOTS_ARTIFACT_DIR)
    if evaluation.get("tearsheet"):
        logger.artifact(evaluation["tearsheet"], TEARSHEET_ARTIFACT_DIR)


def tearsheet_artifact(evaluation: Mapping[str, Any]) -> str | None:
    """Where `log_parent_plots` puts the tear sheet in the parent run's artifacts (None: there is none)."""
    tearsheet = evaluation.get("tearsheet")
    return f"{TEARSHEET_ARTIFACT_DIR}/{Path(tearsheet).name}" if tearsheet else None


def log_parent_promotion(tracking: FlowTracking, promotion: Mapping[str, Any]) -> None:
    """The decision as tags, and `promotion_headline` as metrics of the parent run and of the logged model
    (logged after the model, so linked to it explicitly)."""
    decision = promotion["decision"]
    logger = tracking.logger()
    logger.tags(
        {
            "promotion.decision": decision["alias"],
            "promotion.model": f"{promotion['model_name']}/{promotion['version']}",
            "promotion.reasons": "; ".join(decision["reasons"]),
        }
    )
    logger.metrics(promotion_headline(promotion), model_id=promotion.get("model_id"))


def log_data_identity(tracking: FlowTracking, data: Mapping[str, Any], db_path: str | Path) -> None:
    """The klines the run trained and tested on, as an MLflow dataset input of the parent run (name:
    the market; digest: the content hash; source: the DuckDB file; profile: rows and ranges)."""
    from dreamer.orchestration.datasets import KlinesDataset

    dataset = KlinesDataset.from_stage(data, db_path)
    tracking.logger().dataset(dataset, context="training")
    tracking.logger().tags(
        {
            "data.first_open_time": data.get("first_open_time"),
            "data.last_open_time": data.get("last_open_time"),
            "data.rows": data.get("rows"),
            "data.content_hash": data.get("content_hash"),
        }
        | {f"data.{split}": f"{b.get('start')} .. {b.get('end')}" for split, b in data.get("splits", {}).items()}
    )
