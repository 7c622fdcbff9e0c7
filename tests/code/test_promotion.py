"""Code tier: the champion/challenger decision (pure) and how it lands in the MLflow registry."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from dreamer.config import load_config
from dreamer.errors import ConfigError
from dreamer.evaluation.net_returns import SharpeDifference
from dreamer.orchestration.config import PromotionConfig
from dreamer.orchestration.registry import (
    CHALLENGER,
    CHAMPION,
    apply_decision,
    champion_version,
    commit_decision,
    decide_promotion,
    delete_orphan_versions,
    legacy_model_name,
    market_champion,
    market_mismatch,
    register_version,
    registered_model_name,
)

CFG = PromotionConfig(metric="sharpe", min_improvement=0.1, max_drawdown_limit=0.3, require_significance=False)
"""The metric rule on its own; `EVIDENCE` adds the paired significance test (the default)."""
EVIDENCE = PromotionConfig(metric="sharpe", min_improvement=0.1, max_drawdown_limit=0.3)


def metrics(sharpe: float, max_drawdown: float = -0.1) -> dict[str, float]:
    return {"sharpe": sharpe, "max_drawdown": max_drawdown, "total_return": 0.05}


def test_first_model_becomes_champion_when_it_passes_the_guard_rails() -> None:
    decision = decide_promotion(metrics(0.5), None, CFG)
    assert decision.promote and decision.alias == CHAMPION
    assert decision.champion_value is None
    assert "first model" in decision.reasons[0]


def test_first_model_is_not_champion_when_it_breaks_a_guard_rail() -> None:
    decision = decide_promotion(metrics(3.0, max_drawdown=-0.45), None, CFG)
    assert not decision.promote and decision.alias == CHALLENGER
    assert any("max drawdown 45.0% exceeds the limit of 30.0%" in reason for reason in decision.reasons)


def test_better_challenger_is_promoted() -> None:
    decision = decide_promotion(metrics(1.25), metrics(1.0), CFG, champion_version="3")
    assert decision.promote
    assert decision.candidate_value == 1.25 and decision.champion_value == 1.0
    assert "beats champion v3" in decision.reasons[0]


def test_worse_challenger_is_not_promoted() -> None:
    decision = decide_promotion(metrics(0.8), metrics(1.0), CFG, champion_version="3")
    assert not decision.promote and decision.alias == CHALLENGER
    assert "does not beat champion v3" in decision.reasons[0]


@pytest.mark.parametrize(("candidate", "promoted"), [(1.05, False), (1.15, True)])
def test_improvement_must_exceed_the_margin(candidate: float, promoted: bool) -> None:
    assert decide_promotion(metrics(candidate), metrics(1.0), CFG).promote is promoted


def test_a_tie_keeps_the_champion() -> None:
    assert not decide_promotion(metrics(1.0), metrics(1.0), PromotionConfig(min_improvement=0.0)).promote


def test_better_metric_but_breaking_the_drawdown_limit_is_not_promoted() -> None:
    decision = decide_promotion(metrics(5.0, max_drawdown=-0.31), metrics(1.0), CFG)
    assert not decision.promote
    assert decision.reasons[0].startswith("guard rail: max drawdown")


def test_a_losing_model_never_becomes_champion() -> None:
    decision = decide_promotion(metrics(-0.4), None, CFG)
    assert not decision.promote
    assert decision.reasons == ("guard rail: sharpe -0.4 is not above the floor 0",)
    assert decide_promotion(metrics(-0.4), None, PromotionConfig(metric_floor=None)).promote
    assert decide_promotion(metrics(0.6), None, PromotionConfig(metric_floor=0.5)).promote
    lower = PromotionConfig(metric="volatility", higher_is_better=False, metric_floor=0.3)
    assert not decide_promotion({"volatility": 0.35, "max_drawdown": 0.1}, None, lower).promote


def test_drawdown_sign_convention_does_not_matter() -> None:
    assert not decide_promotion(metrics(5.0, max_drawdown=0.31), None, CFG).promote
    assert decide_promotion(metrics(5.0, max_drawdown=0.29), None, CFG).promote


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "1.2"])
def test_missing_or_non_finite_metric_is_a_guard_rail_failure(bad: object) -> None:
    candidate = {"sharpe": bad, "max_drawdown": -0.1}
    decision = decide_promotion(candidate, None, CFG)
    assert not decision.promote
    assert decision.candidate_value is None
    assert "sharpe is missing or not finite" in decision.reasons[0]


def test_missing_drawdown_is_a_guard_rail_failure() -> None:
    assert not decide_promotion({"sharpe": 2.0}, None, CFG).promote


def test_champion_with_undefined_metric_loses_to_a_valid_candidate() -> None:
    decision = decide_promotion(metrics(0.2), metrics(math.nan), CFG, champion_version="1")
    assert decision.promote
    assert decision.champion_value is None


def test_a_champion_that_could_not_be_evaluated_gives_way_to_a_candidate_passing_the_guard_rails() -> None:
    """Its absence of evidence is not evidence: a champion whose artifacts are gone must not block for ever."""
    why = "champion v4 could not be re-evaluated on this window: No such artifact"
    decision = decide_promotion(metrics(0.3), None, CFG, champion_version="4", notes=(why,))
    assert decision.promote and decision.champion_version == "4" and decision.champion_value is None
    assert decision.reasons == (
        "champion v4 could not be evaluated on this window, so there is no evidence for it; the candidate passes "
        "the guard rails on its own (sharpe=0.3)",
        why,
    )
    assert decision.as_tags()["promotion.champion_version"] == "4"


def test_a_candidate_breaking_a_guard_rail_does_not_replace_a_champion_that_could_not_be_evaluated() -> None:
    decision = decide_promotion(metrics(-0.2), None, CFG, champion_version="4", notes=("No such artifact",))
    assert not decision.promote
    assert decision.reasons == ("guard rail: sharpe -0.2 is not above the floor 0", "No such artifact")


def test_lower_is_better_metrics() -> None:
    cfg = PromotionConfig(
        metric="volatility", higher_is_better=False, min_improvement=0.0, metric_floor=None, require_significance=False
    )
    low = {"volatility": 0.2, "max_drawdown": -0.1}
    high = {"volatility": 0.4, "max_drawdown": -0.1}
    assert decide_promotion(low, high, cfg).promote
    assert not decide_promotion(high, low, cfg).promote


def test_notes_are_kept_as_reasons() -> None:
    decision = decide_promotion(metrics(2.0), metrics(1.0), CFG, notes=("champion trained on overlapping data",))
    assert decision.reasons[-1] == "champion trained on overlapping data"


def test_decision_tags_are_strings_with_the_reasons() -> None:
    decision = decide_promotion(metrics(0.8), metrics(1.0), CFG, champion_version="3")
    tags = decision.as_tags()
    assert tags["promotion.decision"] == CHALLENGER
    assert tags["promotion.metric"] == "sharpe"
    assert float(tags["promotion.candidate_value"]) == 0.8
    assert float(tags["promotion.champion_value"]) == 1.0
    assert tags["promotion.champion_version"] == "3"
    assert "does not beat" in tags["promotion.reasons"]
    assert all(isinstance(value, str) for value in tags.values())


def difference(diff: float, low: float, high: float) -> SharpeDifference:
    return SharpeDifference(diff=diff, ci_low=low, ci_high=high, confidence=EVIDENCE.confidence)


def test_a_better_candidate_needs_a_significant_sharpe_difference() -> None:
    """Sharpe 1.25 against 1.0 beats the margin of 0.1, but whether it is promoted is up to the paired interval."""
    noisy = decide_promotion(metrics(1.25), metrics(1.0), EVIDENCE, "3", sharpe_diff=difference(0.25, -0.4, 0.9))
    assert not noisy.promote and noisy.alias == CHALLENGER
    assert "beats champion v3" in noisy.reasons[0]
    assert noisy.reasons[1] == (
        "Sharpe difference +0.25, 95% paired block-bootstrap interval [-0.4, +0.9]: not significant (required)"
    )
    clear = decide_promotion(metrics(1.25), metrics(1.0), EVIDENCE, "3", sharpe_diff=difference(0.25, 0.05, 0.45))
    assert clear.promote and clear.alias == CHAMPION
    assert clear.reasons[1].endswith("interval [+0.05, +0.45]: significant (required)")
    on_the_point = decide_promotion(metrics(1.25), metrics(1.0), CFG, "3", sharpe_diff=difference(0.25, -0.4, 0.9))
    assert on_the_point.promote  # require_significance: false decides on the metric alone
    assert on_the_point.reasons[1].endswith("not significant (not required)")


def test_a_significant_difference_does_not_promote_a_candidate_that_does_not_beat_the_margin() -> None:
    decision = decide_promotion(metrics(1.05), metrics(1.0), EVIDENCE, "3", sharpe_diff=difference(0.05, 0.01, 0.09))
    assert not decision.promote


def test_without_paired_returns_an_evaluated_champion_stays() -> None:
    decision = decide_promotion(metrics(2.0), metrics(1.0), EVIDENCE, "3", notes=("no paired comparison: gone",))
    assert not decision.promote
    assert decision.reasons[1].startswith("no paired comparison of the two agents' returns on this window")
    assert decision.reasons[2] == "no paired comparison: gone"


def test_without_a_champion_significance_is_not_asked() -> None:
    first = decide_promotion(metrics(0.5), None, EVIDENCE)
    assert first.promote and "first model" in first.reasons[0]
    assert first.sharpe_diff is None and first.as_tags()["promotion.significant"] == "none"
    broken = decide_promotion(metrics(0.5), None, EVIDENCE, champion_version="4")  # could not be evaluated
    assert broken.promote


def test_the_significance_test_lands_in_the_version_tags_and_the_stage_result() -> None:
    decision = decide_promotion(metrics(1.25), metrics(1.0), EVIDENCE, "3", sharpe_diff=difference(0.25, -0.4, 0.9))
    tags = decision.as_tags()
    assert float(tags["promotion.sharpe_diff"]) == 0.25
    assert float(tags["promotion.sharpe_diff_ci_low"]) == -0.4 and float(tags["promotion.sharpe_diff_ci_high"]) == 0.9
    assert tags["promotion.significant"] == "false" and tags["promotion.require_significance"] == "true"
    assert float(tags["promotion.significance_level"]) == 0.05
    assert decision.to_dict()["sharpe_diff"] == {
        "diff": 0.25,
        "ci_low": -0.4,
        "ci_high": 0.9,
        "confidence": 0.95,
        "significant": False,
    }


def test_registered_model_name_is_per_category_and_lower_case() -> None:
    assert registered_model_name("linear", "BTCUSDT", "5") == "dreamer-linear-btcusdt-5"
    assert registered_model_name("spot", "ETHUSDT", "D") == "dreamer-spot-ethusdt-d"
    assert legacy_model_name("BTCUSDT", "5") == "dreamer-btcusdt-5"  # before the category was part of it


def test_market_mismatch_names_what_differs() -> None:
    tags = {"category": "spot", "symbol": "BTCUSDT", "interval": "5", "data.content_hash": "x"}
    assert market_mismatch(tags, "spot", "BTCUSDT", "5") is None
    assert market_mismatch(tags, "linear", "BTCUSDT", "15") == "category spot (not linear), interval 5 (not 15)"
    assert market_mismatch({"symbol": "btcusdt"}, "linear", "BTCUSDT", "5") is None  # what is not recorded passes


def test_promotion_config_is_validated_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("promotion:\n  metric: sortino\n  min_improvement: 0.05\n  metric_floor: null\n")
    assert load_config(path).promotion == PromotionConfig(metric="sortino", min_improvement=0.05, metric_floor=None)
    path.write_text("promotion:\n  max_drawdown_limit: 1.5\n")
    with pytest.raises(ConfigError, match="max_drawdown_limit"):
        load_config(path)
    path.write_text("promotion:\n  require_significance: false\n  significance_level: 0.1\n")
    loaded = load_config(path).promotion
    assert not loaded.require_significance and loaded.confidence == pytest.approx(0.9)
    assert PromotionConfig().require_significance  # on by default
    path.write_text("promotion:\n  significance_level: 0.5\n")
    with pytest.raises(ConfigError, match="significance_level"):
        load_config(path)


# --- the MLflow layer, against a throwaway sqlite store --------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("test", artifact_location=(tmp_path / "artifacts").as_uri())
    return client, experiment_id


def _new_version(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str] | None = None) -> str:
    run = client.create_run(experiment_id)
    version = register_version(client, name, f"runs:/{run.info.run_id}/agent", run.info.run_id, tags=tags)
    return str(version.version)


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    if alias == CHAMPION:
        version = champion_version(client, name)
        return None if version is None else str(version.version)
    return str(client.get_model_version_by_alias(name, alias).version)


def test_registry_champion_then_challenger_then_new_champion(registry: tuple[MlflowClient, str]) -> None:
    client, experiment_id = registry
    name = registered_model_name("linear", "BTCUSDT", "5")
    assert champion_version(client, name) is None  # the model does not exist yet

    first = _new_version(client, experiment_id, name)
    apply_decision(client, name, first, decide_promotion(metrics(1.0), None, CFG))
    assert _alias(client, name, CHAMPION) == first
    assert client.get_model_version(name, first).tags["promotion.decision"] == CHAMPION

    second = _new_version(client, experiment_id, name)
    apply_decision(client, name, second, decide_promotion(metrics(0.5), metrics(1.0), CFG, champion_version=first))
    assert _alias(client, name, CHAMPION) == first
    assert _alias(client, name, CHALLENGER) == second
    rejected = client.get_model_version(name, second)
    assert rejected.tags["promotion.decision"] == CHALLENGER
    assert "does not beat champion v1" in rejected.tags["promotion.reasons"]

    third = _new_version(client, experiment_id, name)
    apply_decision(client, name, third, decide_promotion(metrics(2.0), metrics(1.0), CFG, champion_version=first))
    assert _alias(client, name, CHAMPION) == third
    assert _alias(client, name, CHALLENGER) == second  # untouched
    assert client.get_model_version(name, first).tags["promotion.replaced_by"] == third


def test_a_registered_version_is_listed_on_its_logged_model(registry: tuple[MlflowClient, str]) -> None:
    """What the UI's logged-model page shows as "Model versions" (else: "Not registered")."""
    import json

    client, experiment_id = registry
    run = client.create_run(experiment_id)
    model = client.create_logged_model(experiment_id, source_run_id=run.info.run_id)
    name = registered_model_name("linear", "ADAUSDT", "5")
    source = f"runs:/{run.info.run_id}/agent"  # models:/<id> would be resolved through the global tracking URI
    first = register_version(client, name, source, run.info.run_id, model_id=model.model_id)
    again = register_version(client, name, source, run.info.run_id, model_id=model.model_id)
    listed = json.loads(client.get_logged_model(model.model_id).tags["mlflow.modelVersions"])
    assert listed == [{"name": name, "version": first.version}, {"name": name, "version": again.version}]


def test_registry_without_champion_but_with_a_rejected_first_model(registry: tuple[MlflowClient, str]) -> None:
    client, experiment_id = registry
    name = registered_model_name("linear", "ETHUSDT", "15")
    version = _new_version(client, experiment_id, name)
    apply_decision(client, name, version, decide_promotion(metrics(1.0, max_drawdown=-0.9), None, CFG))
    assert _alias(client, name, CHAMPION) is None
    assert _alias(client, name, CHALLENGER) == version


def test_versions_of_killed_runs_without_a_decision_are_deleted(registry: tuple[MlflowClient, str]) -> None:
    client, experiment_id = registry
    name = registered_model_name("linear", "XRPUSDT", "5")
    decided = _new_version(client, experiment_id, name)
    apply_decision(client, name, decided, decide_promotion(metrics(1.0), None, CFG))
    killed = _new_version(client, experiment_id, name)  # registered, then the run died before deciding
    client.set_terminated(client.get_model_version(name, killed).run_id, "KILLED")
    running = _new_version(client, experiment_id, name)  # another run, between registering and deciding
    assert delete_orphan_versions(client, name) == [killed]
    left = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    assert left == {decided, running}
    assert delete_orphan_versions(client, name) == []


def test_a_legacy_champion_is_adopted_only_by_its_own_category(registry: tuple[MlflowClient, str]) -> None:
    client, experiment_id = registry
    legacy = legacy_model_name("SOLUSDT", "5")
    old = _new_version(client, experiment_id, legacy, tags={"category": "spot", "symbol": "SOLUSDT", "interval": "5"})
    apply_decision(client, legacy, old, decide_promotion(metrics(1.0), None, CFG))

    champion, note = market_champion(client, "linear", "SOLUSDT", "5")  # a spot model never serves linear
    assert champion is None and note == f"legacy model {legacy} v{old} was trained on spot, not linear: not adopted"
    assert champion_version(client, registered_model_name("linear", "SOLUSDT", "5")) is None

    spot = registered_model_name("spot", "SOLUSDT", "5")
    adopted, note = market_champion(client, "spot", "SOLUSDT", "5")
    assert adopted is not None and _alias(client, spot, CHAMPION) == str(adopted.version)
    assert note == f"adopted champion v{old} of the legacy model {legacy} (category spot) as {spot} v{adopted.version}"
    source = client.get_model_version(legacy, old)
    assert adopted.source == source.source and adopted.run_id == source.run_id
    assert adopted.tags["category"] == "spot" and adopted.tags["promotion.decision"] == CHAMPION
    assert adopted.tags["migrated_from"] == f"{legacy}/{old}"
    again, note = market_champion(client, "spot", "SOLUSDT", "5")  # the new name's own champion from now on
    assert again is not None and again.version == adopted.version and note is None
    assert len(client.search_model_versions(f"name = '{spot}'")) == 1


@pytest.mark.parametrize("last", ["worse", "better"])
def test_concurrent_promotions_end_with_the_better_model_as_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, last: str
) -> None:
    """Two runs both evaluate against champion v1, then promote at once, the `last` one entering 0.1 s after the
    other while the registry is slow to write: the better model ends as champion whatever the order, and every
    version's tags agree with the alias."""
    from dreamer.orchestration import registry as module

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("race", artifact_location=(tmp_path / "artifacts").as_uri())
    name = registered_model_name("linear", "BTCUSDT", "5")
    first = _new_version(client, experiment_id, name)
    apply_decision(client, name, first, decide_promotion(metrics(1.0), None, CFG))
    on_window = {first: 1.0}  # each version's Sharpe on the test window both runs share

    def slow_apply(*args: Any) -> None:
        time.sleep(0.3)  # a busy store: without a lock, the other run reads the champion before the alias moves
        apply_decision(*args)

    monkeypatch.setattr(module, "apply_decision", slow_apply)
    both_evaluated = threading.Barrier(2, timeout=30)
    versions: dict[str, str] = {}
    failures: list[BaseException] = []

    def run(label: str, sharpe: float) -> None:
        try:
            own = MlflowClient(tracking_uri=uri, registry_uri=uri)  # one client per run, as in two processes
            version = _new_version(own, experiment_id, name)
            versions[label], on_window[version] = version, sharpe

            def decide(current: Any) -> Any:
                champion = None if current is None else metrics(on_window[str(current.version)])
                version_seen = None if current is None else str(current.version)
                return decide_promotion(metrics(sharpe), champion, CFG, champion_version=version_seen)

            decision = decide(champion_version(own, name))
            both_evaluated.wait()
            time.sleep(0.1 if label == last else 0.0)
            commit_decision(own, name, version, decision, decide)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in (("worse", 2.0), ("better", 3.0))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures

    better, worse = versions["better"], versions["worse"]
    assert _alias(client, name, CHAMPION) == better
    tags = {version: client.get_model_version(name, version).tags for version in (first, better, worse)}
    assert tags[better]["promotion.decision"] == CHAMPION
    assert tags[first]["promotion.replaced_by"] in (better, worse)
    if last == "worse":  # it found the better one as champion, compared itself with it and lost
        assert tags[worse]["promotion.decision"] == CHALLENGER and _alias(client, name, CHALLENGER) == worse
        assert tags[worse]["promotion.champion_version"] == better
        assert tags[better]["promotion.champion_version"] == first
    else:  # the worse one was champion for a while; the better one beat it on the same window
        assert tags[worse]["promotion.decision"] == CHAMPION and tags[worse]["promotion.replaced_by"] == better
        assert tags[better]["promotion.champion_version"] == worse
        assert f"beats champion v{worse}" in tags[better]["promotion.reasons"]
