"""Warm start: a run fine-tunes the current champion of its market instead of training from the seed.

With `warm_start: champion` in the run config, the daily run downloads the champion's agent checkpoint
(the registered model `dreamer-<category>-<symbol>-<interval>`, alias `champion`) and both training stages
start from it: the world model from the champion's world model, the actor-critic from its actor-critic
(`dreamer.training.world_model.load_initial_weights`, `dreamer.agent.trainer.load_initial_actor_critic`).
The run's own dataset, normalised on its own training window, is what they are fine-tuned on; selection on
the validation split (`dreamer.training.selection`) then keeps the best weights, so a champion that the new
window does not improve is not made worse.

A champion is used only when it can be: same features in the same order, same architecture, same actor.
Otherwise (or when there is no champion yet) the run trains from scratch and says why.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from dreamer.config import RunConfig, from_mapping
from dreamer.model.config import DreamerConfig
from dreamer.orchestration import registry
from dreamer.orchestration.tracking import client

log = logging.getLogger(__name__)

SCRATCH = "scratch"
CHAMPION = "champion"


def download_agent_checkpoint(tracking_uri: str, name: str, version: str, dst_dir: Path) -> Path:
    """The agent checkpoint of registered model `name` version `version`, downloaded under `dst_dir`."""
    import mlflow

    from dreamer.orchestration.pyfunc import agent_checkpoint_in

    model_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}",
        dst_path=str(dst_dir),
        tracking_uri=tracking_uri,
        registry_uri=tracking_uri,
    )
    return agent_checkpoint_in(model_dir)


def initial_checkpoint(tracking_uri: str, data: dict[str, Any], cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Where this run's training starts: `{"source": "champion", "checkpoint", "model"}` with the champion's
    agent checkpoint downloaded under `out_dir`, or `{"source": "scratch", "reason"}`. `data` is
    `stage_features`' result (market and dataset directory)."""
    if cfg.warm_start == SCRATCH:
        return {"source": SCRATCH, "reason": "the config says warm_start: scratch"}
    mlflow_client = client(tracking_uri)
    market = (data["category"], data["symbol"], data["interval"])
    name = registry.registered_model_name(*market)
    champion, _ = registry.market_champion(mlflow_client, *market)
    if champion is None:
        return {"source": SCRATCH, "reason": f"{name} has no champion yet"}
    model = f"{name}/{champion.version}"
    checkpoint = download_agent_checkpoint(tracking_uri, name, str(champion.version), Path(out_dir) / "model")
    mismatch = incompatibility(checkpoint, data["dataset_dir"], cfg)
    if mismatch:
        return {"source": SCRATCH, "reason": f"champion {model} cannot be fine-tuned here: {mismatch}"}
    return {"source": CHAMPION, "checkpoint": str(checkpoint), "model": model}


def incompatibility(checkpoint: Path, dataset_dir: str | Path, cfg: RunConfig) -> str | None:
    """Why the agent at `checkpoint` cannot initialise this run's training, or None when it can."""
    from dreamer.agent.checkpoint import load_checkpoint
    from dreamer.features.dataset import MarketDataset
    from dreamer.training.world_model import ARCHITECTURE_FIELDS

    saved = load_checkpoint(checkpoint)
    features = list(MarketDataset.load(dataset_dir).feature_names)
    if list(saved["feature_names"]) != features:
        return f"it reads features {list(saved['feature_names'])}, this dataset {features}"
    # Agents saved before the band actor existed were all categorical REINFORCE actors (`TradingPolicy.load`).
    trained = dataclasses.asdict(from_mapping(DreamerConfig, {"actor_grad": "reinforce", **saved["config"]}))
    wanted = dataclasses.asdict(cfg.dreamer)
    changed = [name for name in (*ARCHITECTURE_FIELDS, "actor_grad") if trained[name] != wanted[name]]
    if changed:
        return f"another architecture ({', '.join(changed)} differ)"
    return None
