"""Register a run's agent and promote it if it beats the champion on the same held-out window.

`register_and_promote` is the last stage of a pipeline run:

1. Re-evaluate the current champion (if any) on this run's test split with this run's evaluation
   settings and costs, through the same `stage_evaluate` as the candidate: numbers from different
   windows are never compared. The champion reads the features through its own training normaliser.
2. Decide (`registry.decide_promotion`, a pure function): guard rails, then the configured metric and,
   by default, a significant Sharpe difference: the paired block-bootstrap interval of the candidate's minus
   the champion's Sharpe, from both agents' per-bar net returns on the window (`backtests.npz` of each
   evaluation), must lie above 0 (a champion that could not be re-evaluated does not count against the
   candidate).
3. Log the agent as a pyfunc model in the run (MLflow links the run's params and its step-0 metrics, the
   headline of the evaluation, to the logged model), load it back and trade the latest stored bars with it
   (a model that does not load never reaches the registry), register it as a new version of
   `dreamer-<category>-<symbol>-<interval>` and write the decision: tags, then the alias. A champion of
   the legacy name `dreamer-<symbol>-<interval>` is adopted first when it was trained on this category.
4. The decision is committed as a compare-and-set (`registry.commit_decision`): when another run moved the
   champion since step 1, that champion is re-evaluated on this run's window and the decision made again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamer.config import RunConfig
from dreamer.errors import DreamerError
from dreamer.evaluation import net_returns
from dreamer.orchestration import registry
from dreamer.orchestration.tracking import FlowTracking, client

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

VERSION_TAG_PREFIX = "data."


class ChampionIncompatible(DreamerError):
    """The champion cannot trade this run's dataset (another feature set)."""


def register_and_promote(
    tracking: FlowTracking,
    cfg: RunConfig,
    data: dict[str, Any],
    evaluation: dict[str, Any],
    agent_checkpoint: str | Path,
    db_path: str | Path,
    work_dir: str | Path,
) -> dict[str, Any]:
    """See the module docstring. `data` is `stage_features`' result, `evaluation` `stage_evaluate`'s.

    Returns a JSON-ready dict: `model_name`, `version`, `model_uri`, `model_id` (the MLflow logged model),
    `decision` (`PromotionDecision.to_dict`: alias, promote, metric, values, the paired Sharpe difference,
    reasons), `champion` (version and its metrics on this window, or None) and `latest` (the new model's
    target position for the latest stored bar)."""
    import mlflow

    from dreamer.orchestration.pyfunc import latest_position, log_agent_model

    mlflow_client = client(tracking.tracking_uri)
    work = Path(work_dir)
    market = (data["category"], data["symbol"], data["interval"])
    name = registry.registered_model_name(*market)
    current, legacy_note = registry.market_champion(mlflow_client, *market)
    evaluated: dict[str, dict[str, Any]] = {}  # champion version -> its evaluation on this window

    def decide(champion: ModelVersion | None) -> registry.PromotionDecision:
        """The decision against `champion` (None: there is none), re-evaluated on this run's window."""
        notes = [legacy_note] if legacy_note else []
        version = None
        if champion is not None:
            version = str(champion.version)
            try:
                evaluated[version] = evaluate_champion(tracking, name, version, data, cfg, work / "champion" / version)
            except Exception as exc:  # a broken or incompatible champion is no evidence: the candidate stands alone
                log.warning("champion v%s could not be re-evaluated: %s", version, exc)
                notes.append(f"champion v{version} could not be re-evaluated on this window: {exc}")
            else:
                notes += overlap_notes(champion.tags, data, version)
        metrics = evaluated[version]["metrics"] if version in evaluated else None
        sharpe_diff = None
        if version in evaluated:
            try:
                sharpe_diff = paired_with_champion(evaluation, evaluated[version], cfg)
            except (OSError, KeyError, DreamerError) as exc:  # no returns to pair: the decision says so
                log.warning("no paired comparison with champion v%s: %s", version, exc)
                notes.append(f"no paired comparison with champion v{version}: {exc}")
        return registry.decide_promotion(
            evaluation["agent"], metrics, cfg.promotion, champion_version=version, notes=notes, sharpe_diff=sharpe_diff
        )

    decision = decide(current)
    info = log_agent_model(
        agent_checkpoint,
        tracking.run_id,
        tracking.tracking_uri,
        data["interval"],
        metadata=model_metadata(data),
    )
    latest = latest_position(mlflow.pyfunc.load_model(info.model_uri), db_path, *market)
    orphans = registry.delete_orphan_versions(mlflow_client, name)
    if orphans:
        log.info("deleted version(s) %s of %s, registered by runs killed before their decision", orphans, name)
    version = registry.register_version(
        mlflow_client, name, info.model_uri, tracking.run_id, tags=version_tags(data), model_id=info.model_id
    )
    # Another run may have moved the champion while this one evaluated, logged and registered.
    decision = registry.commit_decision(mlflow_client, name, str(version.version), decision, decide)
    return {
        "model_name": name,
        "version": str(version.version),
        "model_uri": info.model_uri,
        "registry_uri": f"models:/{name}/{version.version}",
        "model_id": info.model_id,
        "decision": decision.to_dict(),
        "champion": evaluated.get(decision.champion_version or ""),
        "latest": latest,
    }


def evaluate_champion(
    tracking: FlowTracking, name: str, version: str, data: dict[str, Any], cfg: RunConfig, work_dir: Path
) -> dict[str, Any]:
    """Download champion `version` and backtest it on this run's dataset (`stage_evaluate`)."""
    import mlflow

    from dreamer.agent.checkpoint import load_checkpoint
    from dreamer.features.dataset import Normaliser
    from dreamer.orchestration.pyfunc import agent_checkpoint_in
    from dreamer.pipeline import stage_evaluate

    model_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}",
        dst_path=str(work_dir / "model"),
        tracking_uri=tracking.tracking_uri,
        registry_uri=tracking.tracking_uri,
    )
    checkpoint = agent_checkpoint_in(model_dir)
    normaliser = Normaliser.from_dict(load_checkpoint(checkpoint)["normaliser"])
    dataset_dir = dataset_for_normaliser(data["dataset_dir"], normaliser, work_dir / "dataset")
    result = stage_evaluate(dataset_dir, checkpoint, cfg, work_dir / "evaluation")
    return {
        "version": version,
        "metrics": result["agent"],
        "window": result["window"],
        "metrics_path": result["metrics_path"],
        "backtests_path": result["backtests_path"],
    }


def paired_with_champion(
    candidate: dict[str, Any], champion: dict[str, Any], cfg: RunConfig
) -> net_returns.SharpeDifference:
    """Candidate minus champion Sharpe on this window, from both evaluations' per-bar net returns, with its
    paired block-bootstrap interval at `cfg.promotion.confidence` (the evaluation's block size and samples)."""
    return net_returns.paired_sharpe_difference(
        net_returns.NetReturns.of_agent(candidate["backtests_path"]),
        net_returns.NetReturns.of_agent(champion["backtests_path"]),
        float(candidate["window"]["periods_per_year"]),
        block=cfg.evaluation.bootstrap_block,
        samples=cfg.evaluation.bootstrap_samples,
        seed=cfg.dreamer.seed,
        confidence=cfg.promotion.confidence,
    )


def dataset_for_normaliser(dataset_dir: str | Path, normaliser: Any, out_dir: Path) -> Path:
    """`dataset_dir` itself when its observations are normalised with `normaliser`; otherwise the same
    bars, splits and funding re-expressed with `normaliser` (saved under `out_dir`). A policy must read
    features scaled as in its own training, and the champion's training window differs from this run's.
    A champion trained on fewer features (before the funding features existed) reads its own columns."""
    from dreamer.features.dataset import MarketDataset

    dataset = MarketDataset.load(dataset_dir)
    names = tuple(normaliser.feature_names)
    missing = [name for name in names if name not in dataset.feature_names]
    if missing:
        raise ChampionIncompatible(
            f"the champion reads features {missing} that this dataset lacks ({list(dataset.feature_names)})"
        )
    own = dataset.normaliser
    if (
        names == dataset.feature_names
        and np.array_equal(own.mean, normaliser.mean)
        and np.array_equal(own.std, normaliser.std)
    ):
        return Path(dataset_dir)
    columns = [dataset.feature_names.index(name) for name in names]
    raw = dataset.obs.astype(np.float64) * own.std + own.mean  # [N, F] symlog features before normalising
    MarketDataset.from_arrays(
        open_time_ms=dataset.open_time_ms,
        close=dataset.close,
        features=raw[:, columns],
        next_log_return=dataset.next_log_return,
        segment_id=dataset.segment_id,
        feature_names=names,
        splits=dataset.splits,
        normaliser=normaliser,
        meta=dataset.meta,
        funding=dataset.funding,
    ).save(out_dir)
    return out_dir


def version_tags(data: dict[str, Any]) -> dict[str, str]:
    """What a model version was trained on (read back by `overlap_notes` when it is the champion)."""
    splits = data.get("splits", {})
    tags = {
        "symbol": str(data["symbol"]),
        "interval": str(data["interval"]),
        "category": str(data["category"]),
        f"{VERSION_TAG_PREFIX}content_hash": str(data.get("content_hash")),
        f"{VERSION_TAG_PREFIX}first_open_time": str(data.get("first_open_time")),
        f"{VERSION_TAG_PREFIX}last_open_time": str(data.get("last_open_time")),
    }
    for split, bounds in splits.items():
        tags[f"{VERSION_TAG_PREFIX}{split}.start"] = str(bounds.get("start"))
        tags[f"{VERSION_TAG_PREFIX}{split}.end"] = str(bounds.get("end"))
    return tags


def overlap_notes(champion_tags: dict[str, str], data: dict[str, Any], version: str) -> list[str]:
    """A caveat when the champion trained on bars inside this run's test window (its score there is
    in-sample, hence flattering): the comparison still runs, but the reader should know."""
    import pandas as pd

    trained_until = champion_tags.get(f"{VERSION_TAG_PREFIX}train.end")
    test_start = data.get("splits", {}).get("test", {}).get("start")
    if not trained_until or not test_start or trained_until == "None":
        return []
    if pd.Timestamp(trained_until) >= pd.Timestamp(test_start):
        return [
            f"caution: champion v{version} was trained on bars up to {trained_until}, inside this test window "
            f"(from {test_start}); its score here is partly in-sample"
        ]
    return []


def model_metadata(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("category", "symbol", "interval", "source", "content_hash", "first_open_time", "last_open_time")
    return {key: data.get(key) for key in keys} | {"features": list(data.get("features", []))}
