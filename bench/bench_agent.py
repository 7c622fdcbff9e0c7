"""Speed of the agent and its evaluation: backtest + metrics, block bootstrap, policy update, TradingPolicy.

    .venv/bin/python -m bench.bench_agent [--threads 1 2] [--repeats 5]

Prints one JSON object per measurement (median and best of the repeats, and this process's CPU time,
less sensitive than wall time on a shared machine; a measurement stops repeating after ~15 s):

* `backtest+metrics`: `run_backtest` + `compute_metrics` of random positions over 1,000,000 bars.
* `bootstrap_sharpe`: the evaluation's paired block bootstrap (`EvaluationConfig` defaults: 1000 samples,
  blocks of 288 bars) of the 26 series `evaluate_policy` resamples (agent, the deterministic baselines and
  20 random traders) over the test window of the bundled sample under the demo config's split.
* `policy_update`: one `ActorCritic.update` (imagine H steps from the start states, λ-returns, one
  backward, one Adam step), exactly what `train_policy` times as `time/update_ms`, at the demo config's
  sizes and at the seed's defaults (1024 starts, H = 15), on the CPU with each thread count (and CUDA if
  present). Start states are posteriors of random observations; the speed does not depend on the values.
* `TradingPolicy.target_positions`: the demo-size policy (randomly initialised: same cost as a trained
  one) trading that test window bar by bar, as `evaluate_policy` does; it always runs on one thread.

The test window comes from the bundled BTCUSDT sample (`dreamer.paths.SAMPLE_CSV`), ingested and
featurised into a temporary DuckDB file (a few seconds, not timed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamer.agent.actor_critic import ActorCritic
from dreamer.agent.imagination import agent_input_size
from dreamer.agent.networks import Actor
from dreamer.agent.policy import TradingPolicy
from dreamer.agent.portfolio import Portfolio
from dreamer.config import load_config
from dreamer.data import store
from dreamer.data.ingest import ingest_csv
from dreamer.evaluation.backtest import evaluation_window, run_backtest
from dreamer.evaluation.baselines import DETERMINISTIC_BASELINES
from dreamer.evaluation.config import EvaluationConfig
from dreamer.evaluation.metrics import bootstrap_sharpe, compute_metrics, periods_per_year
from dreamer.features.build import build_features
from dreamer.features.dataset import MarketDataset
from dreamer.features.split import make_dataset
from dreamer.model.config import DreamerConfig
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.paths import SAMPLE_CSV

PERIODS_5M = periods_per_year("5")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def timed(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
    max_seconds: float = 15.0,
) -> dict:
    """Median and best wall time, and median CPU time of this process, over `repeats` calls after `warmup`
    (fewer once the timed calls took `max_seconds`: a thrashing machine must not stall the whole run)."""
    for _ in range(warmup):
        fn()
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    while len(seconds) < repeats and sum(seconds) < max_seconds:
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        sync()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return {
        "median_s": statistics.median(seconds),
        "best_s": min(seconds),
        "cpu_median_s": statistics.median(cpu_seconds),
        "repeats": len(seconds),
    }


def ms(timing: dict) -> dict[str, float | int]:
    return {
        "ms_median": round(timing["median_s"] * 1e3, 1),
        "ms_best": round(timing["best_s"] * 1e3, 1),
        "cpu_ms_median": round(timing["cpu_median_s"] * 1e3, 1),
        "repeats": timing["repeats"],
    }


def sample_dataset(cfg_name: str) -> MarketDataset:
    """The bundled sample, featurised and split as `dreamer run --config <cfg_name>` would."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        ingest_csv(db, SAMPLE_CSV, "linear", "BTCUSDT", "5")
        con = store.connect(db, read_only=True)
        try:
            features = build_features(con, "linear", "BTCUSDT", "5")
        finally:
            con.close()
    return make_dataset(features, load_config(cfg_name).split)


def bench_backtest(bars: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    positions = rng.choice(DreamerConfig().position_levels, bars)
    log_returns = rng.normal(0.0, 2e-3, bars)
    cost_rate = DreamerConfig().cost_rate
    timing = timed(lambda: compute_metrics(run_backtest(positions, log_returns, cost_rate), PERIODS_5M), repeats)
    emit(
        {
            "bench": "backtest+metrics",
            "bars": bars,
            **ms(timing),
            "million_bars_per_s": round(bars / timing["median_s"] / 1e6, 1),
        }
    )


def bench_bootstrap(dataset: MarketDataset, repeats: int) -> None:
    cfg = EvaluationConfig()
    n = len(evaluation_window(dataset, "test").rows)
    rng = np.random.default_rng(0)
    names = ["agent", *DETERMINISTIC_BASELINES] + [f"random_{i}" for i in range(cfg.random_baseline_seeds)]
    series = {name: rng.normal(0.0, 2e-3, n) for name in names}
    timing = timed(
        lambda: bootstrap_sharpe(series, PERIODS_5M, cfg.bootstrap_block, cfg.bootstrap_samples, seed=0),
        repeats,
        warmup=0,
    )
    emit(
        {
            "bench": "bootstrap_sharpe",
            "bars": n,
            "series": len(series),
            "samples": cfg.bootstrap_samples,
            "block": cfg.bootstrap_block,
            "s_median": round(timing["median_s"], 3),
            "s_best": round(timing["best_s"], 3),
            "cpu_s_median": round(timing["cpu_median_s"], 3),
            "repeats": repeats,
        }
    )


def bench_policy_update(
    name: str, cfg: DreamerConfig, obs_dim: int, device: torch.device, repeats: int, threads: int | None
) -> None:
    torch.manual_seed(cfg.seed)
    world_model = WorldModel(obs_dim, cfg).to(device).eval().requires_grad_(False)
    agent = ActorCritic(world_model, cfg).to(device)
    num_starts = min(cfg.imagination_starts, cfg.batch_size * cfg.sequence_length)
    with torch.no_grad():
        posterior = world_model.observe(torch.randn(cfg.batch_size, cfg.sequence_length, obs_dim, device=device))
    posterior = posterior.flatten()  # h [B·T, D], z [B·T, S·K]
    start = RSSMState(posterior.h[:num_starts], posterior.z[:num_starts])
    lanes = Portfolio.flat(num_starts, device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    timing = timed(lambda: agent.update(world_model, start, lanes), repeats, warmup=1, sync=sync)
    emit(
        {
            "bench": "policy_update",
            "config": name,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
            "threads": threads,
            "starts": num_starts,
            "horizon": cfg.imagination_horizon,
            "deterministic": cfg.deterministic_size,
            "stochastic": f"{cfg.stochastic_size}x{cfg.num_categories}",
            "hidden": cfg.hidden_size,
            **ms(timing),
            "imagined_steps_per_s": round(num_starts * cfg.imagination_horizon / timing["median_s"]),
        }
    )


def bench_trading_policy(dataset: MarketDataset, cfg: DreamerConfig, repeats: int) -> None:
    torch.manual_seed(cfg.seed)
    world_model = WorldModel(dataset.num_features, cfg)
    policy = TradingPolicy(world_model, Actor(agent_input_size(world_model), cfg), cfg)
    rows = evaluation_window(dataset, "test").rows
    obs, close = dataset.obs[rows], dataset.close[rows]

    def trade() -> None:
        policy.reset()
        policy.target_positions(obs, close)

    timing = timed(trade, repeats)
    emit(
        {
            "bench": "TradingPolicy.target_positions",
            "config": "demo",
            "bars": len(rows),
            "features": dataset.num_features,
            "world_model_uses_action": cfg.world_model_uses_action,
            "threads": 1,
            "s_median": round(timing["median_s"], 3),
            "s_best": round(timing["best_s"], 3),
            "cpu_s_median": round(timing["cpu_median_s"], 3),
            "bars_per_s_median": round(len(rows) / timing["median_s"]),
            "repeats": repeats,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts for updates")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    demo = load_config("demo").dreamer
    dataset = sample_dataset("demo")

    torch.set_num_threads(1)
    bench_backtest(1_000_000, args.repeats)
    bench_bootstrap(dataset, repeats=2)
    bench_trading_policy(dataset, demo, repeats=2)
    for count in args.threads:
        torch.set_num_threads(count)
        for name, cfg in (("demo", demo), ("default", DreamerConfig())):
            bench_policy_update(name, cfg, dataset.num_features, torch.device("cpu"), args.repeats, count)
    torch.set_num_threads(default_threads)
    if torch.cuda.is_available():
        for name, cfg in (("demo", demo), ("default", DreamerConfig())):
            bench_policy_update(name, cfg, dataset.num_features, torch.device("cuda"), args.repeats * 4, None)


if __name__ == "__main__":
    main()
