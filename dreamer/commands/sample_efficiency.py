"""`dreamer sample-efficiency`: is the world model worth it? Dreamer, PPO and a supervised forecaster trained
on the last N bars of each market's train split, scored on the same held-out test split.

For each market (the known-answer synthetic markets `--markets`, default regime and ou, and the real
symbols of `--real`), each N of `--train-bars` and each seed, trains Dreamer (world model + policy, the
config's budget), PPO (`--ppo-steps` real environment steps) and the supervised ridge baseline on the last N
train bars only, with the normaliser fitted on those bars; val and test are the same for every N
(`dreamer.sample_efficiency` says exactly what is held equal). Records each method's test Sharpe with its
block-bootstrap CI, total return and training time; writes the cases and the summary as JSON, a PNG of
Sharpe against N per market, and a Markdown table; logs every case to the MLflow experiment
`dreamer-sample-efficiency` (a parent run with one child run per case). Synthetic markets are labelled so
(symbols `SYN…`): never market data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dreamer.commands.common import add_command, add_config_arg, log_case_run, number

EXPERIMENT = "dreamer-sample-efficiency"
EXAMPLES = """examples:
  d=../shared/data
  dreamer sample-efficiency --seeds 2 --workers 2 --metrics-out sample_efficiency.json --real \\
      $d/bybit_BTCUSDT_5m_2025-01_2026-07.csv.gz:$d/bybit_BTCUSDT_funding_8h_2025-01_2026-07.csv \\
      $d/bybit_ETHUSDT_5m_2025-01_2026-07.csv.gz:$d/bybit_ETHUSDT_funding_8h_2025-01_2026-07.csv
  dreamer sample-efficiency --markets regime --train-bars 5000 all --seeds 1 --ppo-steps 20000

--real takes [SYMBOL=]KLINES_CSV[:FUNDING_CSV] (the symbol is read from a bybit_<SYMBOL>_… file name). An N
not smaller than a market's train split is left out for it (it would repeat `all`). Every case writes under
--out (default runs/sample-efficiency/<market>-n<N>-seed<S>/, the markets' data under markets/); a rerun with
the same --out skips the finished cases and reuses the markets' data, so an interrupted experiment resumes.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "sample-efficiency",
        summary="Dreamer vs PPO vs a supervised forecaster, trained on the last N bars: held-out Sharpe against N",
        description=__doc__ or "",
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--markets", nargs="*", default=["regime", "ou"], help="synthetic markets (default: regime ou; none: --markets)"
    )
    parser.add_argument("--real", nargs="*", default=[], help="real markets: [SYMBOL=]KLINES_CSV[:FUNDING_CSV] …")
    parser.add_argument(
        "--train-bars",
        nargs="+",
        default=["5000", "15000", "50000", "all"],
        help="N: train on the last N bars of the train split (whole numbers or 'all'; default 5000 15000 50000 all)",
    )
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 … S−1 of Dreamer and PPO (default 2)")
    add_config_arg(parser)
    parser.add_argument("--ppo-steps", type=int, help="PPO's budget in real environment steps (default: the config's)")
    parser.add_argument(
        "--bars", type=int, default=100_000, help="5-minute bars of each synthetic market (default 100,000)"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="draws the synthetic markets and their bars (0)")
    parser.add_argument("--workers", type=int, default=1, help="cases run at once, one process each (default 1)")
    parser.add_argument("--out", default="runs/sample-efficiency", help="directory of the markets and the cases")
    parser.add_argument("--metrics-out", help="write the cases and the summary as JSON here")
    parser.add_argument("--plot", help="the PNG of Sharpe against N (default: <out>/sample_efficiency.png)")
    parser.add_argument("--table", help="the Markdown table (default: <out>/sample_efficiency.md)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from dreamer.config import load_config
    from dreamer.errors import ConfigError
    from dreamer.evaluation.plots import plot_sample_efficiency
    from dreamer.sample_efficiency import (
        METHOD_LABELS,
        experiment_cases,
        markdown_table,
        parse_train_bars,
        prepare_market,
        real_source,
        run_experiment,
        summarise,
        synthetic_source,
    )

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.bars < 20_000:
        raise ConfigError(f"--bars must be >= 20000 (warm-up, three splits and purge gaps), got {args.bars}")
    sources = [synthetic_source(name) for name in args.markets] + [real_source(spec) for spec in args.real]
    if not sources:
        raise ConfigError("no market: name synthetic ones with --markets or real ones with --real")
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"each market once, please: {names}")
    train_bars = parse_train_bars(args.train_bars)
    cfg = load_config(args.config)
    if args.ppo_steps is not None:
        cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, total_timesteps=args.ppo_steps))
    out = Path(args.out)
    started = datetime.now(UTC)

    markets = {}
    for source in sources:
        print(f"market {source.name}: data stages …", flush=True)
        markets[source.name] = prepare_market(
            source, cfg, out / "markets" / source.name, num_bars=args.bars, data_seed=args.data_seed
        )
    todo, skipped = experiment_cases(markets, train_bars, range(args.seeds))
    for market, left_out in skipped.items():
        if left_out:
            rows = markets[market]["train_rows"]
            print(f"{market}: N = {left_out} left out, not smaller than its {rows:,} train rows (= all)", flush=True)
    tracking = _start_tracking(args, cfg.flat_params(), len(todo))

    def report(result: dict[str, Any]) -> None:
        sharpes = ", ".join(
            f"{name} {number(method['sharpe'])} ({method['train_seconds'] / 60:.1f} min)"
            for name, method in result["methods"].items()
        )
        print(f"{result['case']}: test Sharpe {sharpes}; case {result['seconds']['total'] / 60:.1f} min", flush=True)
        _log_case(tracking, result)

    failed = True
    try:
        results = run_experiment(todo, cfg, markets, out, workers=args.workers, on_result=report)
        summary = summarise(results)
        table = markdown_table(summary)
        print("\n" + table)
        plot = Path(args.plot or out / "sample_efficiency.png")
        title = (
            f"Held-out Sharpe against the train bars used (config {cfg.name}; "
            f"PPO {cfg.ppo.total_timesteps:,} env steps; {_seeds(args.seeds)})"
        )
        plot_sample_efficiency(summary, METHOD_LABELS, plot, title)
        table_path = Path(args.table or out / "sample_efficiency.md")
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table_path.write_text(table, encoding="utf-8")
        print(f"plot: {plot}\ntable: {table_path}")
        payload = {
            "config": cfg.name,
            "ppo_env_steps": cfg.ppo.total_timesteps,
            "train_bars": [n or "all" for n in train_bars],
            "seeds": args.seeds,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "markets": markets,
            "left_out": skipped,
            "summary": summary,
            "cases": results,
            "plot": str(plot),
        }
        if args.metrics_out:
            Path(args.metrics_out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        _log_summary(tracking, table, payload, plot)
        failed = False
    finally:
        from dreamer.orchestration.tracking import finish_run

        finish_run(tracking, failed)
    return 0


def _seeds(count: int) -> str:
    return "seed 0" if count == 1 else f"seeds 0–{count - 1}"


def _start_tracking(args: argparse.Namespace, params: dict[str, Any], num_cases: int) -> Any:
    from dreamer.orchestration.tracking import start_flow_run

    tags = {"dreamer.kind": "sample-efficiency", "dreamer.config": args.config}
    run_params = {
        **params,
        "sample_efficiency.markets": args.markets,
        "sample_efficiency.real": args.real,
        "sample_efficiency.train_bars": args.train_bars,
        "sample_efficiency.seeds": args.seeds,
        "sample_efficiency.bars": args.bars,
        "sample_efficiency.data_seed": args.data_seed,
    }
    return start_flow_run(f"sample-efficiency-{num_cases}-cases", tags, run_params, experiment=EXPERIMENT)


def _log_case(tracking: Any, result: dict[str, Any]) -> None:
    log_case_run(
        tracking,
        result["case"],
        {"dreamer.synthetic": str(result["synthetic"]).lower(), "dreamer.market": result["market"]},
        {"market": result["market"], "train_bars": result["train_bars"], "seed": result["seed"]},
        {key: result[key] for key in ("methods", "buy_and_hold", "seconds")} | {"train_rows": result["train_rows"]},
    )


def _log_summary(tracking: Any, table: str, payload: dict[str, Any], plot: Path) -> None:
    logger = tracking.logger()
    logger.text_artifact(table, "sample_efficiency.md")
    logger.dict_artifact(payload, "sample_efficiency.json")
    logger.artifact(plot)
