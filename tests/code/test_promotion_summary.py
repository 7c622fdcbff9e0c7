"""Code tier: the Markdown run summary (Prefect artifact) says what happened, including when it failed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dreamer.evaluation.report import position_concentration
from dreamer.orchestration.summary import render_summary, validation_markdown

VALIDATION: dict[str, Any] = {
    "status": "failed",
    "rows": 5_964,
    "first_open_time": "2026-07-01T00:00Z",
    "last_open_time": "2026-07-21T16:55Z",
    "missing_bars": 12,
    "gap_fraction": 0.002,
    "outcomes": [
        {"name": "enough_rows", "severity": "failure", "description": "at least 10,000 rows", "success": False,
         "unexpected_count": None, "observed_value": 5964},
        {"name": "no_gaps", "severity": "warning", "description": "no missing bars", "success": False,
         "unexpected_count": 12, "element_count": 5964},
        {"name": "positive_prices", "severity": "failure", "description": "prices > 0", "success": True},
    ],
    "report_html": "/runs/x/validation/report.html",
}  # fmt: skip

METRICS = {"sharpe": 1.234, "sortino": 2.0, "max_drawdown": 0.052, "total_return": 0.0123,
           "total_return_ex_funding": 0.0150, "fees_paid": 0.0031, "funding_paid": 0.0027, "turnover": 0.01,
           "num_trades": 42}  # fmt: skip


def completed_run() -> dict[str, Any]:
    return {
        "market": {"category": "linear", "symbol": "BTCUSDT", "interval": "5"},
        "status": "Completed",
        "ingest": {"source": "bybit", "rows_inserted": 288, "rows_updated": 0, "rows_unchanged": 0,
                   "effective_start": "2025-11-24T00:15Z", "effective_end": "2026-11-24T00:10Z"},
        "validation": {**VALIDATION, "status": "passed", "outcomes": VALIDATION["outcomes"][2:]},
        "data": {"rows": 100_000, "first_open_time": "2025-11-25", "last_open_time": "2026-11-24",
                 "content_hash": "ab" * 32, "splits": {"test": {"start": "2026-10-01", "end": "2026-11-24",
                                                               "rows": 15_000}}},
        "features_cached": True,
        "warm_start": {"source": "champion", "checkpoint": "/runs/x/model.pt", "model": "dreamer-linear-btcusdt-5/6"},
        "world_model": {"steps": 20_000, "seconds": 1200.0},
        "policy": {
            "steps": 12_000,
            "seconds": 900.0,
            "final_metrics": {"selection/best_step": 8_000.0, "selection/stopped_early": 1.0},
        },
        "evaluation": {
            "window": {"start": "2026-10-01", "end": "2026-11-24", "bars": 15_000, "cost_rate": 0.00065},
            "agent": {**METRICS, "sharpe_ci": [0.2, 2.1]},
            "baselines": {"buy_and_hold": {**METRICS, "sharpe": 0.5, "sortino": math.nan}, "flat": {"sharpe": None}},
            "comparison": {"buy_and_hold": {"beats": True, "significant": False}, "flat": {"beats": True,
                                                                                      "significant": True}},
            "world_model": {"return_mae_bps": 12.5, "coverage_90": 0.88},
            "tearsheet": "/runs/x/evaluation/t.html",
        },
        "promotion": {
            "model_name": "dreamer-linear-btcusdt-5",
            "version": "7",
            "decision": {"alias": "challenger", "promote": False,
                         "reasons": ["candidate sharpe=1.234 does not beat champion v6 sharpe=1.5"]},
            "champion": {"version": "6", "metrics": {**METRICS, "sharpe": 1.5}},
            "latest": {"target_position": -0.5, "bar_open_time": "2026-11-24T00:10:00+00:00"},
        },
        "mlflow": {"run_id": "abc123", "experiment_id": "1", "url": "http://127.0.0.1:5000/#/experiments/1/runs/abc",
                   "runs_table_url": "http://127.0.0.1:5000/#/experiments/1/runs?orderByKey=x",
                   "tearsheet_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc/artifactPath/tearsheet/t.html"},
    }  # fmt: skip


COMPLETED_RUN_FRAGMENTS = [
    "**Status:** Completed",
    "features reused from the cache",
    "`abababababababab`",
    "| test | 2026-10-01 | 2026-11-24 | 15,000 |",
    "**PASSED**",
    "- started from the champion dreamer-linear-btcusdt-5/6",
    "- world model: 20,000 steps in 1200 s\n",
    "- policy: 12,000 steps in 900 s; kept the weights of step 8,000 (best on the val split, stopped early)",
    "| **agent** (CI 0.20 .. 2.10) | 1.23 | 2.00 | 5.2% | +1.23% | +1.50% | 0.31% | +0.27% | 0.010 | 42 |",
    "| champion v6 (same window) | 1.50 |",
    "| buy and hold | 0.50 | n/a |",  # NaN shown as n/a
    "| flat | n/a |",
    "Agent beats on Sharpe: buy_and_hold, flat; significantly",
    ": flat.",
    "cost 0.065% per unit",
    "`dreamer-linear-btcusdt-5` version 7 registered as **challenger**",
    "- candidate sharpe=1.234 does not beat champion v6",
    "**-0.50**",
    "[open in MLflow](http://127.0.0.1:5000/#/experiments/1/runs/abc)",
    "[runs table, best agent Sharpe first](http://127.0.0.1:5000/#/experiments/1/runs?orderByKey=x)",
    "Tear sheet: [t.html](http://127.0.0.1:5000/#/experiments/1/runs/abc/artifactPath/tearsheet/t.html)",
]


def test_completed_run_summary_has_every_section() -> None:
    markdown = render_summary(completed_run())
    assert markdown.startswith("# dreamer: BTCUSDT 5 (linear)")
    missing = [fragment for fragment in COMPLETED_RUN_FRAGMENTS if fragment not in markdown]
    assert not missing, markdown


def test_without_a_known_mlflow_ui_the_summary_names_the_store_and_the_tear_sheet_file() -> None:
    run = completed_run()
    run["mlflow"] = {"run_id": "abc123", "experiment_id": "1", "tracking_uri": "sqlite:////x/mlflow.db"}
    markdown = render_summary(run)
    assert "tracking URI `sqlite:////x/mlflow.db`" in markdown and "runs table" not in markdown
    assert "Tear sheet: `/runs/x/evaluation/t.html`" in markdown
    del run["evaluation"]["tearsheet"]
    assert "Tear sheet" not in render_summary(run)


def test_failed_run_summary_shows_the_error_and_what_was_done() -> None:
    run = {
        "market": {"category": "linear", "symbol": "BTCUSDT", "interval": "5"},
        "status": "Failed",
        "error": "DataValidationError: linear/BTCUSDT/5: 1 validation failure(s)",
        "validation": VALIDATION,
        "mlflow": {"run_id": "abc", "experiment_id": "1", "tracking_uri": "sqlite:////x/mlflow.db"},
    }
    markdown = render_summary(run)
    assert "**Status:** Failed" in markdown and "DataValidationError" in markdown
    assert "## Held-out backtest" not in markdown and "## Promotion" not in markdown
    assert "tracking URI `sqlite:////x/mlflow.db`" in markdown


def test_validation_report_lists_failures_and_warnings() -> None:
    markdown = validation_markdown(VALIDATION)
    assert "**FAILED**: 5,964 rows" in markdown and "1 of 3 expectations met" in markdown
    assert "| enough_rows | failure | at least 10,000 rows: observed 5964 |" in markdown
    assert "| no_gaps | warning | no missing bars: 12 of 5,964 rows |" in markdown
    assert "positive_prices" not in markdown
    assert "Full report: `/runs/x/validation/report.html`" in markdown


def test_a_policy_that_holds_one_position_is_flagged_degenerate() -> None:
    run = completed_run()
    assert "Degenerate policy" not in render_summary(run)
    run["evaluation"]["agent"] |= {"degenerate": True, "dominant_position": -0.5, "dominant_position_share": 0.994}
    markdown = render_summary(run)
    assert "**Degenerate policy**: the agent holds position -0.5 on 99.4% of the test bars" in markdown
    assert markdown.index("Degenerate policy") < markdown.index("| strategy |")


def test_position_concentration_flags_one_position_held_on_95_percent_of_bars() -> None:
    held = np.r_[np.full(95, 1.0), np.linspace(-1, 0, 5)]
    assert position_concentration(held) == {
        "dominant_position": 1.0,
        "dominant_position_share": 0.95,
        "degenerate": True,
    }
    assert position_concentration(np.r_[np.full(94, 1.0), np.zeros(6)])["degenerate"] is False
    drifting_long = np.r_[np.linspace(0.96, 0.999, 96), np.full(4, -1.0)]  # a band actor's near-constant long
    assert position_concentration(drifting_long) == {
        "dominant_position": 1.0,
        "dominant_position_share": 0.96,
        "degenerate": True,
    }
