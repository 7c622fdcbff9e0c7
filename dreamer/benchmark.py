"""The known-answer benchmark: the whole pipeline on synthetic markets whose best policy is known.

Every case is one (market, seed): the market's parameters are drawn by the seed from the ranges the
acceptance criteria name (`dreamer.synthetic.PARAMETER_RANGES`), its bars are written as a kline CSV
(labelled synthetic: symbol `SYN…`, a sidecar JSON), and the library pipeline runs on it exactly as on real
data: CSV ingest → validation gate → causal features and purged splits → world model → actor-critic in
imagination → held-out backtest. Nothing is registered or promoted: synthetic agents never reach the model
registry. The oracle (`dreamer.synthetic.oracle`) is scored on the same test bars, its band tuned on the
training bars only.

Per market, over its seeds, the table reports the agent's and the oracle's test Sharpe, their ratio (the
*fraction*), the world model's direction accuracy and volatility-forecast correlation next to the
oracle's, and a verdict on the market's criterion:

    regime, ou          median fraction of the oracle's Sharpe >= `target_fraction` (0.5)
    garch               median ratio of vol_forecast_corr (world model / oracle) >= `target_fraction`
    random_walk         every seed's Sharpe below 3 standard errors of zero (nothing to find, nothing found)
    random_walk_leaked  every seed's Sharpe above 3 standard errors (the data leaks the next return into the
                        volume: the control shows the pipeline would find a look-ahead if one existed)

Cases run in worker processes (`workers`), each single-threaded; each writes `result.json` in its own
directory when done, so a rerun of an interrupted benchmark runs only the cases still missing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamer.config import RunConfig
from dreamer.errors import ConfigError
from dreamer.experiment import CASE_RESULT, finite_values, ratio, run_cases, spread, spread_cell

if TYPE_CHECKING:
    from dreamer.features.dataset import MarketDataset
    from dreamer.synthetic import Oracle, SyntheticMarket, SyntheticSeries

STANDARD_ERRORS = 3.0
DIRECTIONAL = ("regime", "ou")


@dataclass(frozen=True)
class BenchmarkCase:
    market: str  # a name of dreamer.synthetic.MARKETS
    seed: int  # draws the market's parameters (unless given), its bars and the agent's seed
    parameters: tuple[tuple[str, float], ...] = ()  # fixed parameters instead of drawn ones

    @property
    def name(self) -> str:
        return f"{self.market}-seed{self.seed}"

    @property
    def symbol(self) -> str:
        """`SYN` + the market's name: every synthetic series is labelled as such in the database and MLflow."""
        return "SYN" + self.market.replace("_", "").upper()


def cases(markets: Sequence[str], seeds: Sequence[int]) -> list[BenchmarkCase]:
    from dreamer.synthetic import MARKETS

    unknown = sorted(set(markets) - set(MARKETS))
    if unknown:
        raise ConfigError(f"unknown market(s) {unknown}; known: {', '.join(MARKETS)}")
    if not seeds:
        raise ConfigError("the benchmark needs at least one seed")
    return [BenchmarkCase(market, seed) for market in markets for seed in seeds]


@dataclass(frozen=True)
class SyntheticData:
    """A case's synthetic market, its bars, and the dataset the pipeline built from their CSV."""

    market: SyntheticMarket
    series: SyntheticSeries
    features: dict[str, Any]  # `stage_features`' result: dataset_dir, rows, splits, …


def synthetic_config(cfg: RunConfig) -> RunConfig:
    """`cfg` for a synthetic market: it has no funding, so its validation gate checks the klines only."""
    return dataclasses.replace(cfg, validation=dataclasses.replace(cfg.validation, check_funding=False))


def prepare_synthetic(case: BenchmarkCase, cfg: RunConfig, out_dir: str | Path, num_bars: int) -> SyntheticData:
    """Generate the case's market (`num_bars` bars), write it as a labelled kline CSV under `out_dir`, and
    run the library pipeline's data stages on it: CSV ingest → validation gate → features and splits
    (`out_dir/dataset`). `cfg` must be a `synthetic_config`."""
    from dreamer.pipeline import DataSpec, stage_features, stage_ingest, stage_validate
    from dreamer.synthetic import market_from_spec, sample_market, write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if case.parameters:
        market = market_from_spec(case.market, **dict(case.parameters))
    else:
        market = sample_market(case.market, case.seed)
    series = market.generate(num_bars, case.seed)
    csv_path = out / f"synthetic-{case.name}.csv.gz"
    write_csv(series, csv_path)
    spec = DataSpec(source="csv", path=str(csv_path), symbol=case.symbol)
    db = out / "market.duckdb"
    stage_ingest(spec, db)
    stage_validate(spec, db, cfg, out / "validation")
    return SyntheticData(market, series, stage_features(spec, db, cfg, out / "dataset"))


def fit_oracle(data: SyntheticData, dataset: MarketDataset, cost_rate: float) -> tuple[Oracle, slice]:
    """The market's oracle with its band tuned on the bars of the dataset's train split, and the rows of the
    series that are the dataset's test split (score it there with `oracle_metrics`)."""
    train_rows, test_rows = (_series_rows(data.series, dataset, split) for split in ("train", "test"))
    return data.market.oracle(data.series, cost_rate, fit_bars=train_rows), test_rows


def run_case(case: BenchmarkCase, cfg: RunConfig, out_dir: str | Path, num_bars: int) -> dict[str, Any]:
    """Generate the case's market, run the pipeline on it and score agent and oracle on its test split.
    Returns (and writes to `out_dir/result.json`) the case's JSON-ready result."""
    from dreamer.evaluation.diagnostics import TRACE_FILE
    from dreamer.evaluation.report import jsonable, write_json
    from dreamer.evaluation.scoring import pearson
    from dreamer.features.dataset import MarketDataset
    from dreamer.pipeline import stage_evaluate, stage_train_policy, stage_train_world_model, use_cpu_threads
    from dreamer.synthetic import oracle_metrics

    use_cpu_threads(1)
    cfg = synthetic_config(cfg)
    started = time.perf_counter()
    out = Path(out_dir)
    data = prepare_synthetic(case, cfg, out, num_bars)
    dataset_dir = data.features["dataset_dir"]
    world_model = stage_train_world_model(dataset_dir, cfg, out / "world_model")
    agent = stage_train_policy(dataset_dir, world_model["checkpoint"], cfg, out / "agent")
    evaluation = stage_evaluate(dataset_dir, agent["checkpoint"], cfg, out / "evaluation")

    oracle, test_rows = fit_oracle(data, MarketDataset.load(dataset_dir), cfg.dreamer.cost_rate)
    oracle_scores = oracle_metrics(data.series, oracle, rows=test_rows)
    # the world model's forecast at each traded test bar (`trace.npz`) against the oracle's at the same bar
    traced = np.load(Path(evaluation["metrics_path"]).parent / TRACE_FILE)["forecast"]  # [n − 1]
    oracle_forecast = oracle.expected_return[test_rows.start : test_rows.stop - 1]
    agent_metrics, forecasts = evaluation["agent"], evaluation["world_model"]
    result = {
        "case": case.name,
        "market": case.market,
        "seed": case.seed,
        "parameters": data.market.parameters,
        "synthetic": True,
        "test": evaluation["window"],
        "agent": {
            key: agent_metrics.get(key)
            for key in (
                "sharpe",
                "sharpe_se",
                "sharpe_ci",
                "total_return",
                "num_trades",
                "exposure",
                "dominant_position",
                "dominant_position_share",
                "degenerate",
            )
        },
        "oracle": {
            "sharpe": oracle_scores["sharpe"],
            "total_return": oracle_scores["total_return"],
            "num_trades": oracle_scores["num_trades"],
            "band_bps": oracle.band * 1e4 if math.isfinite(oracle.band) else None,
            "direction_accuracy": oracle_scores["direction_accuracy"],
            "vol_forecast_corr": oracle_scores["vol_forecast_corr"],
        },
        "world_model": {
            "direction_accuracy": forecasts.get("direction_accuracy"),
            "vol_forecast_corr": forecasts.get("vol_forecast_corr"),
            "next_return_mse_ratio": ratio(forecasts.get("next_return_mse"), forecasts.get("zero_forecast_mse")),
            "forecast_corr_with_oracle": pearson(traced, oracle_forecast),
        },
        "diagnostics": evaluation["diagnostics"],
        "fraction_of_oracle_sharpe": ratio(agent_metrics.get("sharpe"), oracle_scores["sharpe"]),
        "fraction_of_oracle_vol_corr": ratio(forecasts.get("vol_forecast_corr"), oracle_scores["vol_forecast_corr"]),
        "seconds": {
            "world_model": world_model["seconds"],
            "policy": agent["seconds"],
            "total": time.perf_counter() - started,
        },
    }
    write_json(out / CASE_RESULT, result)
    return jsonable(result)  # what a resumed run reads back: NaN as null


def run_benchmark(
    benchmark_cases: Sequence[BenchmarkCase],
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    num_bars: int,
    workers: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every case's result, in case order (`dreamer.experiment.run_cases`: finished cases are read back from
    their `result.json`, the others run in `workers` processes)."""
    return run_cases(
        benchmark_cases,
        functools.partial(_run_case_in, cfg=cfg, num_bars=num_bars),
        out_dir,
        workers=workers,
        on_result=on_result,
    )


def _run_case_in(case: BenchmarkCase, out_dir: Path, *, cfg: RunConfig, num_bars: int) -> dict[str, Any]:
    return run_case(case, cfg, out_dir, num_bars)


def summarise(results: Sequence[dict[str, Any]], target_fraction: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per market: medians and spreads over its seeds, and whether it meets its criterion (module docstring)."""
    by_market: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_market.setdefault(result["market"], []).append(result)
    summary = {}
    for market, runs in by_market.items():
        agent_sharpe = finite_values(runs, lambda r: r["agent"]["sharpe"])
        oracle_sharpe = finite_values(runs, lambda r: r["oracle"]["sharpe"])
        fraction = finite_values(runs, lambda r: r["fraction_of_oracle_sharpe"])
        vol_fraction = finite_values(runs, lambda r: r["fraction_of_oracle_vol_corr"])
        z_scores = finite_values(runs, lambda r: ratio(r["agent"]["sharpe"], r["agent"]["sharpe_se"]))
        row: dict[str, Any] = {
            "seeds": [r["seed"] for r in runs],
            "agent_sharpe": spread(agent_sharpe),
            "oracle_sharpe": spread(oracle_sharpe),
            "fraction_of_oracle_sharpe": spread(fraction),
            "agent_sharpe_z": spread(z_scores),
            "degenerate_seeds": sum(bool(r["agent"]["degenerate"]) for r in runs),
            "world_model_forecast_corr_with_oracle": spread(
                finite_values(runs, lambda r: r["world_model"]["forecast_corr_with_oracle"])
            ),
            "world_model_direction_accuracy": spread(
                finite_values(runs, lambda r: r["world_model"]["direction_accuracy"])
            ),
            "oracle_direction_accuracy": spread(finite_values(runs, lambda r: r["oracle"]["direction_accuracy"])),
            "world_model_vol_forecast_corr": spread(
                finite_values(runs, lambda r: r["world_model"]["vol_forecast_corr"])
            ),
            "oracle_vol_forecast_corr": spread(finite_values(runs, lambda r: r["oracle"]["vol_forecast_corr"])),
            "fraction_of_oracle_vol_corr": spread(vol_fraction),
            "minutes_per_case": spread(finite_values(runs, lambda r: r["seconds"]["total"] / 60.0)),
        }
        if market in DIRECTIONAL:
            row["criterion"] = f"median fraction of the oracle's Sharpe >= {target_fraction:g}"
            row["passed"] = bool(fraction.size) and float(np.median(fraction)) >= target_fraction
        elif market == "garch":
            row["criterion"] = f"median fraction of the oracle's vol_forecast_corr >= {target_fraction:g}"
            row["passed"] = bool(vol_fraction.size) and float(np.median(vol_fraction)) >= target_fraction
        elif market == "random_walk":
            row["criterion"] = f"no seed's Sharpe > {STANDARD_ERRORS:g} standard errors (finds nothing)"
            row["passed"] = not any(_significant_profit(r) for r in runs)
        else:  # the leaked control
            row["criterion"] = f"every seed's Sharpe > {STANDARD_ERRORS:g} standard errors (finds the leak)"
            row["passed"] = all(_significant_profit(r) for r in runs)
        summary[market] = row
    return summary


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """The README's table: one row per market, medians with [min, max] over the seeds."""
    header = (
        "| market (synthetic) | seeds | agent Sharpe | oracle Sharpe | fraction | agent Sharpe / SE "
        "| WM forecast corr with oracle | WM direction acc. (oracle) | WM vol corr (oracle) | degenerate "
        "| criterion | met |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|:---:|\n"
    )
    rows = []
    for market, row in summary.items():
        rows.append(
            f"| {market} | {len(row['seeds'])} | {spread_cell(row['agent_sharpe'])} "
            f"| {spread_cell(row['oracle_sharpe'])} "
            f"| {spread_cell(row['fraction_of_oracle_sharpe'], '{:.0%}')} | {spread_cell(row['agent_sharpe_z'])} "
            f"| {spread_cell(row['world_model_forecast_corr_with_oracle'])} "
            f"| {spread_cell(row['world_model_direction_accuracy'], '{:.3f}')} "
            f"({spread_cell(row['oracle_direction_accuracy'], '{:.3f}', show_range=False)}) "
            f"| {spread_cell(row['world_model_vol_forecast_corr'], '{:.2f}')} "
            f"({spread_cell(row['oracle_vol_forecast_corr'], '{:.2f}', show_range=False)}) "
            f"| {row['degenerate_seeds']}/{len(row['seeds'])} | {row['criterion']} "
            f"| {'yes' if row['passed'] else 'no'} |"
        )
    return header + "\n".join(rows) + "\n"


def _significant_profit(result: dict[str, Any]) -> bool:
    """Sharpe above `STANDARD_ERRORS` bootstrap standard errors (a flat agent: Sharpe 0, SE 0, is not)."""
    sharpe, se = result["agent"]["sharpe"] or 0.0, result["agent"]["sharpe_se"] or 0.0
    return sharpe > 0 and sharpe > STANDARD_ERRORS * se


def _series_rows(series: Any, dataset: Any, split: str) -> slice:
    """The rows of `series` that are `split` of `dataset` (the dataset drops warm-up bars and purge gaps)."""
    start, stop = dataset.splits[split]
    rows = series.rows_at(dataset.open_time_ms[start:stop])
    return slice(int(rows[0]), int(rows[-1]) + 1)
