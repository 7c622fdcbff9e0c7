"""`dreamer sweep`: walk-forward over several markets, seeds and configurations on a Dask cluster, with one
statistics table over all of them.

This is the Prefect flow `dreamer-sweep` (flows/walk_forward.py) run here, without a deployment: each
(symbol, interval) is ingested, validated and turned into features once, in this process (the DuckDB file
is single-writer); every (market, configuration, seed, fold) is then its own Prefect task on the flow's
Dask task runner, a local cluster of --workers worker processes or the running cluster at --dask-address.
Each task writes its result under --out, so a rerun with the same --out resumes where a killed sweep
stopped. MLflow: one parent run per sweep with the statistics table and the stitched curves, one child run
per task ($MLFLOW_TRACKING_URI, default ./mlflow; on several machines an `mlflow server` reached over
HTTP). Prefect: a temporary server of its own unless --prefect-api-url or $PREFECT_API_URL names one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_command, add_config_arg, add_db_arg, add_span_args, db_path_of
from dreamer.commands.run import add_prefect_api_arg, add_threads_arg
from dreamer.commands.walk_forward import add_walk_forward_args, config_overrides

EXAMPLES = """examples:
  d=../shared/data
  dreamer sweep --config sweep --seeds 3 --workers 2 --out runs/sweeps/real --metrics-out sweep.json \\
      --markets $d/bybit_BTCUSDT_5m_2025-01_2026-07.csv.gz:$d/bybit_BTCUSDT_funding_8h_2025-01_2026-07.csv \\
                $d/bybit_SOLUSDT_5m_2025-09_2026-07.csv.gz:$d/bybit_SOLUSDT_funding_8h_2025-09_2026-07.csv
  dreamer sweep --markets sample --config tiny --seeds 2 --configs variants.yaml

--markets takes `sample` (the bundled BTCUSDT slice) or [SYMBOL=]KLINES_CSV[:FUNDING_CSV] (the symbol read
from a bybit_<SYMBOL>_… file name). --configs names a YAML file of named override sets on top of --config,
e.g. `{base: {}, long_horizon: {dreamer: {imagination_horizon: 30}}}`: every one is walked forward on every
market and the deflated Sharpe ratio accounts for their number. On a remote --dask-address the workers
must see --out and --db at the same paths and MLflow must be a server (MLFLOW_TRACKING_URI=http://…).
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "sweep",
        summary="walk-forward over markets × seeds × configurations on Dask, with one statistics table",
        description=__doc__ or "",
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--markets", nargs="+", required=True, help="`sample` or [SYMBOL=]KLINES_CSV[:FUNDING_CSV], one or more"
    )
    parser.add_argument("--intervals", nargs="+", default=["5"], help="Bybit intervals of every market (default 5)")
    parser.add_argument("--category", default="linear", help="spot | linear | inverse")
    add_span_args(parser, start_note="Default: every bar of the file.")
    add_db_arg(parser)
    add_config_arg(parser)
    parser.add_argument("--configs", help="YAML file of named override sets on top of --config (default: one, `base`)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 … N−1, each refit on every fold (default 1)")
    add_walk_forward_args(parser)
    add_threads_arg(parser)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local Dask cluster (default 2)")
    parser.add_argument("--dask-address", help="run the tasks on this Dask scheduler's workers (e.g. tcp://host:8786)")
    parser.add_argument("--out", help="directory of the sweep (rerun with the same one to resume)")
    parser.add_argument("--metrics-out", help="also write the summary JSON here")
    add_prefect_api_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.errors import ConfigError
    from dreamer.evaluation.report import write_json
    from dreamer.orchestration.prefect_api import prefect_api, sigterm_exits
    from flows.walk_forward import run_sweep

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    markets = [market_fields(spec, args) for spec in args.markets]
    with sigterm_exits(), prefect_api(args.prefect_api_url):
        summary = run_sweep(
            workers=args.workers,
            address=args.dask_address,
            markets=markets,
            intervals=list(args.intervals),
            seeds=list(range(args.seeds)),
            configs=named_configs(args.configs),
            config=args.config,
            overrides=config_overrides(args),
            out_dir=args.out,
            db_path=str(Path(db_path_of(args)).resolve()),
            threads=args.threads,
        )
    out = Path(summary["out_dir"])
    if args.metrics_out:
        write_json(Path(args.metrics_out), summary)
    print((out / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"sweep directory: {out}")
    print(f"MLflow parent run: {summary['mlflow']['run_id']} ({summary['mlflow']['tracking_uri']})")
    if args.metrics_out:
        print(f"metrics: {args.metrics_out}")
    return 0


def market_fields(spec: str, args: argparse.Namespace) -> str | dict[str, Any]:
    """`sample`, or the data fields of a `[SYMBOL=]KLINES_CSV[:FUNDING_CSV]` market with --start/--end."""
    from dreamer.sample_efficiency import real_source

    span = {key: value for key, value in (("start", args.start), ("end", args.end)) if value is not None}
    if spec == "sample":
        return {"source": "sample", **span} if span else "sample"
    source = real_source(spec, option="--markets")
    fields: dict[str, Any] = {"symbol": source.name, "path": source.klines_path, "category": args.category, **span}
    if source.funding_path:
        fields["funding_path"] = source.funding_path
    return fields


def named_configs(path: str | None) -> dict[str, dict[str, Any]] | None:
    """The named override sets of a YAML file (None without one: the flow's single `base`)."""
    if path is None:
        return None
    import yaml

    from dreamer.errors import ConfigError

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"--configs {path}: {error}") from error
    if not isinstance(loaded, dict) or not all(isinstance(value, dict) for value in loaded.values()):
        raise ConfigError(f"--configs {path}: expected a mapping of names to override mappings")
    return {str(name): dict(value) for name, value in loaded.items()}
