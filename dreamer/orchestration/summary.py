"""The Markdown summary of a pipeline run (the Prefect artifact `dreamer-run-summary`).

`render_summary` is a pure function of the dict the flow accumulates stage by stage, so a failed run
gets a summary of what it did before failing (with the validation report when the gate stopped it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dreamer.features.validate import FundingSummary

STRATEGY_COLUMNS = (
    ("sharpe", "net Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("max_drawdown", "max DD", "{:.1%}"),
    ("total_return", "total return", "{:+.2%}"),
    ("total_return_ex_funding", "before funding", "{:+.2%}"),
    ("fees_paid", "fees", "{:.2%}"),
    ("funding_paid", "funding paid", "{:+.2%}"),
    ("turnover", "turnover/bar", "{:.3f}"),
    ("num_trades", "trades", "{:,.0f}"),
)


def render_summary(run: Mapping[str, Any]) -> str:
    """Markdown for the run summarised in `run` (keys: market, status, error, flow_run, ingest,
    validation, data, world_model, policy, evaluation, promotion, mlflow; any may be missing)."""
    market = run.get("market", {})
    title = f"# dreamer: {market.get('symbol', '?')} {market.get('interval', '?')} ({market.get('category', '?')})"
    lines = [title, "", f"**Status:** {run.get('status', 'running')}"]
    if run.get("error"):
        lines += ["", "```", str(run["error"]).strip(), "```"]
    lines += _data(run)
    lines += _validation(run.get("validation"))
    lines += _training(run)
    lines += _evaluation(run.get("evaluation"), run.get("promotion"))
    lines += _promotion(run.get("promotion"))
    lines += _mlflow(run.get("mlflow"), run.get("evaluation"))
    return "\n".join(lines).rstrip() + "\n"


def validation_markdown(summary: Mapping[str, Any]) -> str:
    """The validation report on its own (the artifact attached to a run the gate failed)."""
    return "\n".join(["# Kline validation", *_validation(summary)]).strip() + "\n"


def _data(run: Mapping[str, Any]) -> list[str]:
    ingest, data = run.get("ingest"), run.get("data")
    if not ingest and not data:
        return []
    lines = ["", "## Data"]
    if ingest:
        lines.append(
            f"- ingest ({ingest.get('source')}): {ingest.get('rows_inserted', 0):,} new, "
            f"{ingest.get('rows_updated', 0):,} updated, {ingest.get('rows_unchanged', 0):,} unchanged; "
            f"stored range {ingest.get('effective_start')} .. {ingest.get('effective_end')}"
        )
    if data:
        cached = " (features reused from the cache)" if run.get("features_cached") else ""
        lines.append(
            f"- used: {data.get('rows', 0):,} bars {data.get('first_open_time')} .. {data.get('last_open_time')}, "
            f"content hash `{str(data.get('content_hash'))[:16]}`{cached}"
        )
        splits = data.get("splits") or {}
        if splits:
            lines += ["", "| split | from | to | bars |", "|---|---|---|---:|"]
            lines += [
                f"| {name} | {b.get('start')} | {b.get('end')} | {b.get('rows', 0):,} |" for name, b in splits.items()
            ]
    return lines


def _validation(summary: Mapping[str, Any] | None) -> list[str]:
    if not summary:
        return []
    outcomes = summary.get("outcomes", [])
    met = sum(bool(o.get("success")) for o in outcomes)
    lines = [
        "",
        "## Validation",
        f"**{str(summary.get('status', '?')).upper()}**: {summary.get('rows', 0):,} rows "
        f"{summary.get('first_open_time')} .. {summary.get('last_open_time')}, "
        f"{summary.get('missing_bars', 0):,} missing bars ({_fmt(summary.get('gap_fraction'), '{:.3%}')}); "
        f"{met} of {len(outcomes)} expectations met.",
    ]
    if summary.get("funding"):
        lines.append(f"{FundingSummary(**summary['funding']).line()}.")
    failed = [o for o in outcomes if not o.get("success")]
    if failed:
        lines += ["", "| check | severity | detail |", "|---|---|---|"]
        for outcome in failed:
            counts = (
                f"{outcome['unexpected_count']:,} of {outcome.get('element_count') or 0:,} rows"
                if outcome.get("unexpected_count") is not None
                else f"observed {outcome.get('observed_value')}"
            )
            lines.append(
                f"| {outcome.get('name')} | {outcome.get('severity')} | {outcome.get('description')}: {counts} |"
            )
    if summary.get("report_html"):
        lines.append(f"\nFull report: `{summary['report_html']}`")
    return lines


def _training(run: Mapping[str, Any]) -> list[str]:
    parts = []
    start = run.get("warm_start")
    if start:
        where = f"the champion {start['model']}" if start["source"] == "champion" else f"scratch ({start['reason']})"
        parts.append(f"- started from {where}")
    for key, label in (("world_model", "world model"), ("policy", "policy")):
        stage = run.get(key)
        if stage:
            line = f"- {label}: {stage.get('steps', 0):,} steps in {stage.get('seconds', 0.0):.0f} s"
            final = stage.get("final_metrics") or {}
            if "selection/best_step" in final:
                stopped = ", stopped early" if final.get("selection/stopped_early") else ""
                line += (
                    f"; kept the weights of step {final['selection/best_step']:,.0f} (best on the val split{stopped})"
                )
            parts.append(line)
    return ["", "## Training", *parts] if parts else []


def _evaluation(evaluation: Mapping[str, Any] | None, promotion: Mapping[str, Any] | None) -> list[str]:
    if not evaluation:
        return []
    window = evaluation.get("window", {})
    lines = [
        "",
        "## Held-out backtest",
        f"Test split {window.get('start')} .. {window.get('end')}, {window.get('bars', 0):,} bars, "
        f"cost {_fmt(window.get('cost_rate'), '{:.3%}')} per unit of position change; funding paid at every "
        "settlement a position is held through (negative: received), as a share of the starting equity.",
        "",
        "| strategy | " + " | ".join(label for _, label, _ in STRATEGY_COLUMNS) + " |",
        "|---|" + "---:|" * len(STRATEGY_COLUMNS),
    ]
    agent = evaluation.get("agent", {})
    ci = agent.get("sharpe_ci")
    ci_text = f" (CI {ci[0]:.2f} .. {ci[1]:.2f})" if _finite_pair(ci) else ""
    lines.append(_row("**agent**" + ci_text, agent))
    if agent.get("degenerate"):
        lines.insert(
            4,
            f"> **Degenerate policy**: the agent holds position {agent.get('dominant_position'):+g} on "
            f"{agent.get('dominant_position_share', 0.0):.1%} of the test bars: a constant bet, not a trading "
            "rule. Its numbers say how that bet did in this window, not that the agent learned anything.\n",
        )
    champion = (promotion or {}).get("champion")
    if champion and champion.get("metrics"):
        lines.append(_row(f"champion v{champion.get('version')} (same window)", champion["metrics"]))
    for name, metrics in (evaluation.get("baselines") or {}).items():
        lines.append(_row(name.replace("_", " "), metrics))
    comparison = evaluation.get("comparison") or {}
    if comparison:
        beats = [name for name, c in comparison.items() if c.get("beats")]
        significant = [name for name, c in comparison.items() if c.get("significant")]
        lines.append(
            f"\nAgent beats on Sharpe: {', '.join(beats) or 'none'}; significantly (whole bootstrap CI of the "
            f"difference above 0): {', '.join(significant) or 'none'}."
        )
    forecast = evaluation.get("world_model") or {}
    numbers = {k: v for k, v in forecast.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if numbers:
        lines.append("\nWorld-model forecasts: " + ", ".join(f"{k} {v:.4g}" for k, v in list(numbers.items())[:8]))
    return lines


def _promotion(promotion: Mapping[str, Any] | None) -> list[str]:
    if not promotion:
        return []
    decision = promotion["decision"]
    verdict = "promoted to **champion**" if decision["promote"] else "registered as **challenger**"
    lines = ["", "## Promotion", f"`{promotion['model_name']}` version {promotion['version']} {verdict}."]
    lines += [f"- {reason}" for reason in decision.get("reasons", [])]
    latest = promotion.get("latest")
    if latest:
        lines.append(
            f"\nIts target position for the latest stored bar ({latest.get('bar_open_time')}): "
            f"**{latest.get('target_position'):+.2f}**"
        )
    return lines


def _mlflow(info: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None) -> list[str]:
    """The run in MLflow, the runs table to compare it in and the tear sheet: links when an MLflow UI is
    known (`url`, `runs_table_url`, `tearsheet_url`), else the tracking URI and the local file."""
    if not info:
        return []
    where = f"[open in MLflow]({info['url']})" if info.get("url") else f"tracking URI `{info.get('tracking_uri')}`"
    lines = ["", "## MLflow", f"Run `{info.get('run_id')}` (experiment {info.get('experiment_id')}): {where}"]
    if info.get("runs_table_url"):
        lines.append(f"\nCompare with other runs: [runs table, best agent Sharpe first]({info['runs_table_url']})")
    tearsheet = (evaluation or {}).get("tearsheet")
    if info.get("tearsheet_url"):
        lines.append(f"\nTear sheet: [{Path(str(tearsheet)).name}]({info['tearsheet_url']}) (parent run artifact)")
    elif tearsheet:
        lines.append(f"\nTear sheet: `{tearsheet}`")
    return lines


def _row(label: str, metrics: Mapping[str, Any]) -> str:
    return f"| {label} | " + " | ".join(_fmt(metrics.get(key), fmt) for key, _, fmt in STRATEGY_COLUMNS) + " |"


def _fmt(value: Any, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return fmt.format(value)


def _finite_pair(value: Sequence[Any] | None) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    )
