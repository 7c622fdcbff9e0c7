"""Where training and inference run: which device, in which precision, on how many CPU threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block (restored after). Sequential inference (a policy
    fed bar by bar, a latent rolled forward step by step) runs many small ops, where intra-op threads only
    add synchronisation; on a busy machine their spin-waits made the test-split backtest ~20× slower (165 s
    instead of 7 s for the tiny config on 2 cores) and forecast evaluation ~35× slower (105 s instead of 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
