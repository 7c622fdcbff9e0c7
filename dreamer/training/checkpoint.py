"""The world-model checkpoint: one self-contained file to resume training from or to load the model.

Contents (a plain dict of tensors, numbers, strings and lists, loadable with `weights_only=True`):
`format`, `step`, `config` (the DreamerConfig as a dict), `obs_dim`, `feature_names`, `normaliser` (the
training split's feature statistics: a model is only meaningful on features normalised the same way),
`meta` (the dataset's symbol, interval, …), `model` (state_dict), `optimizer` (Adam state), `rng` (torch
CPU/CUDA and sampler generator states, so a resumed run continues exactly like an uninterrupted one) and
`metrics` (the last update's metrics, plus the validation loss at the end of training).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dreamer.config import from_mapping
from dreamer.errors import ConfigError, DreamerError
from dreamer.model.config import DreamerConfig
from dreamer.model.world_model import WorldModel

WORLD_MODEL_CHECKPOINT = "checkpoint.pt"
FORMAT = "dreamer-world-model/1"


class CheckpointError(DreamerError):
    """A world-model checkpoint is missing, truncated, of another format or does not fit the run."""


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or the directory holding `checkpoint.pt`."""
    path = Path(path)
    return path / WORLD_MODEL_CHECKPOINT if path.is_dir() else path


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` atomically: a temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU)."""
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"world-model checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: say which, not a pickle traceback
        raise CheckpointError(f"{path} is not a readable world-model checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return payload


def config_from_checkpoint(payload: dict[str, Any]) -> DreamerConfig:
    try:
        return from_mapping(DreamerConfig, payload["config"], "checkpoint config")
    except ConfigError as exc:
        raise CheckpointError(f"the checkpoint's config is not valid for this version: {exc}") from exc


def load_world_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[WorldModel, DreamerConfig, dict[str, Any]]:
    """Load a trained world model for inference.

    Returns (model in eval mode on `device`, its config, extra) where extra holds `step`, `obs_dim`,
    `feature_names`, `normaliser` (a dict, `Normaliser.from_dict` rebuilds it), `meta` and `metrics`.
    """
    payload = read_checkpoint(path)
    cfg = config_from_checkpoint(payload)
    model = WorldModel(int(payload["obs_dim"]), cfg)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint_path(path)}: weights do not fit the saved config: {exc}") from exc
    extra = {key: payload[key] for key in ("step", "obs_dim", "feature_names", "normaliser", "meta", "metrics")}
    return model.to(device).eval(), cfg, extra
