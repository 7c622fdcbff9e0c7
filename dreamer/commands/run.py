"""`dreamer run`: the whole pipeline locally, ingest → validate → features → world model → policy → evaluation."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_config_arg, add_db_arg, add_market_args
from dreamer.paths import default_db_path

EXAMPLES = """examples:
  dreamer run --source sample --config demo --seed 0 --metrics-out demo.json
  dreamer run --source csv --path ../shared/data/bybit_ETHUSDT_5m_2025-01_2026-07.csv.gz --symbol ETHUSDT \\
      --config demo --metrics-out eth.json
  dreamer run --source bybit --symbol BTCUSDT --interval 5 --lookback-days 365 --config default

Everything of the run goes under --run-dir (default runs/<UTC time>-<symbol>-<interval>); the report
(agent and baseline backtests, world-model forecasts, config, data ranges) is written to
<run-dir>/metrics.json and, with --metrics-out, to that file too (without timings, so two runs with the
same data, config and seed on the CPU give identical files).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the whole pipeline locally and write the metrics JSON",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", choices=("bybit", "csv", "sample"), default="bybit")
    parser.add_argument("--path", help="kline file for --source csv (CSV, CSV.gz or Parquet)")
    add_market_args(parser, symbol_required=False)
    parser.set_defaults(symbol="BTCUSDT")
    parser.add_argument("--start", help="first candle start of the data used (UTC date/datetime)")
    parser.add_argument("--end", help="last candle start of the data used (inclusive)")
    parser.add_argument("--lookback-days", type=int, help="without --start: days of data before the end")
    parser.add_argument("--base-url", help="Bybit API base URL (default: $DREAMER_BYBIT_URL or mainnet)")
    add_db_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--seed", type=int, help="overrides dreamer.seed of the config")
    parser.add_argument("--device", help="overrides dreamer.device: auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)"
    )
    parser.add_argument("--run-dir", help="directory of this run's outputs (rerun with the same one to resume)")
    parser.add_argument("--metrics-out", help="also write the report JSON here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.config import load_config
    from dreamer.errors import ConfigError
    from dreamer.evaluation.report import write_json
    from dreamer.pipeline import DataSpec, run_pipeline

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.device is not None:
        overrides["device"] = args.device
    cfg = load_config(args.config, {"dreamer": overrides} if overrides else None)
    spec = DataSpec(
        source=args.source,
        symbol=args.symbol,
        interval=args.interval,
        category=args.category,
        path=args.path,
        start=args.start,
        end=args.end,
        lookback_days=args.lookback_days,
        base_url=args.base_url,
    )
    run_dir = Path(args.run_dir or default_run_dir(spec.symbol, spec.interval))
    report = run_pipeline(spec, Path(args.db or default_db_path()), cfg, run_dir)
    if args.metrics_out:
        write_json(Path(args.metrics_out), report)
    for line in summary_lines(report):
        print(line)
    print(f"run directory: {run_dir}")
    if args.metrics_out:
        print(f"metrics: {args.metrics_out}")
    return 0


def default_run_dir(symbol: str, interval: str) -> Path:
    return Path("runs") / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{symbol.lower()}-{interval}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table of the agent against the baselines on the test window."""
    data, window = report["data"], report["evaluation"]
    lines = [
        f"{data['symbol']} {data['interval']}: {data['rows']:,} bars; test {window['start']} .. {window['end']} "
        f"({window['bars']:,} bars, costs {window['cost_rate'] * 1e4:.1f} bps per unit traded)",
        f"{'':14}{'total':>9}{'sharpe':>8}{'sortino':>9}{'max dd':>8}{'turnover':>10}{'trades':>8}",
    ]
    rows = {"agent": report["agent"], **report["baselines"]}
    for name, m in rows.items():
        lines.append(
            f"{name:14}{_pct(m['total_return']):>9}{_num(m['sharpe']):>8}{_num(m['sortino']):>9}"
            f"{_pct(m['max_drawdown']):>8}{_num(m['turnover'], 4):>10}{_num(m['num_trades'], 0):>8}"
        )
    low, high = report["agent"]["sharpe_ci"]
    lines.append(f"agent Sharpe {report['agent']['sharpe_ci_level']:.0%} CI: [{low:.2f}, {high:.2f}]")
    for name, c in report["comparison"].items():
        verdict = "significantly better" if c["significant"] else ("better" if c["beats"] else "not better")
        lines.append(f"  vs {name}: Sharpe diff {c['sharpe_diff']:+.2f} ({verdict})")
    wm = report.get("world_model") or {}
    if "direction_accuracy" in wm:
        lines.append(
            f"world model (test): direction accuracy {wm['direction_accuracy']:.3f}, "
            f"MSE {wm.get('next_return_mse', float('nan')):.3g} vs zero {wm.get('zero_forecast_mse', float('nan')):.3g}"
        )
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
