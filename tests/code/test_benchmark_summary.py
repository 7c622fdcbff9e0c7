"""The known-answer benchmark's verdicts, on hand-made case results (no training)."""

from __future__ import annotations

from typing import Any

import pytest

from dreamer.benchmark import BenchmarkCase, cases, markdown_table, summarise
from dreamer.errors import ConfigError


def result(market: str, seed: int, agent: float, oracle: float, se: float = 2.0, **extra: Any) -> dict[str, Any]:
    return {
        "case": f"{market}-seed{seed}",
        "market": market,
        "seed": seed,
        "agent": {"sharpe": agent, "sharpe_se": se, "degenerate": extra.get("degenerate", False)},
        "oracle": {"sharpe": oracle, "direction_accuracy": 0.53, "vol_forecast_corr": extra.get("oracle_vol", 0.3)},
        "world_model": {
            "direction_accuracy": 0.52,
            "vol_forecast_corr": extra.get("wm_vol", 0.25),
            "forecast_corr_with_oracle": 0.6,
        },
        "fraction_of_oracle_sharpe": agent / oracle if oracle else None,
        "fraction_of_oracle_vol_corr": extra.get("wm_vol", 0.25) / extra.get("oracle_vol", 0.3),
        "seconds": {"total": 180.0},
    }


def test_directional_markets_pass_on_the_median_fraction_of_the_oracle() -> None:
    runs = [result("regime", 0, 6.0, 15.0), result("regime", 1, 9.0, 15.0), result("regime", 2, 1.0, 15.0)]
    summary = summarise(runs, target_fraction=0.5)["regime"]
    assert summary["fraction_of_oracle_sharpe"] == {"median": 0.4, "min": pytest.approx(1 / 15), "max": 0.6}
    assert summary["passed"] is False
    runs[2] = result("regime", 2, 8.0, 15.0)
    assert summarise(runs, target_fraction=0.5)["regime"]["passed"] is True


def test_garch_passes_on_the_volatility_forecast_not_on_sharpe() -> None:
    runs = [result("garch", s, 0.0, 0.0, wm_vol=0.2, oracle_vol=0.3) for s in range(3)]
    row = summarise(runs)["garch"]
    assert row["fraction_of_oracle_vol_corr"]["median"] == pytest.approx(2 / 3)
    assert row["passed"] is True and row["agent_sharpe"]["median"] == 0.0
    weak = [result("garch", s, 0.0, 0.0, wm_vol=0.1, oracle_vol=0.3) for s in range(3)]
    assert summarise(weak)["garch"]["passed"] is False


def test_random_walk_fails_when_any_seed_finds_a_significant_profit_and_the_control_must_find_one() -> None:
    clean = [result("random_walk", s, 1.0, 0.0, se=3.0) for s in range(3)]
    assert summarise(clean)["random_walk"]["passed"] is True
    flat = [result("random_walk", s, 0.0, 0.0, se=0.0) for s in range(3)]  # never trades: no Sharpe, no SE
    assert summarise(flat)["random_walk"]["passed"] is True
    leaky = [*clean[:2], result("random_walk", 2, 10.0, 0.0, se=3.0)]  # 3.3 standard errors
    assert summarise(leaky)["random_walk"]["passed"] is False
    control = [result("random_walk_leaked", s, 50.0, 170.0, se=5.0) for s in range(3)]
    assert summarise(control)["random_walk_leaked"]["passed"] is True
    blind = [*control[:2], result("random_walk_leaked", 2, 0.0, 170.0, se=0.0)]
    assert summarise(blind)["random_walk_leaked"]["passed"] is False


def test_table_has_a_row_per_market_with_its_verdict() -> None:
    runs = [result("regime", 0, 9.0, 15.0), result("ou", 0, 3.0, 15.0, degenerate=True)]
    table = markdown_table(summarise(runs))
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| market (synthetic) |")
    assert lines[2].startswith("| regime | 1 | 9.00 | 15.00 | 60% |") and lines[2].endswith("| yes |")
    assert lines[3].startswith("| ou | 1 | 3.00 |") and "| 1/1 |" in lines[3] and lines[3].endswith("| no |")


def test_cases_are_labelled_synthetic_and_unknown_markets_refused() -> None:
    assert [c.name for c in cases(["regime", "random_walk_leaked"], [0, 1])] == [
        "regime-seed0",
        "regime-seed1",
        "random_walk_leaked-seed0",
        "random_walk_leaked-seed1",
    ]
    assert BenchmarkCase("random_walk_leaked", 0).symbol == "SYNRANDOMWALKLEAKED"
    with pytest.raises(ConfigError, match="unknown market"):
        cases(["btc"], [0])
    with pytest.raises(ConfigError, match="at least one seed"):
        cases(["regime"], [])
