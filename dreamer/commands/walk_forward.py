"""`dreamer walk-forward`: refit and evaluate over K consecutive test windows and N seeds, then stitch the
windows into one out-of-sample curve.

The data is ingested, validated and turned into features once; each fold (train, purge, validation, purge,
test; `walk_forward` in the config, or the options below) gets a dataset snapshot normalised on its own
train rows, and every (seed, fold) trains a world model and a policy and is evaluated against the baselines
on its test window, as `dreamer run` does on its test split. Per seed, the test windows' backtests are
stitched into one account with its own annualised metrics and block-bootstrap intervals; pooled, the
account that splits its equity between the seeds' agents. Nothing is tracked in MLflow or registered.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import (
    add_command,
    add_config_arg,
    add_db_arg,
    add_market_args,
    add_span_args,
    db_path_of,
    number,
    percent,
)
from dreamer.commands.run import add_threads_arg

EXAMPLES = """examples:
  dreamer walk-forward --source sample --config tiny --folds 2 --test-days 1 --val-days 1 --train-days 2
  dreamer walk-forward --source csv --path ../shared/data/bybit_ETHUSDT_5m_2025-01_2026-07.csv.gz \\
      --funding-path ../shared/data/bybit_ETHUSDT_funding_8h_2025-01_2026-07.csv --symbol ETHUSDT \\
      --config demo --seeds 3 --folds 4 --test-days 14 --metrics-out eth-walk-forward.json

Everything goes under --out (default $DREAMER_RUNS_DIR or runs/, then
walk-forward/<category>-<symbol>-<interval>-<config>), the report to <out>/metrics.json and, with
--metrics-out, to that file too; a rerun with the same --out skips the finished (seed, fold) tasks and
resumes the others, and is refused if the data or the config changed meanwhile. With --workers N > 1
the tasks run on a local Dask cluster of N worker processes (--threads torch threads each); with
--dask-address on a running cluster, whose workers must see --out at the same path.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "walk-forward",
        summary="walk-forward evaluation: refit per fold and seed, stitch the test windows into one curve",
        description=__doc__ or "",
        examples=EXAMPLES,
    )
    parser.add_argument("--source", choices=("bybit", "csv", "sample"), default="bybit")
    parser.add_argument("--path", help="kline file for --source csv (CSV, CSV.gz or Parquet)")
    parser.add_argument("--funding-path", help="funding file for --source csv (funding_time_ms,funding_rate)")
    add_market_args(parser, symbol_required=False)
    parser.set_defaults(symbol="BTCUSDT")
    add_span_args(parser, start_note="Default: every stored bar.")
    parser.add_argument("--base-url", help="Bybit API base URL (default: $DREAMER_BYBIT_URL or mainnet)")
    add_db_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 … N−1, each refit on every fold (default 1)")
    add_walk_forward_args(parser)
    add_threads_arg(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="tasks run at once (default 1: in this process; more: a local Dask cluster of worker processes)",
    )
    parser.add_argument(
        "--dask-address",
        help="run the tasks on this Dask scheduler's workers (e.g. tcp://host:8786) instead of a local cluster",
    )
    parser.add_argument(
        "--configs-tried",
        type=int,
        default=1,
        help="configurations tried in all, this one included (default 1): the statistics deflate for them",
    )
    parser.add_argument("--out", help="directory of the walk-forward's outputs (rerun with the same one to resume)")
    parser.add_argument("--metrics-out", help="also write the report JSON here")
    parser.set_defaults(handler=run)


def add_walk_forward_args(parser: argparse.ArgumentParser) -> None:
    """The options that override the config's `walk_forward` section (and its device); see `config_overrides`."""
    parser.add_argument("--folds", type=int, help="overrides walk_forward.folds: test windows (K)")
    parser.add_argument("--test-days", type=float, help="overrides walk_forward.test_days")
    parser.add_argument("--val-days", type=float, help="overrides walk_forward.val_days")
    parser.add_argument("--train-days", type=float, help="overrides walk_forward.train_days")
    parser.add_argument("--mode", choices=("rolling", "expanding"), help="overrides walk_forward.mode")
    parser.add_argument(
        "--warm-start",
        action="store_true",
        default=None,
        help="sets walk_forward.warm_start_from_previous_fold: a fold starts from the previous fold's agent",
    )
    parser.add_argument("--device", help="overrides dreamer.device: auto, cpu, cuda, cuda:N")


def run(args: argparse.Namespace) -> int:
    from dreamer.errors import ConfigError
    from dreamer.evaluation.report import write_json
    from dreamer.paths import default_runs_dir
    from dreamer.pipeline import DataSpec
    from dreamer.research.walk_forward import run_walk_forward, task_runner

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    spec = DataSpec(
        source=args.source,
        symbol=args.symbol,
        interval=args.interval,
        category=args.category,
        path=args.path,
        funding_path=args.funding_path,
        start=args.start,
        end=args.end,
        base_url=args.base_url,
    )
    runner = task_runner(args.workers, args.dask_address, args.threads)
    name = f"{spec.category}-{spec.symbol}-{spec.interval}-{Path(args.config).stem}"
    out = Path(args.out or default_runs_dir() / "walk-forward" / name)
    report = run_walk_forward(
        spec,
        db_path_of(args),
        args.config,
        config_overrides(args),
        range(args.seeds),
        out,
        n_configs=args.configs_tried,
        threads=args.threads,
        runner=runner,
        on_result=_print_fold,
    )
    write_json(out / "metrics.json", report)
    if args.metrics_out:
        write_json(Path(args.metrics_out), report)
    for line in summary_lines(report):
        print(line)
    print(f"walk-forward directory: {out}")
    if args.metrics_out:
        print(f"metrics: {args.metrics_out}")
    return 0


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The nested config overrides of the options given (None: not given, the config decides)."""
    walk_forward = {
        "folds": args.folds,
        "test_days": args.test_days,
        "val_days": args.val_days,
        "train_days": args.train_days,
        "mode": args.mode,
        "warm_start_from_previous_fold": args.warm_start,
    }
    given = {key: value for key, value in walk_forward.items() if value is not None}
    overrides: dict[str, Any] = {"walk_forward": given}
    if args.device is not None:
        overrides["dreamer"] = {"device": args.device}
    return overrides


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The stitched account of the agent against the baselines, then one line per (seed, fold)."""
    stitched = report["stitched"]
    test = stitched["test"]
    seeds = stitched["seeds"]
    lines = [
        f"{report['data']['symbol']} {report['data']['interval']}: walk-forward over {len(report['folds'])} "
        f"(seed, fold) tasks; stitched test {test['start']} .. {test['end']} ({test['bars']:,} bars)"
        + ("" if len(seeds) == 1 else f", pooled over seeds {seeds}"),
        f"{'':14}{'total':>9}{'sharpe':>8}{'sharpe CI':>18}{'max dd':>8}{'trades':>8}",
    ]
    for name, m in {"agent": stitched["agent"], **stitched["baselines"]}.items():
        low, high = m["sharpe_ci"]
        lines.append(
            f"{name:14}{percent(m['total_return']):>9}{number(m['sharpe']):>8}{f'[{number(low)}, {number(high)}]':>18}"
            f"{percent(m['max_drawdown']):>8}{number(m['num_trades'], 0):>8}"
        )
    for name, c in stitched["comparison"].items():
        verdict = "significantly better" if c["significant"] else ("better" if c["beats"] else "not better")
        lines.append(f"  vs {name}: Sharpe diff {c['sharpe_diff']:+.2f} ({verdict})")
    lines.append("per fold (agent Sharpe; buy_and_hold Sharpe):")
    for fold in report["folds"]:
        buy_and_hold = fold["baselines"].get("buy_and_hold", {}).get("sharpe")
        lines.append(
            f"  seed {fold['seed']} fold {fold['fold']}: test {fold['test']['start']} .. {fold['test']['end']}: "
            f"{number(fold['agent']['sharpe'])}; {number(buy_and_hold)}"
        )
    return lines


def _print_fold(result: dict[str, Any]) -> None:
    print(
        f"seed {result['seed']} fold {result['fold']}: test {result['test']['start']} .. {result['test']['end']}, "
        f"agent Sharpe {number(result['agent']['sharpe'])}",
        flush=True,
    )
