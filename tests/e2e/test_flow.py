"""The `dreamer` flow under Prefect's test harness: two runs on a slice of the bundled sample with the tiny
config, then a run the validation gate stops.

Run 1 ends Completed with a parent MLflow run (tags, config params, headline metrics, data identity),
a finished nested run per stage, step-wise training curves, plots, a registered version that becomes
champion, and the Prefect summary artifact. Run 2 reuses the cached features, re-evaluates the champion
on the same window (reproducing run 1's numbers exactly) and, being the same model, is not promoted.
In a store of its own, a champion whose artifacts were deleted gives way to the next run's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dreamer.evaluation.baselines import BASELINE_NAMES
from dreamer.paths import BUNDLED_CONFIGS_DIR

pytestmark = pytest.mark.slow
LOOSE_GUARD_RAILS = "promotion:\n  max_drawdown_limit: 1.0\n  metric_floor: null\n"
"""An agent trained 20 steps loses money: without these, the tiny config would never produce a champion."""

START = "2026-06-01"  # ~50 days of the sample: ~8,300 bars after the week-long warm-up and the two purges
STAGES = {"ingest", "validate", "features", "world_model", "policy", "ppo", "evaluate", "promote"}


@pytest.fixture(scope="module")
def harness(flow_env: dict[str, Any]) -> dict[str, Any]:
    """`flow_env` (a Prefect test server, MLflow store and runs dir in a temp dir) and a tiny config."""
    config = flow_env["root"] / "tiny.yaml"
    config.write_text((BUNDLED_CONFIGS_DIR / "tiny.yaml").read_text() + LOOSE_GUARD_RAILS)
    return {**flow_env, "config": str(config)}


def run_flow(harness: dict[str, Any], **overrides: Any) -> Any:
    from flows.pipeline import dreamer_flow

    params = {"source": "sample", "config": harness["config"], "db_path": harness["db"], "start": START}
    return dreamer_flow(**(params | overrides), return_state=True)


def mlflow_client(harness: dict[str, Any]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(harness["MLFLOW_TRACKING_URI"], harness["MLFLOW_TRACKING_URI"])


def runs_of(client: Any, flow_run_id: str) -> tuple[Any, dict[str, Any]]:
    """(parent run, {stage: nested run}) of one flow run."""
    experiment = client.get_experiment_by_name("dreamer")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'"
    )
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return parent, {run.data.tags["dreamer.stage"]: run for run in children}


def artifact_markdown(key: str, flow_run_id: str) -> str:
    """The Markdown of artifact `key` created by flow run `flow_run_id`."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    assert len(artifacts) == 1, f"{len(artifacts)} artifacts {key!r} for flow run {flow_run_id}"
    return str(artifacts[0].data)


def test_two_runs_champion_then_same_model_is_not_promoted(harness: dict[str, Any]) -> None:
    first = run_flow(harness)
    assert first.is_completed(), first.message
    summary = first.result()
    client = mlflow_client(harness)
    parent, stages = runs_of(client, str(first.state_details.flow_run_id))

    # --- the parent run: tags, the full config, headline metrics, the data's identity -------------------
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["symbol"] == "BTCUSDT" and tags["interval"] == "5" and tags["config"] == "tiny"
    assert len(tags["git_commit"]) >= 40 or tags["git_commit"] == "unknown"
    assert tags["data.first_open_time"].startswith("2026-06-0") and tags["data.last_open_time"].startswith("2026-07-21")
    assert tags["promotion.decision"] == "champion"
    params = parent.data.params
    assert params["dreamer.world_model_steps"] == "20" and params["promotion.metric_floor"] == "null"
    assert params["data.source"] == "sample" and params["data.start"] == START
    for key in ("agent.sharpe", "agent.max_drawdown", "baselines.buy_and_hold.sharpe", "baselines.flat.total_return"):
        assert key in parent.data.metrics, key
    (dataset_input,) = parent.inputs.dataset_inputs
    assert dataset_input.dataset.digest == summary["data"]["content_hash"][:16]
    assert dataset_input.dataset.source_type == "duckdb"
    assert "summary.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # --- one finished nested run per stage, with its own content ----------------------------------------
    assert set(stages) == STAGES
    assert all(run.info.status == "FINISHED" for run in stages.values())
    assert stages["validate"].data.tags["status"] == "passed"
    assert {a.path for a in client.list_artifacts(stages["validate"].info.run_id, "validation")} >= {
        "validation/report.html",
        "validation/summary.json",
    }
    assert "feature_stats.json" in {a.path for a in client.list_artifacts(stages["features"].info.run_id)}
    world_model_curve = client.get_metric_history(stages["world_model"].info.run_id, "loss/total")
    assert len(world_model_curve) == 20 and [m.step for m in world_model_curve] == list(range(1, 21))
    policy_curve = client.get_metric_history(stages["policy"].info.run_id, "imagined/return")
    assert [m.step for m in policy_curve] == list(range(1, 21))  # each step once
    assert len(stages["policy"].data.metrics) > 5
    evaluate_run = stages["evaluate"]
    plots = {a.path for a in client.list_artifacts(evaluate_run.info.run_id, "plots")}
    assert {"plots/equity.png", "plots/drawdown.png", "plots/positions.png", "plots/imagined_vs_real.png"} <= plots
    assert {"baselines.momentum.sharpe", "baselines.ppo.sharpe"} <= set(evaluate_run.data.metrics)
    assert stages["ppo"].data.metrics["timesteps"] == 256
    assert any(key.startswith("world_model.") for key in evaluate_run.data.metrics)
    diagnostics = {"diagnostics.critic.corr", "diagnostics.imagination.realised_turnover", "agent.sharpe_se"}
    assert diagnostics <= set(evaluate_run.data.metrics)
    assert "trace.npz" in {a.path for a in client.list_artifacts(evaluate_run.info.run_id)}

    # --- the registry: version 1 is champion, with the decision as tags -------------------------------------
    promotion = summary["promotion"]
    assert promotion["model_name"] == "dreamer-linear-btcusdt-5" and promotion["decision"]["promote"]
    champion = client.get_model_version_by_alias("dreamer-linear-btcusdt-5", "champion")
    assert str(champion.version) == promotion["version"]
    assert champion.tags["promotion.decision"] == "champion"
    assert "first model" in champion.tags["promotion.reasons"]
    assert champion.tags["data.content_hash"] == summary["data"]["content_hash"]
    assert -1.0 <= promotion["latest"]["target_position"] <= 1.0

    markdown = artifact_markdown("dreamer-run-summary", str(first.state_details.flow_run_id))
    assert "**Status:** Completed" in markdown and "## Held-out backtest" in markdown
    assert "promoted to **champion**" in markdown and "http://127.0.0.1:5000/#/experiments/" in markdown

    # --- run 2: cached features, the champion re-evaluated on the same window, a tie keeps it ------------
    second = run_flow(harness)
    assert second.is_completed(), second.message
    again = second.result()
    assert again["features_cached"] and again["data"] == summary["data"]
    decision = again["promotion"]["decision"]
    assert again["promotion"]["champion"]["version"] == promotion["version"]
    assert again["promotion"]["champion"]["metrics"] == summary["evaluation"]["agent"]  # same model, same window
    assert again["evaluation"]["agent"] == summary["evaluation"]["agent"]  # same seed, same data: same agent
    assert not decision["promote"] and decision["alias"] == "challenger"
    assert "does not beat champion" in decision["reasons"][0]
    assert (
        str(client.get_model_version_by_alias("dreamer-linear-btcusdt-5", "champion").version) == promotion["version"]
    )
    challenger = client.get_model_version_by_alias("dreamer-linear-btcusdt-5", "challenger")
    assert str(challenger.version) == again["promotion"]["version"]
    assert challenger.tags["promotion.decision"] == "challenger"
    _, second_stages = runs_of(client, str(second.state_details.flow_run_id))
    assert second_stages["features"].data.tags["cached"] == "true"


def test_the_parent_run_carries_what_runs_are_compared_by(
    harness: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in a store of their own: the parent run holds the resolved device, the headline scalars (the
    agent's Sharpe interval, the paired differences with every baseline and, on the second run, with the
    champion), the plots and the decision; the logged model holds the same numbers; the registered version
    the significance test."""
    import json

    from dreamer.training import resolve_device

    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    first, second = run_flow(harness), run_flow(harness)
    assert first.is_completed() and second.is_completed(), (first.message, second.message)
    client = mlflow_client(store)
    first_parent, _ = runs_of(client, str(first.state_details.flow_run_id))
    parent, _ = runs_of(client, str(second.state_details.flow_run_id))
    summary = second.result()
    evaluation, promotion = summary["evaluation"], summary["promotion"]

    assert parent.data.params["dreamer.device"] == str(resolve_device("auto"))
    assert parent.data.params["dreamer.device_requested"] == "auto"

    metrics = parent.data.metrics
    agent = evaluation["agent"]
    assert metrics["agent.sharpe"] == pytest.approx(agent["sharpe"])
    assert [metrics["agent.sharpe_ci_low"], metrics["agent.sharpe_ci_high"]] == pytest.approx(agent["sharpe_ci"])
    for key in ("max_drawdown", "turnover", "total_return", "funding_paid"):
        assert metrics[f"agent.{key}"] == pytest.approx(agent[key]), key
    assert set(evaluation["comparison"]) == {*BASELINE_NAMES, "ppo"}  # tiny trains the PPO baseline
    for name, comparison in evaluation["comparison"].items():
        assert metrics[f"vs_{name}.sharpe_diff"] == pytest.approx(comparison["sharpe_diff"])
        bounds = [metrics[f"vs_{name}.sharpe_diff_ci_low"], metrics[f"vs_{name}.sharpe_diff_ci_high"]]
        assert bounds == pytest.approx(comparison["sharpe_diff_ci"])
        assert metrics[f"vs_{name}.significant"] == float(comparison["significant"])
    assert "vs_champion.sharpe_diff" not in first_parent.data.metrics  # the first model had no champion
    # the same model against itself on the same window: a difference of exactly 0, not significant
    assert [metrics[f"vs_champion.sharpe_diff{end}"] for end in ("", "_ci_low", "_ci_high")] == [0.0, 0.0, 0.0]
    assert metrics["vs_champion.significant"] == 0.0 and metrics["promotion.promoted"] == 0.0
    assert metrics["champion.sharpe"] == pytest.approx(agent["sharpe"])

    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/equity.png", "plots/drawdown.png", "plots/positions.png", "plots/imagined_vs_real.png"} <= plots
    tags = parent.data.tags
    assert tags["promotion.decision"] == "challenger"
    assert tags["promotion.model"] == f"{promotion['model_name']}/{promotion['version']}"

    logged_model = client.get_logged_model(promotion["model_id"])
    assert json.loads(logged_model.tags["mlflow.modelVersions"]) == [
        {"name": promotion["model_name"], "version": int(promotion["version"])}
    ]
    model_metrics = {m.key: m.value for m in logged_model.metrics}
    for key in ("agent.sharpe", "agent.sharpe_ci_low", "vs_buy_and_hold.sharpe_diff", "vs_champion.sharpe_diff"):
        assert model_metrics[key] == pytest.approx(metrics[key]), key
    version = client.get_model_version(promotion["model_name"], promotion["version"])
    assert version.tags["promotion.significant"] == "false" and version.tags["promotion.require_significance"] == "true"
    assert (
        float(version.tags["promotion.sharpe_diff"]) == 0.0 and version.tags["promotion.significance_level"] == "0.05"
    )

    markdown = artifact_markdown("dreamer-run-summary", str(second.state_details.flow_run_id))
    experiment_id = parent.info.experiment_id
    assert f"(http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning&" in markdown


def test_validation_failure_fails_the_run_with_the_report(harness: dict[str, Any], tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text((BUNDLED_CONFIGS_DIR / "tiny.yaml").read_text().replace("min_rows: 500", "min_rows: 10000000"))
    state = run_flow(harness, config=str(strict))
    assert state.is_failed()
    assert "validation failure" in state.message

    flow_run_id = str(state.state_details.flow_run_id)
    report = artifact_markdown("validation-report", flow_run_id)
    assert "FAILED" in report and "enough_rows" in report
    assert "**Status:** Failed" in artifact_markdown("dreamer-run-summary", flow_run_id)

    client = mlflow_client(harness)
    parent, stages = runs_of(client, str(state.state_details.flow_run_id))
    assert parent.info.status == "FAILED"
    assert set(stages) == {"ingest", "validate"}
    assert stages["validate"].info.status == "FAILED" and stages["validate"].data.tags["status"] == "failed"
    artifacts = {a.path for a in client.list_artifacts(stages["validate"].info.run_id, "validation")}
    assert "validation/report.html" in artifacts


def test_a_champion_whose_artifacts_are_gone_gives_way_to_the_next_run(
    harness: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #12, finding 4: such a champion cannot be re-evaluated, which must not keep it champion for ever."""
    import shutil

    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"}  # a store of its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    first = run_flow(harness)
    assert first.is_completed(), first.message
    client = mlflow_client(store)
    name = first.result()["promotion"]["model_name"]
    broken = client.get_model_version_by_alias(name, "champion")
    logged_model_id = broken.source.removeprefix("models:/")  # the version's source is its logged model
    shutil.rmtree(client.get_logged_model(logged_model_id).artifact_location.removeprefix("file://"))

    second = run_flow(harness)
    assert second.is_completed(), second.message
    promotion = second.result()["promotion"]
    decision = promotion["decision"]
    assert decision["promote"] and decision["champion_version"] == str(broken.version)
    assert promotion["champion"] is None
    assert decision["reasons"][0].startswith(f"champion v{broken.version} could not be evaluated on this window")
    assert any(f"champion v{broken.version} could not be re-evaluated" in reason for reason in decision["reasons"])
    assert str(client.get_model_version_by_alias(name, "champion").version) == promotion["version"]
    assert client.get_model_version(name, broken.version).tags["promotion.replaced_by"] == promotion["version"]


def test_warm_start_fine_tunes_the_champion_and_says_when_it_cannot(
    harness: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"}  # no champion yet
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    config = tmp_path / "warm.yaml"
    config.write_text(Path(harness["config"]).read_text() + "warm_start: champion\n")
    client = mlflow_client(store)

    first = run_flow(harness, config=str(config))
    assert first.is_completed(), first.message
    scratch = {"source": "scratch", "reason": "dreamer-linear-btcusdt-5 has no champion yet"}
    assert first.result()["warm_start"] == scratch
    champion = client.get_model_version_by_alias("dreamer-linear-btcusdt-5", "champion")

    second = run_flow(harness, config=str(config))
    assert second.is_completed(), second.message
    start = second.result()["warm_start"]
    assert start["source"] == "champion" and start["model"] == f"dreamer-linear-btcusdt-5/{champion.version}"
    parent, _ = runs_of(client, str(second.state_details.flow_run_id))
    assert parent.data.tags["warm_start"] == "champion"
    assert parent.data.tags["warm_start.detail"] == start["model"]
    assert parent.data.params["warm_start"] == "champion"

    wider = tmp_path / "wider.yaml"
    wider.write_text(config.read_text().replace("hidden_size: 32", "hidden_size: 48"))
    third = run_flow(harness, config=str(wider))
    assert third.is_completed(), third.message
    assert third.result()["warm_start"]["source"] == "scratch"
    assert "hidden_size" in third.result()["warm_start"]["reason"]
