"""`dreamer validate`: the Great Expectations gate over one stored kline series."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_command, add_config_arg, add_stored_series_args, db_path_of, market_of

EXAMPLES = """examples:
  dreamer validate --symbol BTCUSDT --interval 5
  dreamer validate --symbol BTCUSDT --interval 5 --start 2026-01-01 --end 2026-06-30 --report-dir out/val

exit status: 0 when every failure-level expectation holds (warnings are printed), 1 otherwise.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "validate",
        summary="check stored klines with the Great Expectations gate (exit 0 pass, 1 fail)",
        description="Validate one stored kline series: nulls, OHLC consistency, volumes, unique aligned "
        "increasing timestamps, gap share, absurd jumps, row count. Writes report.html and summary.json.",
        examples=EXAMPLES,
    )
    add_stored_series_args(parser)
    add_config_arg(parser)
    parser.add_argument(
        "--report-dir",
        help="where report.html and summary.json go (default: runs/validation/<category>-<symbol>-<interval>)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.config import load_config
    from dreamer.data import store
    from dreamer.features.validate import validate_series

    category, symbol, interval = market_of(args)
    cfg = load_config(args.config).validation
    report_dir = Path(args.report_dir or Path("runs") / "validation" / f"{category}-{symbol}-{interval}")
    con = store.connect(db_path_of(args), read_only=True)
    try:
        report = validate_series(
            con,
            category,
            symbol,
            interval,
            cfg,
            start=args.start,
            end=args.end,
            out_dir=report_dir,
            raise_on_failure=False,
        )
    finally:
        con.close()
    print(report.summary_text())
    for outcome in report.failures:
        for example in outcome.examples:
            print(f"    {outcome.name} e.g. " + ", ".join(f"{k}={v}" for k, v in example.items()))
    print(f"report: {report_dir / 'report.html'}")
    return 0 if report.passed else 1
