"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from dreamer.paths import default_db_path


def add_market_args(parser: argparse.ArgumentParser, symbol_required: bool = True) -> None:
    parser.add_argument("--symbol", required=symbol_required, help="e.g. BTCUSDT")
    parser.add_argument("--interval", default="5", help="Bybit interval: 1,3,5,15,30,60,120,240,360,720,D,W,M")
    parser.add_argument("--category", default="linear", help="spot | linear | inverse")


def add_db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help=f"DuckDB file (default: $DREAMER_DB or {default_db_path()})")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="bundled config name (tiny, demo, default) or YAML path")
