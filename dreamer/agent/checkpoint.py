"""The agent checkpoint: one self-contained file holding everything needed to trade or to resume training.

Contents (a plain dict of tensors, numbers, strings and lists, loadable with `weights_only=True`):
`format`, `config` (the DreamerConfig as a dict), `obs_dim`, `feature_names`, `normaliser` (the training
split's feature statistics), `meta` (symbol, interval, …), `world_model` (state_dict of the frozen world
model the policy was trained in), `actor_critic` (actor, critic, slow critic, return normaliser),
`optimizer`, `step`, `lanes` (the imagined accounts carried between updates) and `rng` (torch and sampler
generator states, so a resumed run continues exactly as an uninterrupted one).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dreamer.errors import DreamerError

AGENT_CHECKPOINT = "checkpoint.pt"
FORMAT = "dreamer-agent/1"


class AgentCheckpointError(DreamerError):
    """An agent checkpoint is missing, truncated or of another format."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read an agent checkpoint (a file, or a directory holding `checkpoint.pt`) onto `device`."""
    path = Path(path)
    if path.is_dir():
        path = path / AGENT_CHECKPOINT
    if not path.exists():
        raise AgentCheckpointError(f"agent checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, don't dump a pickle traceback
        raise AgentCheckpointError(f"{path} is not a readable agent checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AgentCheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return payload
