"""`dreamer run`: the pipeline locally, ingest → validate → features → world model → policy → evaluation → promotion."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_config_arg, add_db_arg, add_market_args, number, percent

EXAMPLES = """examples:
  dreamer run --source sample --config demo --seed 0 --metrics-out demo.json
  dreamer run --source csv --path ../shared/data/bybit_ETHUSDT_5m_2025-01_2026-07.csv.gz \\
      --funding-path ../shared/data/bybit_ETHUSDT_funding_8h_2025-01_2026-07.csv --symbol ETHUSDT \\
      --config demo --metrics-out eth.json
  dreamer run --source bybit --symbol BTCUSDT --interval 5 --lookback-days 365 --config default

This is one run of the Prefect flow `dreamer` (what the `dreamer/daily` deployment runs), here, without a
deployment: every stage is tracked in MLflow ($MLFLOW_TRACKING_URI, default ./mlflow) and the agent is
registered and promoted. The run reports to a temporary local Prefect server of its own, stopped when it
ends (Ctrl-C and SIGTERM included), unless --prefect-api-url or $PREFECT_API_URL name a server (such as
`make up`'s); the active Prefect profile's server is used only with DREAMER_USE_PREFECT_PROFILE=1.
`python -m flows.pipeline` takes the same arguments.

Everything of the run goes under --run-dir (default $DREAMER_RUNS_DIR or runs/, then
<UTC time>-<symbol>-<interval>-<flow run name>); the report (agent and baseline backtests, world-model
forecasts, config, data ranges) is written to <run-dir>/metrics.json and, with --metrics-out, to that
file too (without timings, so two runs with the same data, config, seed and threads on the CPU give
identical files).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the pipeline (the Prefect flow) locally and write the metrics JSON",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", choices=("bybit", "csv", "sample"), default="bybit")
    parser.add_argument("--path", help="kline file for --source csv (CSV, CSV.gz or Parquet)")
    parser.add_argument(
        "--funding-path",
        help="funding file for --source csv (funding_time_ms,funding_rate): linear/inverse series need one to "
        "pass validation",
    )
    add_market_args(parser, symbol_required=False)
    parser.set_defaults(symbol="BTCUSDT")
    parser.add_argument("--start", help="first candle start of the data used (UTC date/datetime)")
    parser.add_argument("--end", help="last candle start of the data used (inclusive)")
    parser.add_argument(
        "--lookback-days", type=int, help="without --start: days of data before the end (default: all stored)"
    )
    parser.add_argument("--base-url", help="Bybit API base URL (default: $DREAMER_BYBIT_URL or mainnet)")
    add_db_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--seed", type=int, help="overrides dreamer.seed of the config")
    parser.add_argument("--device", help="overrides dreamer.device: auto, cpu, cuda, cuda:N")
    add_threads_arg(parser)
    parser.add_argument("--run-dir", help="directory of this run's outputs (rerun with the same one to resume)")
    parser.add_argument("--metrics-out", help="also write the report JSON here")
    add_prefect_api_arg(parser)
    parser.set_defaults(handler=run)


def add_prefect_api_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefect-api-url",
        help="report to this Prefect server (e.g. http://127.0.0.1:4200/api, `make up`'s) instead of a temporary one",
    )


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of training and evaluation (default 1, fastest for these small models on a "
        "shared machine; 0: torch's default, one per core)",
    )


def run(args: argparse.Namespace) -> int:
    summary = run_flow(
        source=args.source,
        symbol=args.symbol,
        interval=args.interval,
        category=args.category,
        lookback_days=args.lookback_days,
        config=args.config,
        db_path=args.db,
        path=args.path,
        funding_path=args.funding_path,
        start=args.start,
        end=args.end,
        base_url=_parameter_safe(args.base_url),
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        run_dir=args.run_dir,
        prefect_api_url=args.prefect_api_url,
    )
    report = summary["report"]
    if args.metrics_out:
        from dreamer.evaluation.report import write_json

        write_json(Path(args.metrics_out), report)
    for line in summary_lines(report):
        print(line)
    print(f"run directory: {summary['run_dir']}")
    if args.metrics_out:
        print(f"metrics: {args.metrics_out}")
    return 0


def run_flow(prefect_api_url: str | None = None, **parameters: Any) -> dict[str, Any]:
    """Check the parameters, then run the Prefect flow `dreamer` with them in this process, reporting to
    `prefect_api(prefect_api_url)`, and return its summary; a failed run raises its error. Shared by
    `dreamer run`, `dreamer demo` and `python -m flows.pipeline`."""
    from dreamer.orchestration.prefect_api import prefect_api, sigterm_exits
    from flows.pipeline import check_parameters, dreamer_flow

    check_parameters(parameters)
    with sigterm_exits(), prefect_api(prefect_api_url):
        return dreamer_flow(**parameters)


def _parameter_safe(base_url: str | None) -> str | None:
    """`base_url` as a flow parameter, or None when it carries credentials: Prefect stores flow parameters
    in its database, so such a URL reaches the flow through `$DREAMER_BYBIT_URL` (read by the flow when the
    parameter is empty) and is recorded nowhere but in its redacted form."""
    import os

    from dreamer.data.bybit import redact_url
    from flows.pipeline import BYBIT_URL_ENV

    if base_url is None or redact_url(base_url) == base_url:
        return base_url
    os.environ[BYBIT_URL_ENV] = base_url
    return None


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A table of the agent against the baselines on the test window."""
    data, window = report["data"], report["evaluation"]
    lines = [
        f"{data['symbol']} {data['interval']}: {data['rows']:,} bars; test {window['start']} .. {window['end']} "
        f"({window['bars']:,} bars, costs {window['cost_rate'] * 1e4:.1f} bps per unit traded)",
        f"{'':14}{'total':>9}{'funding':>9}{'sharpe':>8}{'sortino':>9}{'max dd':>8}{'turnover':>10}{'trades':>8}",
    ]
    rows = {"agent": report["agent"], **report["baselines"]}
    for name, m in rows.items():
        lines.append(
            f"{name:14}{percent(m['total_return']):>9}{percent(m.get('funding_paid')):>9}{number(m['sharpe']):>8}"
            f"{number(m['sortino']):>9}{percent(m['max_drawdown']):>8}{number(m['turnover'], 4):>10}"
            f"{number(m['num_trades'], 0):>8}"
        )
    low, high = report["agent"]["sharpe_ci"]
    lines.append(f"agent Sharpe {report['agent']['sharpe_ci_level']:.0%} CI: [{low:.2f}, {high:.2f}]")
    lines.append(
        "total: net of costs and funding; funding: paid, as a share of the starting equity (negative: received)"
    )
    if report["agent"].get("degenerate"):
        lines.append(
            f"DEGENERATE POLICY: the agent holds {_position(report['agent']['dominant_position'])} on "
            f"{report['agent']['dominant_position_share']:.1%} of the test bars (a constant bet, not a trading rule)"
        )
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


def _position(value: float) -> str:
    return f"{value:+g}" if value else "flat"
