"""The sample-efficiency experiment: is the world model worth it at equal real data?

For each market, each N of `train_bars` and each seed, three methods learn from the **last N bars of the
market's train split only** and trade the **same test split with the same backtest**:

    dreamer     the world model and the actor-critic in imagination (`stage_train_world_model`,
                `stage_train_policy`), the config's budget of updates
    ppo         the model-free PPO baseline (`stage_train_ppo`), a budget of real environment steps
    supervised  the ridge forecaster with a no-trade band (`dreamer.evaluation.baselines.fit_supervised`)

Markets: the known-answer synthetic markets (`dreamer.synthetic`: parameters and bars drawn by one data
seed, the oracle's Sharpe on the test split as the ceiling) and real symbols from kline CSV files with their
funding. Each market's data goes through the library pipeline's data stages once (CSV ingest → validation
gate → causal features → purged splits, `<out>/markets/<market>/`). A case (market, N, seed) rebuilds that
dataset from its saved features with the train split cut to its last N rows (`restricted_dataset`,
`make_dataset(..., train_bars=N)`): the val and test rows are exactly those of the whole split, the rows
before the cut belong to no split and nothing reads them, and **the normaliser is fitted on the N rows used**
(fitting it on the whole train split would hand every method statistics of bars it is not supposed to have
seen; the honest choice is what a trader with only N bars could compute).

Held equal across N: the val and test rows, the costs and funding, the selection on the val split (Dreamer's
world model and policy, the supervised band; PPO selects nothing), the backtest and its block bootstrap.
Held equal too, on purpose: the compute budgets, Dreamer's updates and PPO's real environment steps (a
small N is revisited more often, not trained for less), so the curves show what more *data* buys. The case
seed seeds Dreamer (`dreamer.seed`) and PPO; a market's data is the same for every seed, so the seeds show
the training's variance and the bootstrap CI the test split's.

Cases run like the benchmark's (`dreamer.experiment.run_cases`: worker processes, one thread each, a
`result.json` per case, so a rerun resumes). A case's training stages resume from their checkpoints too; the
seconds of a case resumed mid-way count only what ran after the restart (its result says `resumed`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamer.config import RunConfig
from dreamer.errors import ConfigError
from dreamer.experiment import finite_values, run_cases, spread, spread_cell
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import DatasetError, MarketDataset

METHODS = ("dreamer", "ppo", "supervised")
METHOD_LABELS = {"dreamer": "Dreamer (world model)", "ppo": "PPO (model-free)", "supervised": "supervised (ridge)"}
ALL = "all"  # the train_bars of a case that uses the whole train split
MARKET_INFO = "market.json"
DEFAULT_TRAIN_BARS: tuple[int | None, ...] = (5_000, 15_000, 50_000, None)
DEFAULT_SYNTHETIC = ("regime", "ou")
_KLINE_FILE_SYMBOL = re.compile(r"^bybit_([A-Z0-9]+)_")  # the exports' names: bybit_BTCUSDT_5m_….csv.gz
_METHOD_METRICS = ("sharpe", "sharpe_ci", "sharpe_ci_level", "sharpe_se", "total_return", "num_trades", "turnover")


@dataclass(frozen=True)
class MarketSource:
    """One market of the experiment: a synthetic market of `dreamer.synthetic.MARKETS` by name, or a real
    symbol read from a kline CSV (and, for a perpetual, its funding CSV)."""

    name: str  # the synthetic market's name, or the real symbol
    klines_path: str | None = None  # real markets only
    funding_path: str | None = None

    @property
    def synthetic(self) -> bool:
        return self.klines_path is None


def synthetic_source(name: str) -> MarketSource:
    from dreamer.synthetic import MARKETS

    if name not in MARKETS:
        raise ConfigError(f"unknown synthetic market {name!r}; known: {', '.join(MARKETS)}")
    return MarketSource(name)


def real_source(spec: str, option: str = "--real") -> MarketSource:
    """A real market from `[SYMBOL=]KLINES_CSV[:FUNDING_CSV]`; without `SYMBOL=`, the symbol is read from a
    file name of the exports' form `bybit_<SYMBOL>_…`."""
    from dreamer.data.markets import parse_symbol

    symbol, _, paths = spec.rpartition("=")
    klines, _, funding = paths.partition(":")
    if not klines:
        raise ConfigError(f"{option} {spec!r}: expected [SYMBOL=]KLINES_CSV[:FUNDING_CSV]")
    if not symbol:
        match = _KLINE_FILE_SYMBOL.match(Path(klines).name)
        if match is None:
            raise ConfigError(f"{option} {spec!r}: no symbol in the file name; write it as SYMBOL={paths}")
        symbol = match.group(1)
    for path in (klines, funding):
        if path and not Path(path).is_file():
            raise ConfigError(f"{option} {spec!r}: {path} is not a file")
    return MarketSource(parse_symbol(symbol), klines, funding or None)


@dataclass(frozen=True)
class SampleEfficiencyCase:
    market: str  # a MarketSource's name
    train_bars: int | None  # the last N rows of the train split; None: all of it
    seed: int  # seeds Dreamer and PPO

    @property
    def name(self) -> str:
        return f"{self.market}-n{self.train_bars or ALL}-seed{self.seed}"


def parse_train_bars(values: Sequence[str]) -> tuple[int | None, ...]:
    """`["5000", "all"]` -> `(5000, None)`, sorted, duplicates dropped."""
    parsed: set[int | None] = set()
    for value in values:
        if value.lower() == ALL:
            parsed.add(None)
            continue
        try:
            bars = int(value.replace("_", "").replace(",", ""))
        except ValueError:
            raise ConfigError(f"train bars must be whole numbers or {ALL!r}, got {value!r}") from None
        if bars < 2:
            raise ConfigError(f"train bars must be >= 2, got {bars}")
        parsed.add(bars)
    if not parsed:
        raise ConfigError("the experiment needs at least one train-bars value")
    return tuple(sorted(parsed, key=lambda n: math.inf if n is None else n))


def prepare_market(
    source: MarketSource, cfg: RunConfig, out_dir: str | Path, *, num_bars: int, data_seed: int
) -> dict[str, Any]:
    """Build the market's dataset once under `out_dir` and describe it (`market.json`, read back on a rerun):
    the dataset directory, its train rows, its test window, and on a synthetic market its parameters and
    the oracle's test scores (band tuned on the whole train split). `num_bars` and `data_seed`: the bars of
    a synthetic market and the seed that draws them."""
    from dreamer.evaluation.backtest import evaluation_window
    from dreamer.evaluation.report import jsonable, write_json
    from dreamer.pipeline import split_ranges

    out = Path(out_dir)
    described = out / MARKET_INFO
    if described.exists():
        return dict(json.loads(described.read_text(encoding="utf-8")))
    info: dict[str, Any] = {"market": source.name, "synthetic": source.synthetic}
    if source.synthetic:
        from dreamer.benchmark import BenchmarkCase, fit_oracle, prepare_synthetic, synthetic_config
        from dreamer.synthetic import oracle_metrics

        data = prepare_synthetic(BenchmarkCase(source.name, data_seed), synthetic_config(cfg), out, num_bars)
        dataset = MarketDataset.load(data.features["dataset_dir"])
        oracle, test_rows = fit_oracle(data, dataset, cfg.dreamer.cost_rate)
        scores = oracle_metrics(data.series, oracle, rows=test_rows)
        info |= {
            "data_seed": data_seed,
            "bars": num_bars,
            "parameters": data.market.parameters,
            "oracle": {key: scores[key] for key in ("sharpe", "total_return", "num_trades")},
        }
        dataset_dir = data.features["dataset_dir"]
    else:
        from dreamer.pipeline import DataSpec, stage_features, stage_ingest, stage_validate

        assert source.klines_path is not None
        spec = DataSpec(source="csv", path=source.klines_path, funding_path=source.funding_path, symbol=source.name)
        db = out / "market.duckdb"
        stage_ingest(spec, db)
        stage_validate(spec, db, cfg, out / "validation")
        dataset_dir = stage_features(spec, db, cfg, out / "dataset")["dataset_dir"]
        dataset = MarketDataset.load(dataset_dir)
        info |= {"klines_path": source.klines_path, "funding_path": source.funding_path, "oracle": None}
    test = evaluation_window(dataset, "test")
    info |= {
        "dataset_dir": str(dataset_dir),
        "train_rows": dataset.splits["train"][1] - dataset.splits["train"][0],
        "splits": split_ranges(dataset),
        "test_bars": len(test.rows),
    }
    write_json(described, info)
    return dict(jsonable(info))


def restricted_dataset(dataset_dir: str | Path, split_cfg: SplitConfig, train_bars: int | None) -> MarketDataset:
    """The dataset saved in `dataset_dir` rebuilt from its features (`features.parquet`) with the train split
    cut to its last `train_bars` rows and the normaliser fitted on them (None: the whole train split, as
    saved). `split_cfg` must be the `SplitConfig` that built it: the rebuilt val and test splits are checked
    to be the saved ones."""
    import pandas as pd

    from dreamer.features.split import make_dataset

    saved = MarketDataset.load(dataset_dir)
    if train_bars is None:
        return saved
    features = pd.read_parquet(Path(dataset_dir) / "features.parquet")
    dataset = make_dataset(features, split_cfg, saved.meta, train_bars=train_bars)
    same_rows = np.array_equal(dataset.open_time_ms, saved.open_time_ms)
    if not same_rows or any(dataset.splits[name] != saved.splits[name] for name in ("val", "test")):
        raise DatasetError(f"{dataset_dir}: its features and split config do not rebuild the saved dataset's splits")
    return dataset


def run_case(
    case: SampleEfficiencyCase, out_dir: str | Path, *, cfg: RunConfig, market: dict[str, Any]
) -> dict[str, Any]:
    """Train the three methods on the case's last N train bars of `market` (a `prepare_market` description),
    backtest them on its test split, and return (and write to `out_dir/result.json`) the case's result."""
    from dreamer.evaluation.report import fit_supervised_baseline, jsonable, write_json
    from dreamer.experiment import CASE_RESULT
    from dreamer.pipeline import (
        backtest_test_split,
        split_ranges,
        stage_train_policy,
        stage_train_ppo,
        stage_train_world_model,
        use_cpu_threads,
    )

    use_cpu_threads(1)
    started = time.perf_counter()
    out = Path(out_dir)
    cfg = dataclasses.replace(cfg, dreamer=dataclasses.replace(cfg.dreamer, seed=case.seed))
    # an interrupted try left checkpoints: its training resumes, and the seconds count only what runs now
    resumed = any((out / stage).exists() for stage in ("world_model", "agent", "ppo"))
    dataset = restricted_dataset(market["dataset_dir"], cfg.split, case.train_bars)
    dataset_dir = dataset.save(out / "dataset")
    world_model = stage_train_world_model(dataset_dir, cfg, out / "world_model")
    agent = stage_train_policy(dataset_dir, world_model["checkpoint"], cfg, out / "agent")
    ppo = stage_train_ppo(dataset_dir, cfg, out / "ppo")
    import sklearn.linear_model  # noqa: F401 (imported before the clock starts: a second of import, not of fitting)

    began = time.perf_counter()
    supervised = fit_supervised_baseline(dataset, cfg.evaluation, cfg.dreamer.cost_rate, dataset.meta["interval"])
    supervised_seconds = time.perf_counter() - began
    began = time.perf_counter()
    _, evaluation = backtest_test_split(
        dataset, agent["checkpoint"], cfg, ppo_model=ppo["model_dir"], supervised=supervised
    )
    evaluation_seconds = time.perf_counter() - began

    report = evaluation.report
    scored = {
        "dreamer": report["agent"],
        "ppo": report["baselines"]["ppo"],
        "supervised": report["baselines"]["supervised"],
    }
    seconds = {
        "dreamer": world_model["seconds"] + agent["seconds"],
        "ppo": ppo["seconds"],
        "supervised": supervised_seconds,
    }
    buy_and_hold = report["baselines"]["buy_and_hold"]
    result = {
        "case": case.name,
        "market": case.market,
        "synthetic": market["synthetic"],
        "seed": case.seed,
        "resumed": resumed,
        "train_bars": case.train_bars or ALL,
        "train_rows": split_ranges(dataset)["train"],
        "test": report["window"],
        "methods": {
            name: {key: scored[name].get(key) for key in _METHOD_METRICS} | {"train_seconds": seconds[name]}
            for name in METHODS
        },
        # paired block bootstrap (both series resampled with the same blocks): Dreamer's Sharpe minus the method's
        "dreamer_minus": {name: report["comparison"][name] for name in METHODS[1:]},
        "buy_and_hold": {"sharpe": buy_and_hold["sharpe"], "total_return": buy_and_hold["total_return"]},
        "oracle": market["oracle"],
        "budget": {
            "world_model_updates": world_model["steps"],
            "policy_updates": agent["steps"],
            "ppo_env_steps": ppo["timesteps"],
        },
        "seconds": {
            "world_model": world_model["seconds"],
            "policy": agent["seconds"],
            "ppo": ppo["seconds"],
            "supervised": supervised_seconds,
            "evaluation": evaluation_seconds,
            "total": time.perf_counter() - started,
        },
    }
    write_json(out / CASE_RESULT, result)
    return dict(jsonable(result))  # what a resumed run reads back: NaN as null


def experiment_cases(
    markets: dict[str, dict[str, Any]], train_bars: Sequence[int | None], seeds: Sequence[int]
) -> tuple[list[SampleEfficiencyCase], dict[str, list[int]]]:
    """The cases of every prepared market (`prepare_market` descriptions by name) × N × seed, and per market
    the N left out because they are not smaller than its train split (they would repeat the `all` case)."""
    if not seeds:
        raise ConfigError("the experiment needs at least one seed")
    todo, skipped = [], {}
    for name, market in markets.items():
        kept = [n for n in train_bars if n is None or n < market["train_rows"]]
        skipped[name] = [n for n in train_bars if n is not None and n >= market["train_rows"]]
        todo += [SampleEfficiencyCase(name, n, seed) for n in kept for seed in seeds]
    return todo, skipped


def run_experiment(
    cases: Sequence[SampleEfficiencyCase],
    cfg: RunConfig,
    markets: dict[str, dict[str, Any]],
    out_dir: str | Path,
    *,
    workers: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every case's result, in case order; finished cases are read back (`dreamer.experiment.run_cases`)."""
    return run_cases(
        cases, functools.partial(_run_case_of, cfg=cfg, markets=markets), out_dir, workers=workers, on_result=on_result
    )


def _run_case_of(
    case: SampleEfficiencyCase, out_dir: Path, *, cfg: RunConfig, markets: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return run_case(case, out_dir, cfg=cfg, market=markets[case.market])


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per market (in the results' order) and per N (ascending train rows): for each method the test Sharpe,
    the half-width of its CI, the total return and the training minutes as `spread`s over the seeds, and the
    seeds' own Sharpe with CI (`points`, what the plot draws); the oracle's and buy-and-hold's test Sharpe."""
    by_market: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for result in results:
        by_market.setdefault(result["market"], {}).setdefault(result["train_bars"], []).append(result)
    summary = {}
    for market, by_n in by_market.items():
        first = next(iter(by_n.values()))[0]
        rows = []
        for train_bars, runs in sorted(by_n.items(), key=lambda item: item[1][0]["train_rows"]["rows"]):
            methods = {
                name: {
                    "sharpe": spread(_method_values(runs, name, "sharpe")),
                    "sharpe_ci_half_width": spread(_method_values(runs, name, "sharpe_ci")),
                    "total_return": spread(_method_values(runs, name, "total_return")),
                    "train_minutes": spread(_method_values(runs, name, "train_seconds") / 60.0),
                    "points": [
                        {
                            "seed": r["seed"],
                            "sharpe": r["methods"][name]["sharpe"],
                            "ci": r["methods"][name]["sharpe_ci"],
                        }
                        for r in runs
                    ],
                }
                for name in METHODS
            }
            rows.append(
                {
                    "train_bars": train_bars,
                    "train_rows": runs[0]["train_rows"]["rows"],
                    "seeds": [r["seed"] for r in runs],
                    "methods": methods,
                }
            )
        summary[market] = {
            "synthetic": first["synthetic"],
            "test": {key: first["test"][key] for key in ("start", "end", "bars")},
            "oracle_sharpe": (first.get("oracle") or {}).get("sharpe"),
            "buy_and_hold_sharpe": first["buy_and_hold"]["sharpe"],
            "rows": rows,
        }
    return summary


def _method_values(runs: Sequence[dict[str, Any]], method: str, key: str) -> np.ndarray:
    """`[M]` the finite values of `method`'s `key` over `runs`; for `sharpe_ci`, the interval's half-width."""

    def value(run: dict[str, Any]) -> Any:
        found = run["methods"][method][key]
        if key != "sharpe_ci":
            return found
        low, high = found
        return None if low is None or high is None else (high - low) / 2.0

    return finite_values(runs, value)


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """The README's table: one row per market and N; per method the median test Sharpe over the seeds with
    [min, max] where they differ and ± the median half-width of their bootstrap CIs, the median total return,
    and the median training minutes."""
    header = (
        "| market | train bars | Dreamer Sharpe | PPO Sharpe | supervised Sharpe | Dreamer return | PPO return "
        "| supervised return | train minutes (Dreamer / PPO / supervised) | oracle Sharpe | buy & hold Sharpe |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for market, entry in summary.items():
        label = f"{market} (synthetic)" if entry["synthetic"] else market
        for row in entry["rows"]:
            methods = row["methods"]
            bars = f"{row['train_rows']:,}" if row["train_bars"] != ALL else f"all ({row['train_rows']:,})"
            sharpes = " | ".join(_sharpe_cell(methods[name]) for name in METHODS)
            returns = " | ".join(spread_cell(methods[name]["total_return"], "{:.1%}", False) for name in METHODS)
            minutes = " / ".join(spread_cell(methods[name]["train_minutes"], "{:.1f}", False) for name in METHODS)
            oracle = "n/a" if entry["oracle_sharpe"] is None else f"{entry['oracle_sharpe']:.2f}"
            hold = "n/a" if entry["buy_and_hold_sharpe"] is None else f"{entry['buy_and_hold_sharpe']:.2f}"
            lines.append(f"| {label} | {bars} | {sharpes} | {returns} | {minutes} | {oracle} | {hold} |")
    return header + "\n".join(lines) + "\n"


def _sharpe_cell(method: dict[str, Any]) -> str:
    text = spread_cell(method["sharpe"])
    half_width = method["sharpe_ci_half_width"]["median"]
    return text if half_width is None else f"{text} ±{half_width:.2f}"
