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
    """Write a world-model checkpoint atomically."""
    return write_checkpoint_file(path, FORMAT, payload)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU)."""
    return read_checkpoint_file(checkpoint_path(path), FORMAT, "world-model", CheckpointError)


def write_checkpoint_file(path: str | Path, format_tag: str, payload: dict[str, Any]) -> Path:
    """Write `{"format": format_tag, **payload}` to `path` atomically: a temporary file in the same
    directory, fsync, rename. A crash leaves the previous checkpoint (or none), never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": format_tag, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_checkpoint_file(
    path: Path, format_tag: str, kind: str, error: type[DreamerError], device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by `write_checkpoint_file` onto `device` (`weights_only`: no pickled code).
    A missing, truncated or foreign file raises `error` naming the file and the problem, not a pickle
    traceback; `kind` ("agent", "world-model") says which checkpoint was expected."""
    if not path.exists():
        raise error(f"{kind} checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise error(f"{path} is not a readable {kind} checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != format_tag:
        raise error(f"{path} is not a {format_tag} checkpoint")
    return payload


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The random states a resumed run restores to continue exactly: torch's CPU and CUDA generators and
    `generator` (a sampler's)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "sampler": generator.get_state(),
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Undo `rng_state` (states loaded onto any device; CUDA states are skipped on a machine without CUDA)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in state["cuda"]])
    generator.set_state(state["sampler"].cpu())


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
