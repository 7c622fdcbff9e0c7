"""The agent checkpoint: one self-contained file holding everything needed to trade or to resume training.

Contents (a plain dict of tensors, numbers, strings and lists, loadable with `weights_only=True`):
`format`, `config` (the DreamerConfig as a dict), `obs_dim`, `feature_names`, `normaliser` (the training
split's feature statistics), `meta` (symbol, interval, …), `world_model` (state_dict of the frozen world
model the policy was trained in), `actor_critic` (actor, critic, slow critic, return normaliser),
`optimizer`, `step`, `lanes` (the imagined accounts carried between updates) and `rng` (torch and sampler
generator states, so a resumed run continues exactly as an uninterrupted one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dreamer.errors import DreamerError
from dreamer.training.checkpoint import read_checkpoint_file, write_checkpoint_file

AGENT_CHECKPOINT = "checkpoint.pt"
FORMAT = "dreamer-agent/1"


class AgentCheckpointError(DreamerError):
    """An agent checkpoint is missing, truncated or of another format."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write an agent checkpoint atomically."""
    return write_checkpoint_file(path, FORMAT, payload)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read an agent checkpoint (a file, or a directory holding `checkpoint.pt`) onto `device`."""
    path = Path(path)
    if path.is_dir():
        path = path / AGENT_CHECKPOINT
    return read_checkpoint_file(path, FORMAT, "agent", AgentCheckpointError, device)
