"""`dreamer demo`: the pipeline on the bundled offline sample (for now: ingestion and a table summary)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_db_arg
from dreamer.paths import default_db_path


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the pipeline on the bundled BTCUSDT sample (offline)", description=__doc__
    )
    add_db_arg(parser)
    parser.set_defaults(handler=run)


def demo(db_path: Path) -> list[str]:
    """Ingest the bundled sample into `db_path` and describe what the database holds, line by line."""
    from dreamer.data import store
    from dreamer.data.ingest import ingest_sample

    report = ingest_sample(db_path)
    lines = [f"ingest: {report.summary_line()}", f"klines in {db_path}:"]
    con = store.connect(db_path, read_only=True)
    try:
        lines += [f"  {series.line()}" for series in store.summarize(con)]
    finally:
        con.close()
    return lines


def run(args: argparse.Namespace) -> int:
    for line in demo(Path(args.db or default_db_path())):
        print(line)
    return 0
