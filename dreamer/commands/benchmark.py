"""`dreamer benchmark`: the whole pipeline on known-answer synthetic markets, against their oracles.

For each market and seed (parameters drawn from the acceptance ranges), generate a synthetic 5-minute
series, run ingest → validation → features → world model → policy → backtest on it, and score the agent's
held-out Sharpe and the world model's forecasts against the oracle that knows the true parameters
(`dreamer.benchmark` says how, and what each market's criterion is). Prints one table row per market and
logs every case to the MLflow experiment `dreamer-benchmark` (a parent run with one child run per case);
nothing is registered. The markets are synthetic and labelled so (symbols `SYN…`): never market data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_command, add_config_arg, log_case_run, number

EXPERIMENT = "dreamer-benchmark"
EXAMPLES = """examples:
  dreamer benchmark --config demo --seeds 3 --workers 2 --metrics-out benchmark.json
  dreamer benchmark --markets regime ou --seeds 1 --out runs/benchmark-quick

Every case writes under --out (default runs/benchmark/<case>/); a rerun with the same --out skips the
finished cases, so an interrupted benchmark resumes.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "benchmark",
        summary="run the pipeline on known-answer synthetic markets and compare with their oracles",
        description=__doc__ or "",
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--markets",
        nargs="+",
        help="markets to run (default: all of regime, ou, garch, random_walk, random_walk_leaked)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 per market (default 3)")
    add_config_arg(parser)
    parser.add_argument("--bars", type=int, default=60_000, help="5-minute bars per market (default 60,000)")
    parser.add_argument("--workers", type=int, default=1, help="cases run at once, one process each (default 1)")
    parser.add_argument("--target", type=float, default=0.5, help="the fraction of the oracle to reach (0.5)")
    parser.add_argument("--out", default="runs/benchmark", help="directory of the cases' runs")
    parser.add_argument("--metrics-out", help="write the cases and the summary as JSON here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.benchmark import cases, markdown_table, run_benchmark, summarise
    from dreamer.config import load_config
    from dreamer.errors import ConfigError

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.bars < 20_000:
        raise ConfigError(f"--bars must be >= 20000 (warm-up, three splits and purge gaps), got {args.bars}")
    from dreamer.synthetic import MARKETS

    cfg = load_config(args.config)
    args.markets = args.markets or list(MARKETS)
    todo = cases(args.markets, range(args.seeds))
    tracking = _start_tracking(args, cfg.flat_params(), len(todo))

    def report(result: dict[str, Any]) -> None:
        agent, oracle, forecasts = result["agent"], result["oracle"], result["world_model"]
        print(
            f"{result['case']}: agent Sharpe {number(agent['sharpe'])} (SE {number(agent['sharpe_se'])}), "
            f"oracle {number(oracle['sharpe'])}; world model direction {number(forecasts['direction_accuracy'], 3)}, "
            f"vol corr {number(forecasts['vol_forecast_corr'])}; {result['seconds']['total'] / 60:.1f} min",
            flush=True,
        )
        _log_case(tracking, result)

    failed = True
    try:
        results = run_benchmark(todo, cfg, args.out, num_bars=args.bars, workers=args.workers, on_result=report)
        summary = summarise(results, args.target)
        table = markdown_table(summary)
        print("\n" + table)
        payload = {"config": cfg.name, "bars": args.bars, "target": args.target, "summary": summary, "cases": results}
        if args.metrics_out:
            Path(args.metrics_out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        _log_summary(tracking, summary, table, payload)
        failed = False
    finally:
        from dreamer.orchestration.tracking import finish_run

        finish_run(tracking, failed)
    return 0


def _start_tracking(args: argparse.Namespace, params: dict[str, Any], num_cases: int) -> Any:
    from dreamer.orchestration.tracking import start_flow_run

    tags = {"dreamer.kind": "benchmark", "dreamer.synthetic": "true", "dreamer.config": args.config}
    run_params = {
        **params,
        "benchmark.markets": args.markets,
        "benchmark.seeds": args.seeds,
        "benchmark.bars": args.bars,
    }
    return start_flow_run(f"benchmark-{num_cases}-cases", tags, run_params, experiment=EXPERIMENT)


def _log_case(tracking: Any, result: dict[str, Any]) -> None:
    metrics = {
        key: result[key]
        for key in (
            "agent",
            "oracle",
            "world_model",
            "seconds",
            "fraction_of_oracle_sharpe",
            "fraction_of_oracle_vol_corr",
        )
    }
    log_case_run(
        tracking,
        result["case"],
        {"dreamer.synthetic": "true", "dreamer.market": result["market"]},
        {f"market.{key}": value for key, value in result["parameters"].items()} | {"seed": result["seed"]},
        metrics,
    )


def _log_summary(tracking: Any, summary: dict[str, Any], table: str, payload: dict[str, Any]) -> None:
    from dreamer.orchestration.tracking import flatten_numeric

    logger = tracking.logger()
    medians = {
        f"{market}.{key}": value["median"]
        for market, row in summary.items()
        for key, value in row.items()
        if isinstance(value, dict) and "median" in value
    }
    logger.metrics(flatten_numeric(medians))
    logger.metrics({f"{market}.passed": float(row["passed"]) for market, row in summary.items()})
    logger.text_artifact(table, "benchmark.md")
    logger.dict_artifact(payload, "benchmark.json")
