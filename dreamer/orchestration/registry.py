"""Champion promotion through the MLflow Model Registry.

Two layers. `decide_promotion` is a pure function of two metric dicts measured on the **same** held-out
window (the candidate's and the current champion's, re-evaluated there), the paired bootstrap comparison of
their Sharpe ratios there (`dreamer.evaluation.net_returns.SharpeDifference`) and the `PromotionConfig`; it
returns a `PromotionDecision` with human-readable reasons. The thin MLflow layer below it registers the
candidate as a new version of `dreamer-<category>-<symbol>-<interval>`, writes the decision as version tags
and moves the alias: `champion` when promoted, `challenger` otherwise. A registered model has at most one
version per alias, so the previous champion keeps its version and tags and simply loses the alias.

Registered models used to be named `dreamer-<symbol>-<interval>`, shared by spot and perpetuals.
`market_champion` adopts such a legacy champion into the new name, only for the category it was trained on.

Several runs may share a store. Moving the alias is a compare-and-set (`commit_decision`) under a file lock
(`registry_lock`): a run re-reads the champion under the lock and decides again when another run moved it
since, so the final champion is the best on the evidence whatever the order in which the runs finish.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamer.orchestration.config import PromotionConfig
from dreamer.orchestration.tracking import sqlite_db_path

if TYPE_CHECKING:
    from filelock import FileLock
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from dreamer.evaluation.net_returns import SharpeDifference  # imports torch (through dreamer.trading)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "promotion."
MIGRATED_FROM_TAG = "migrated_from"
MARKET_KEYS = ("category", "symbol", "interval")  # version tags and model metadata, as promotion writes them


def registered_model_name(category: str, symbol: str, interval: str) -> str:
    """`dreamer-linear-btcusdt-5`: one registered model per market (category and symbol) and bar interval."""
    return f"dreamer-{category}-{symbol}-{interval}".lower()


def legacy_model_name(symbol: str, interval: str) -> str:
    """`dreamer-btcusdt-5`: the name before the category was part of it (spot and perpetuals shared it)."""
    return f"dreamer-{symbol}-{interval}".lower()


def market_mismatch(recorded: Mapping[str, Any], category: str, symbol: str, interval: str) -> str | None:
    """How the market a model was trained on (`recorded`: its version tags or its model metadata) differs
    from the one asked for, e.g. `category spot (not linear)`; None when it does not. A key `recorded`
    lacks is not held against the model."""
    asked = dict(zip(MARKET_KEYS, (category, symbol, interval), strict=True))
    differences = [
        f"{key} {recorded[key]} (not {value})"
        for key, value in asked.items()
        if recorded.get(key) not in (None, "") and str(recorded[key]).lower() != value.lower()
    ]
    return ", ".join(differences) or None


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    metric: str
    candidate_value: float | None
    champion_value: float | None  # None when there is no champion (or it could not be evaluated)
    champion_version: str | None
    reasons: tuple[str, ...]
    sharpe_diff: SharpeDifference | None = None  # candidate minus champion on the window (None: no champion)
    require_significance: bool = False
    significance_level: float | None = None

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER

    def as_tags(self) -> dict[str, str]:
        """The decision as MLflow model-version tags (all strings)."""
        diff = self.sharpe_diff
        return {
            f"{TAG_PREFIX}decision": self.alias,
            f"{TAG_PREFIX}metric": self.metric,
            f"{TAG_PREFIX}candidate_value": _fmt(self.candidate_value),
            f"{TAG_PREFIX}champion_value": _fmt(self.champion_value),
            f"{TAG_PREFIX}champion_version": self.champion_version or "none",
            f"{TAG_PREFIX}sharpe_diff": _fmt(None if diff is None else diff.diff),
            f"{TAG_PREFIX}sharpe_diff_ci_low": _fmt(None if diff is None else diff.ci_low),
            f"{TAG_PREFIX}sharpe_diff_ci_high": _fmt(None if diff is None else diff.ci_high),
            f"{TAG_PREFIX}significant": "none" if diff is None else str(diff.significant).lower(),
            f"{TAG_PREFIX}require_significance": str(self.require_significance).lower(),
            f"{TAG_PREFIX}significance_level": _fmt(self.significance_level),
            f"{TAG_PREFIX}reasons": "; ".join(self.reasons),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the promotion stage returns and the run summary shows."""
        diff = self.sharpe_diff
        return {
            "alias": self.alias,
            "promote": self.promote,
            "metric": self.metric,
            "candidate_value": self.candidate_value,
            "champion_value": self.champion_value,
            "champion_version": self.champion_version,
            "sharpe_diff": None
            if diff is None
            else {
                "diff": diff.diff,
                "ci_low": diff.ci_low,
                "ci_high": diff.ci_high,
                "confidence": diff.confidence,
                "significant": diff.significant,
            },
            "require_significance": self.require_significance,
            "significance_level": self.significance_level,
            "reasons": list(self.reasons),
        }


def decide_promotion(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    cfg: PromotionConfig,
    champion_version: str | None = None,
    notes: Sequence[str] = (),
    sharpe_diff: SharpeDifference | None = None,
) -> PromotionDecision:
    """Should the candidate become champion?

    `candidate` and `champion` are the agents' net backtest metrics on the same held-out window. `champion`
    is None when the registry has no champion yet, or, with `champion_version` set, when the champion could
    not be evaluated there. The candidate must first pass the guard rails: a finite value of the metric,
    better than `cfg.metric_floor`, and a maximum drawdown within `cfg.max_drawdown_limit`. It is then
    promoted when there is no champion, when the champion could not be evaluated, when the champion's value
    is not finite, or when it beats the champion by more than `cfg.min_improvement` and, with
    `cfg.require_significance`, `sharpe_diff` (candidate minus champion Sharpe on the same bars, its interval
    at `cfg.confidence`) is significant: its whole interval lies above 0. Without that evidence (None) a
    champion that could be evaluated stays. `notes` (caveats about the comparison, why the champion could
    not be evaluated) end the reasons.
    """
    value = _finite(candidate.get(cfg.metric))
    champion_value = _finite(champion.get(cfg.metric)) if champion is not None else None
    reasons = list(_guard_rail_failures(candidate, value, cfg))
    if reasons or value is None:
        promote = False
    elif champion is None and champion_version is not None:
        # Absence of evidence is not evidence: a champion that cannot be evaluated (artifacts gone, unloadable,
        # reading features this dataset lacks) must not block every later promotion.
        promote = True
        reasons.append(
            f"champion v{champion_version} could not be evaluated on this window, so there is no evidence for it; "
            f"the candidate passes the guard rails on its own ({cfg.metric}={value:.4g})"
        )
    elif champion is None:
        promote = True
        reasons.append(f"first model: no champion yet, and it passes the guard rails ({cfg.metric}={value:.4g})")
    elif champion_value is None:
        promote = True
        reasons.append(f"the champion's {cfg.metric} is not finite on this window; the candidate's is {value:.4g}")
    else:
        improvement = value - champion_value if cfg.higher_is_better else champion_value - value
        beats = improvement > cfg.min_improvement
        verdict = "beats" if beats else "does not beat"
        reasons.append(
            f"candidate {cfg.metric}={value:.4g} {verdict} champion v{champion_version or '?'} "
            f"{cfg.metric}={champion_value:.4g} on the same window by more than {cfg.min_improvement:g} "
            f"(improvement {improvement:+.4g})"
        )
        significant = sharpe_diff is not None and sharpe_diff.significant
        promote = beats and (significant or not cfg.require_significance)
        if sharpe_diff is None:
            if beats and cfg.require_significance:
                reasons.append(
                    "no paired comparison of the two agents' returns on this window, so no evidence that the "
                    "difference is more than chance: the champion stays (require_significance)"
                )
        else:
            required = "required" if cfg.require_significance else "not required"
            reasons.append(
                f"Sharpe difference {sharpe_diff.diff:+.3g}, {sharpe_diff.confidence:.0%} paired block-bootstrap "
                f"interval [{sharpe_diff.ci_low:+.3g}, {sharpe_diff.ci_high:+.3g}]: "
                f"{'significant' if significant else 'not significant'} ({required})"
            )
    reasons.extend(notes)
    return PromotionDecision(
        promote=promote,
        metric=cfg.metric,
        candidate_value=value,
        champion_value=champion_value,
        champion_version=champion_version,
        reasons=tuple(reasons),
        sharpe_diff=sharpe_diff,
        require_significance=cfg.require_significance,
        significance_level=cfg.significance_level,
    )


def _guard_rail_failures(metrics: Mapping[str, Any], value: float | None, cfg: PromotionConfig) -> list[str]:
    failures = []
    if value is None:
        failures.append(f"guard rail: {cfg.metric} is missing or not finite ({metrics.get(cfg.metric)!r})")
    if value is not None and cfg.metric_floor is not None:
        clears = value > cfg.metric_floor if cfg.higher_is_better else value < cfg.metric_floor
        if not clears:
            side = "above" if cfg.higher_is_better else "below"
            failures.append(f"guard rail: {cfg.metric} {value:.4g} is not {side} the floor {cfg.metric_floor:g}")
    drawdown = _finite(metrics.get("max_drawdown"))
    if drawdown is None:
        failures.append(f"guard rail: max_drawdown is missing or not finite ({metrics.get('max_drawdown')!r})")
    elif abs(drawdown) > cfg.max_drawdown_limit:
        # The sign convention of the backtest (negative or positive drawdown) does not matter here.
        failures.append(
            f"guard rail: max drawdown {abs(drawdown):.1%} exceeds the limit of {cfg.max_drawdown_limit:.1%}"
        )
    return failures


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "none" if value is None else repr(float(value))


# --- MLflow layer ------------------------------------------------------------------------------------


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding alias `champion`, or None (no such model yet, or no champion)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def market_champion(
    client: MlflowClient, category: str, symbol: str, interval: str
) -> tuple[ModelVersion | None, str | None]:
    """The champion of `registered_model_name(category, symbol, interval)`, and a note on the legacy model.

    When that model has no champion but the legacy `dreamer-<symbol>-<interval>` has one whose `category`
    tag is `category`, the legacy champion is adopted: registered (same source, run, logged model and
    tags, plus `migrated_from`) as a new version of the new name, which it holds alias `champion` of. A
    legacy champion of another category is never adopted: it must not trade a market it did not learn.
    The note says what happened to a legacy champion (None when there was none, or nothing to do)."""
    name = registered_model_name(category, symbol, interval)
    current = champion_version(client, name)
    legacy_name = legacy_model_name(symbol, interval)
    legacy = None if current is not None else champion_version(client, legacy_name)
    if legacy is None:
        return current, None
    trained_on = legacy.tags.get("category", "an unrecorded category")
    if trained_on != category:
        note = f"legacy model {legacy_name} v{legacy.version} was trained on {trained_on}, not {category}: not adopted"
        return None, note
    tags = dict(legacy.tags) | {MIGRATED_FROM_TAG: f"{legacy_name}/{legacy.version}"}
    # The legacy version's own source, so the adopted one does not depend on the legacy name staying around
    # (MLflow types `source` as optional: the legacy version's URI resolves to the same artifacts).
    source = legacy.source or f"models:/{legacy_name}/{legacy.version}"
    with registry_lock(client.tracking_uri):
        current = champion_version(client, name)
        if current is not None:  # a concurrent run adopted it, or promoted its own, meanwhile
            return current, None
        adopted = register_version(client, name, source, legacy.run_id, tags=tags, model_id=legacy.model_id)
        client.set_registered_model_alias(name, CHAMPION, str(adopted.version))
    note = (
        f"adopted champion v{legacy.version} of the legacy model {legacy_name} (category {category}) "
        f"as {name} v{adopted.version}"
    )
    return adopted, note


def register_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str | None,
    tags: Mapping[str, str] | None = None,
    model_id: str | None = None,
) -> ModelVersion:
    """Register `model_uri` (logged in run `run_id`; `model_id` for an MLflow 3 logged model) as a new
    version of `name`, creating the registered model on first use. The logged model is tagged with the
    versions it became, as `mlflow.register_model` does (the UI's model page shows them; the sqlite registry
    keeps no other link from a version back to its logged model)."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        client.create_registered_model(name, description="DreamerV3 world-model trading agent (pyfunc)")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags=dict(tags or {}), model_id=model_id
    )
    if model_id:
        earlier = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        registered = [*earlier, {"name": name, "version": version.version}]
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(registered)})
    return version


def delete_orphan_versions(client: MlflowClient, name: str) -> list[str]:
    """Delete the versions of `name` that a killed run registered but never decided on: no decision tag, no
    alias, and a run that is over (a killed run is closed as KILLED by the next run on the store, see
    `dreamer.orchestration.tracking`). A run still RUNNING may be between registering and deciding, so its
    version stays. Returns the deleted versions; a rerun after a kill so leaves one version per decided run."""
    orphans = []
    for version in client.search_model_versions(f"name = '{name}'"):
        if f"{TAG_PREFIX}decision" in version.tags or version.aliases or version.run_id is None:
            continue
        if client.get_run(version.run_id).info.status == "RUNNING":
            continue
        client.delete_model_version(name, version.version)
        orphans.append(str(version.version))
    return orphans


def apply_decision(client: MlflowClient, name: str, version: str, decision: PromotionDecision) -> None:
    """Write the decision as tags on `version`, then move the alias (the last step, so a crash before it
    leaves the previous champion in place)."""
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote and decision.champion_version and decision.champion_version != version:
        client.set_model_version_tag(name, decision.champion_version, f"{TAG_PREFIX}replaced_by", version)
    client.set_registered_model_alias(name, decision.alias, version)


def registry_lock(tracking_uri: str) -> FileLock:
    """The lock that serialises champion changes in the store at `tracking_uri`, across threads and processes:
    a file next to a sqlite database. For another store (a tracking server) it is a file in the temporary
    directory named after the URI, which serialises the runs of this machine only."""
    from filelock import FileLock

    db_path = sqlite_db_path(tracking_uri)
    if db_path is not None:
        path = db_path.with_name(f"{db_path.name}.registry.lock")
    else:
        digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"dreamer-registry-{digest}.lock"
    return FileLock(path)


def commit_decision(
    client: MlflowClient,
    name: str,
    version: str,
    decision: PromotionDecision,
    decide: Callable[[ModelVersion | None], PromotionDecision],
) -> PromotionDecision:
    """Apply `decision` to the registered `version` as a compare-and-set, and return what was applied.

    Under `registry_lock`, the champion is read again; when it is no longer the one `decision` was made
    against (another run moved the alias since), `decide(champion of now)` makes it again, re-evaluating
    that champion on this run's window, before the tags and the alias are written. The lock is held while
    deciding again: another run must not move the alias in between."""
    with registry_lock(client.tracking_uri):
        current = champion_version(client, name)
        if (None if current is None else str(current.version)) != decision.champion_version:
            decision = decide(current)
        apply_decision(client, name, version, decision)
    return decision
