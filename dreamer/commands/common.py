"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dreamer.paths import default_db_path


def add_command(
    subparsers: Any, name: str, *, summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """The parser of subcommand `name`: `summary` in `dreamer --help`, `examples` shown verbatim after the options."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_market_args(parser: argparse.ArgumentParser, symbol_required: bool = True) -> None:
    parser.add_argument("--symbol", required=symbol_required, help="e.g. BTCUSDT")
    parser.add_argument("--interval", default="5", help="Bybit interval: 1,3,5,15,30,60,120,240,360,720,D,W,M")
    parser.add_argument("--category", default="linear", help="spot | linear | inverse")


def add_span_args(parser: argparse.ArgumentParser, start_note: str = "", end_note: str = "") -> None:
    """--start/--end: inclusive bounds on the candle start; a note says what leaving one out means."""
    start_help = "first candle start (UTC date/datetime or epoch ms; inclusive)"
    end_help = "last candle start (inclusive)"
    parser.add_argument("--start", help=f"{start_help}. {start_note}" if start_note else start_help)
    parser.add_argument("--end", help=f"{end_help}. {end_note}" if end_note else end_help)


def add_db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help=f"DuckDB file (default: $DREAMER_DB or {default_db_path()})")


def add_stored_series_args(parser: argparse.ArgumentParser) -> None:
    """Which stored series to read: market, candle-start span and database (see `market_of`, `db_path_of`)."""
    add_market_args(parser)
    add_span_args(parser)
    add_db_arg(parser)


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    from dreamer.config import bundled_config_names

    names = ", ".join(bundled_config_names())
    parser.add_argument("--config", default="demo", help=f"bundled config name ({names}) or YAML path")


def market_of(args: argparse.Namespace) -> tuple[str, str, str]:
    """(category, symbol, interval code) of --category/--symbol/--interval, validated."""
    from dreamer.data.markets import parse_category, parse_interval, parse_symbol

    return parse_category(args.category), parse_symbol(args.symbol), parse_interval(args.interval).code


def db_path_of(args: argparse.Namespace) -> str | Path:
    """--db, else $DREAMER_DB, else the default database file."""
    return args.db or default_db_path()


def log_case_run(
    tracking: Any, name: str, tags: Mapping[str, Any], params: Mapping[str, Any], metrics: Mapping[str, Any]
) -> None:
    """One finished case of an experiment command (`dreamer benchmark`, `dreamer sample-efficiency`) as a
    child of its MLflow parent run `tracking` (a `FlowTracking`): `params`, and the numeric leaves of the
    nested `metrics` as `a.b` metrics."""
    from dreamer.orchestration.tracking import RunLogger, client, flatten_numeric

    mlflow_client = client(tracking.tracking_uri)
    child = mlflow_client.create_run(
        tracking.experiment_id, run_name=name, tags={**tags, "mlflow.parentRunId": tracking.run_id}
    )
    logger = RunLogger(mlflow_client, child.info.run_id)
    logger.params(params)
    logger.metrics(flatten_numeric(metrics))
    mlflow_client.set_terminated(child.info.run_id, "FINISHED")


def number(value: Any, digits: int = 2) -> str:
    """`value` with `digits` decimals, or "n/a" for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals, or "n/a" for None."""
    return "n/a" if value is None else f"{100 * value:.2f}%"
