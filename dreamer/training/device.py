"""Where training runs and in which precision."""

from __future__ import annotations

import contextlib

import torch

from dreamer.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` -> the first CUDA device when one is present, else the CPU; `cpu`, `cuda`, `cuda:N` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but CUDA is not available on this machine")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA (tensor cores; bf16 keeps fp32's range, so no loss scaling is needed); full
    fp32 on the CPU, where bf16 matmuls are not reliably faster and exact reproducibility is required.
    Distributions, KL and losses are computed in fp32 either way (`.float()` in `dreamer.model`)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
