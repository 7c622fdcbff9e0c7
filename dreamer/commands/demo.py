"""`dreamer demo`: the whole pipeline on the bundled BTCUSDT sample, offline, on CPU, in a few minutes.

One run of the Prefect flow `dreamer` (as `dreamer run --source sample --config demo`): ingest the bundled
real Bybit klines, validate, build features, train the world model and the policy in imagination,
backtest on the held-out window against baselines, register the agent in MLflow and promote it if it
beats the champion. Then a short summary of what happened and where to look.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from dreamer.commands.common import add_db_arg
from dreamer.commands.run import add_threads_arg, run_flow, summary_lines
from dreamer.orchestration.tracking import UI_WORKFLOW

DEMO_CONFIG = "demo"
MLFLOW_UI_PORT = 5000


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the bundled BTCUSDT sample (offline, CPU, a few minutes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db_arg(parser)
    add_threads_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    summary = run_flow(
        source="sample", config=DEMO_CONFIG, db_path=args.db, device="cpu", threads=args.threads, lookback_days=None
    )
    print()
    for line in demo_lines(summary):
        print(line)
    return 0


def demo_lines(summary: dict[str, Any]) -> list[str]:
    """What a completed run did and where its outputs are, for a person reading a terminal."""
    data, validation, report = summary["data"], summary["validation"], summary["report"]
    splits = data["splits"]
    lines = [
        "== dreamer demo: done ==",
        f"data: {data['category']}/{data['symbol']} {data['interval']}m, {data['rows']:,} bars "
        f"{data['first_open_time']} .. {data['last_open_time']}"
        + (" (features reused from the cache)" if summary.get("features_cached") else ""),
        "  " + "; ".join(f"{name} {b['start']} .. {b['end']} ({b['rows']:,})" for name, b in splits.items()),
        f"validation: {validation['status']} ({validation['rows']:,} rows, "
        f"{validation['missing_bars']:,} missing bars; report in the run directory)",
        "",
        *summary_lines(report),
        "",
        *promotion_lines(summary["promotion"]),
        "",
        "stage times: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in summary["timings_s"].items()),
        f"run directory: {summary['run_dir']}",
        f"  report {summary['metrics_path']}; plots in evaluation/; validation report validation/report.html",
        *mlflow_lines(summary["mlflow"]),
    ]
    return lines


def promotion_lines(promotion: dict[str, Any]) -> list[str]:
    decision = promotion["decision"]
    lines = [f"registry: {promotion['model_name']} version {promotion['version']} -> {decision['alias']}"]
    lines += [f"  {reason}" for reason in decision["reasons"]]
    latest = promotion.get("latest")
    if latest:
        lines.append(
            f"  its target position for the latest bar ({latest['bar_open_time']}): {latest['target_position']:+.2f}"
        )
    return lines


def mlflow_lines(mlflow: dict[str, Any]) -> list[str]:
    uri = mlflow["tracking_uri"]
    ui = f"http://127.0.0.1:{MLFLOW_UI_PORT}"
    url = mlflow.get("url") or f"{ui}/#/experiments/{mlflow['experiment_id']}/runs/{mlflow['run_id']}?{UI_WORKFLOW}"
    return [
        f"MLflow: run {mlflow['run_id']} in {uri}",
        f"  open the UI: .venv/bin/mlflow ui --backend-store-uri {shlex.quote(uri)} --port {MLFLOW_UI_PORT}",
        f"  then {url}   (or `make up`, which also starts Prefect)",
    ]
