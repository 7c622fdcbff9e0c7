"""`dreamer ingest`: klines and funding from Bybit (default), CSV/Parquet files, or the bundled sample into DuckDB."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from dreamer.commands.common import add_command, add_db_arg, add_market_args, add_span_args, db_path_of

EXAMPLES = """examples:
  dreamer ingest --symbol BTCUSDT --interval 5 --category linear --start 2025-01-01
  dreamer ingest --symbol BTCUSDT --interval 5            # resume after the newest stored candle
  dreamer ingest --symbol BTC-26DEC25 --start 2025-06-01 --no-funding   # a dated future: no funding
  dreamer ingest --source csv --path klines.csv.gz --funding-path funding.csv --symbol BTCUSDT --interval 5
  dreamer ingest --source csv --funding-path funding.csv --symbol BTCUSDT   # funding only
  dreamer ingest --source sample                          # the bundled BTCUSDT 5m sample and its funding
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "ingest",
        summary="load klines and funding into DuckDB (Bybit, CSV/Parquet, or the bundled sample)",
        description="Load closed klines into the DuckDB table `klines` and, on the perpetual categories "
        "(linear, inverse), the funding settlements covering them into `funding_rates`; every run is logged "
        "in `ingestion_runs`. Bybit runs commit page by page and resume where a previous run stopped.",
        examples=EXAMPLES,
    )
    parser.add_argument("--source", choices=("bybit", "csv", "sample"), default="bybit")
    add_market_args(parser, symbol_required=False)
    add_span_args(
        parser,
        start_note="Omit to resume after the newest stored candle",
        end_note="Omit for up to the last closed candle",
    )
    parser.add_argument("--path", help="--source csv: the kline file (.csv, .csv.gz or .parquet)")
    parser.add_argument(
        "--funding-path", help="--source csv: the funding file (funding_time_ms,funding_rate; linear/inverse only)"
    )
    parser.add_argument(
        "--no-funding",
        action="store_true",
        help="--source bybit: fetch klines only (by default linear/inverse runs also fetch the funding "
        "history covering the klines; dated futures have none)",
    )
    parser.add_argument("--base-url", help="Bybit REST base URL (default: $DREAMER_BYBIT_URL or https://api.bybit.com)")
    parser.add_argument("--testnet", action="store_true", help="use https://api-testnet.bybit.com")
    parser.add_argument(
        "--max-rps", type=_rate, default=10.0, help="client-side request rate limit (default 10/s; 0 disables)"
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of one line")
    add_db_arg(parser)
    parser.set_defaults(handler=run)


def _rate(text: str) -> float:
    """--max-rps: requests per second. A negative rate would silently disable pacing, inf or nan mean nothing."""
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0: no pacing), got {text!r}")
    return rate


def run(args: argparse.Namespace) -> int:
    from dreamer.data.errors import InvalidMarketError
    from dreamer.data.ingest import IngestReport, ingest_bybit, ingest_csv, ingest_funding_csv, ingest_sample
    from dreamer.errors import DreamerError

    db_path = db_path_of(args)
    report: IngestReport
    try:
        if args.source == "sample":
            report = ingest_sample(db_path)
        else:
            if not args.symbol:
                raise InvalidMarketError(f"--symbol is required with --source {args.source} (e.g. --symbol BTCUSDT)")
            if args.source == "csv":
                if args.path:
                    report = ingest_csv(
                        db_path, args.path, args.category, args.symbol, args.interval, funding_path=args.funding_path
                    )
                elif args.funding_path:
                    report = ingest_funding_csv(db_path, args.funding_path, args.category, args.symbol)
                else:
                    raise InvalidMarketError("--source csv needs --path FILE (klines), --funding-path FILE or both")
            else:
                report = ingest_bybit(
                    db_path,
                    args.category,
                    args.symbol,
                    args.interval,
                    start=args.start,
                    end=args.end,
                    base_url=args.base_url,
                    testnet=args.testnet,
                    max_requests_per_second=args.max_rps or None,
                    funding=not args.no_funding,
                )
    except DreamerError as exc:
        for note in getattr(exc, "__notes__", ()):
            print(note, file=sys.stderr)
        raise
    print(json.dumps(report.to_dict()) if args.json else "\n".join(report.summary_lines()))
    return 0
