"""Training loops: the world model, its checkpoints and the device it runs on."""

from dreamer.training.checkpoint import CheckpointError, load_world_model
from dreamer.training.device import resolve_device
from dreamer.training.world_model import NonFiniteError, WorldModelTrainingResult, train_world_model

__all__ = [
    "CheckpointError",
    "NonFiniteError",
    "WorldModelTrainingResult",
    "load_world_model",
    "resolve_device",
    "train_world_model",
]
