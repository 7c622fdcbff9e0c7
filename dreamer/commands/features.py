"""`dreamer features`: causal features of one stored series, exported to Parquet (optionally as a dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_command, add_config_arg, add_stored_series_args, db_path_of, market_of

EXAMPLES = """examples:
  dreamer features --symbol BTCUSDT --interval 5 --out features.parquet
  dreamer features --symbol BTCUSDT --interval 5 --out features.parquet --dataset-dir runs/ds --config demo
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "features",
        summary="build the causal feature table (sql/features.sql) and export it to Parquet",
        description="Compute per-bar symlog features and the next-bar log return of one stored series with "
        "DuckDB window functions. With --dataset-dir, also split it chronologically (config `split`), fit "
        "the normaliser on train and save the MarketDataset.",
        examples=EXAMPLES,
    )
    add_stored_series_args(parser)
    parser.add_argument("--out", required=True, help="Parquet file to write (replaced atomically)")
    parser.add_argument("--dataset-dir", help="also save the split, normalised MarketDataset here")
    add_config_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.config import load_config
    from dreamer.data import store
    from dreamer.features.build import FEATURE_COLUMNS, build_features, write_parquet

    category, symbol, interval = market_of(args)
    con = store.connect(db_path_of(args), read_only=True)
    try:
        features = build_features(con, category, symbol, interval, start=args.start, end=args.end)
    finally:
        con.close()
    out = write_parquet(features, Path(args.out))
    print(
        f"features: {len(features):,} bars x {len(FEATURE_COLUMNS)} features of {category}/{symbol}/{interval} "
        f"({int(features['warmup'].sum()):,} warm-up, {int(features['segment_id'].max()) + 1} gap-free segment(s), "
        f"{int(features['funding_settled_count'].iloc[-1]):,} funding settlements) -> {out}"
    )
    if args.dataset_dir:
        from dreamer.features.split import make_dataset

        dataset = make_dataset(
            features, load_config(args.config).split, {"category": category, "symbol": symbol, "interval": interval}
        )
        dataset.save(args.dataset_dir)
        sizes = ", ".join(f"{name} {stop - start:,}" for name, (start, stop) in dataset.splits.items())
        print(f"dataset: {sizes} rows (purge {dataset.meta['purge_bars']} bars) -> {args.dataset_dir}")
    return 0
