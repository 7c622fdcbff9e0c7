"""A sweep: walk-forwards over several markets (symbol, interval), seeds and configurations, with one
statistics table over all of them (`dreamer.research.statistics.summarise`).

The pieces the `dreamer-sweep` flow (flows/walk_forward.py) wires together, as plain functions:
`sweep_markets` reads the markets, `prepare_market` ingests, validates and builds the features of one
market once (with the base config: a sweep's configurations may not change the features) and writes every
configuration's fold snapshots, returning its `FoldTask`s (plain values: paths, never a DuckDB connection);
`run_fold` runs each of them anywhere and writes its `result.json` (a rerun skips it); `sweep_summary`
stitches every (market, config)'s folds per seed and computes the statistics with N = the number of
configurations; `summary_markdown` renders the table.

Layout of a sweep's directory:

    out/<category>-<symbol>-<interval>/validation/, features/    once per market
    out/<category>-<symbol>-<interval>/<config>/                 a walk-forward directory (`run_walk_forward`'s
                                                                 layout: plan.json, folds/, runs/, stitched/)
    out/summary.json, out/summary.md                             the statistics and their table
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamer.config import load_config
from dreamer.errors import ConfigError
from dreamer.research.backtests import save_backtests
from dreamer.research.walk_forward import FoldTask, fold_record, fold_tasks, prepare_folds, statistics_records

if TYPE_CHECKING:
    from dreamer.pipeline import DataSpec

SUMMARY_JSON, SUMMARY_MARKDOWN = "summary.json", "summary.md"


@dataclass(frozen=True)
class SweepGroup:
    """One (market, config) of a sweep: its data identity and its tasks."""

    market: str  # "<symbol>/<interval>", the statistics' symbol label
    config: str  # the configuration's name in the sweep
    data: dict[str, Any]  # `stage_features`' result for the market
    out_dir: str  # its walk-forward directory
    tasks: tuple[FoldTask, ...]


def sweep_markets(markets: Sequence[str | Mapping[str, Any]], intervals: Sequence[str | int]) -> list[DataSpec]:
    """Every (market, interval) as a `DataSpec`: a market is "sample" (the bundled BTCUSDT slice) or a
    mapping of `DataSpec` fields, e.g. `{"source": "csv", "path": ..., "funding_path": ..., "symbol": ...}`
    (source csv when a path is given)."""
    from dreamer.pipeline import DataSpec

    if not markets or not intervals:
        raise ConfigError("a sweep needs at least one market and one interval")
    specs: list[DataSpec] = []
    for market in markets:
        fields: dict[str, Any] = {"source": "sample"} if market == "sample" else dict(market)  # type: ignore[arg-type]
        if isinstance(market, str) and market != "sample":
            raise ConfigError(f"market {market!r}: give 'sample' or a mapping such as {{'path': ..., 'symbol': ...}}")
        if "path" in fields:
            fields.setdefault("source", "csv")
        specs.extend(DataSpec(**{**fields, "interval": str(interval)}) for interval in intervals)
    return specs


def check_configs(configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Configurations are named override sets; features are built once per market, so none may change them."""
    if not configs:
        raise ConfigError("a sweep needs at least one configuration (e.g. {'base': {}})")
    for name, overrides in configs.items():
        if not name or "/" in name:
            raise ConfigError(f"configuration name {name!r}: a directory name, not empty")
        if "features" in overrides:
            raise ConfigError(
                f"configuration {name!r} overrides features, which a sweep builds once per (symbol, interval) "
                "with the base config: sweep feature settings in separate sweeps"
            )


def prepare_market(
    spec: DataSpec,
    db_path: str | Path,
    base_config: str,
    overrides: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    out_dir: str | Path,
    threads: int = 1,
) -> list[SweepGroup]:
    """Ingest, validate and build the features of `spec` once under `out_dir/<market>/`, then for each
    configuration (`overrides` and then its own on top of `base_config`) its fold snapshots and tasks under
    `out_dir/<market>/<config>/`. Runs where the DuckDB file is (it is single-writer)."""
    from dreamer.config import merge_overrides
    from dreamer.pipeline import stage_features, stage_ingest, stage_validate

    check_configs(configs)
    market_dir = Path(out_dir) / f"{spec.category}-{spec.symbol}-{spec.interval}"
    base = load_config(base_config, dict(overrides))
    stage_ingest(spec, db_path)
    stage_validate(spec, db_path, base, market_dir / "validation")
    data = stage_features(spec, db_path, base, market_dir / "features")
    groups = []
    for name, own in configs.items():
        merged = merge_overrides(dict(overrides), dict(own))
        cfg = load_config(base_config, merged)
        config_dir = market_dir / name
        snapshots = prepare_folds(data, cfg, config_dir)
        tasks = fold_tasks(
            snapshots,
            seeds,
            base_config,
            merged,
            config_dir,
            warm_start=cfg.walk_forward.warm_start_from_previous_fold,
            threads=threads,
        )
        groups.append(SweepGroup(f"{spec.symbol}/{spec.interval}", name, data, str(config_dir), tuple(tasks)))
    return groups


def child_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """A task's sortable scalars: `agent.*` (with `sharpe_ci_low`/`_high`), `baselines.<name>.*`,
    `vs_<baseline>.sharpe_diff` (and its interval) and `world_model.*`, as a single run's headline."""
    from dreamer.orchestration.stage_logs import headline
    from dreamer.orchestration.tracking import flatten_numeric

    return flatten_numeric(headline(result))


def sweep_summary(
    groups: Sequence[SweepGroup], results: Mapping[str, Mapping[str, Any]], base_config: str
) -> dict[str, Any]:
    """Stitch each group's folds per seed (saved to `<group>/stitched/seed-<s>.npz`) and compute the
    statistics of the whole sweep, N = the number of configurations. `results`: task out_dir -> result.
    Returns `{"statistics": summarise(...), "groups": [{market, config, stitched, stitched_files}]}`."""
    from dreamer.evaluation.report import jsonable
    from dreamer.research.statistics import summarise
    from dreamer.research.walk_forward import stitched_curves, stitched_report

    n_configs = len({group.config for group in groups})
    fold_records: list[dict[str, Any]] = []
    stitched_agents: list[dict[str, Any]] = []
    described = []
    for group in groups:
        cfg = load_config(base_config, dict(group.tasks[0].overrides))
        curves = stitched_curves(group.tasks)
        files = []
        for seed, curve in curves.items():
            path = Path(group.out_dir) / "stitched" / f"seed-{seed}.npz"
            save_backtests(path, curve.results, curve.open_time_ms)
            files.append(str(path))
        interval = str(group.data["interval"])
        stitched = jsonable(stitched_report(curves, interval, cfg.evaluation))
        folds = jsonable([fold_record(results[task.out_dir]) for task in group.tasks])
        records, agents = statistics_records(str(group.data["symbol"]), interval, group.config, folds, stitched, curves)
        fold_records += records
        stitched_agents += agents
        described.append(
            {"market": group.market, "config": group.config, "stitched": stitched, "stitched_files": files}
        )
    return jsonable(
        {"statistics": summarise(fold_records, stitched_agents, n_configs), "n_configs": n_configs, "groups": described}
    )


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The statistics as a Markdown table, one row per (market, config), then each market's verdict."""
    statistics = summary["statistics"]
    level = round(100 * statistics["confidence"])
    lines = [
        f"| market | config | runs | Sharpe | {level}% CI (folds) | seed std | fold std | DSR | "
        "vs buy & hold (diff, folds won) |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    verdicts = []
    for market, entry in statistics["symbols"].items():
        for config, row in entry["configs"].items():
            ci = row["sharpe_ci"]
            deflated = row.get("deflated_sharpe") or {}
            hold = row["baselines"].get("buy_and_hold") or {}
            versus = (
                f"{_fmt(hold.get('sharpe_diff'), '+.2f')}, {hold.get('folds_won')}/{hold.get('folds')}" if hold else "–"
            )
            lines.append(
                f"| {market} | {config} | {row['runs']} | {_fmt(row['sharpe'], '.2f')} | "
                f"{'–' if ci is None else f'[{ci[0]:.2f}, {ci[1]:.2f}]'} | {_fmt(row['seed_std'], '.2f')} | "
                f"{_fmt(row['fold_std'], '.2f')} | {_fmt(deflated.get('dsr'), '.2f')} | {versus} |"
            )
        verdicts.append(f"- **{market}**: {entry['verdict']}")
    return "\n".join([*lines, "", *verdicts]) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
