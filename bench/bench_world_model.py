"""Benchmark: one world-model update at the seed's sizes, on CPU (1 and 2 threads) and CUDA if present.

    .venv/bin/python -m bench.bench_world_model [--repeats 20] [--obs-dim 32] [--threads 1 2]

An update is exactly what `train_world_model` runs per step (`world_model_update`): loss over a batch of
16 sequences × 64 bars with ~32 features, one backward, global-norm clipping, Adam, plus the one device
sync for metrics and finiteness checks. Sizes: deterministic 200, 30 × 32 categorical latents, hidden 200,
255 twohot bins (`DreamerConfig()` defaults). Prints one JSON object per device/thread count: median and
best ms/update and sequences/s.

Reference: NM512/dreamerv3-torch's world-model update at similar sizes takes 0.35–0.46 s on one core of
the development machine; the target is at least 2× faster (≤ 175 ms). The machine may be shared: rerun,
compare the best times and the CPU times before drawing conclusions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch

from dreamer.model.config import DreamerConfig
from dreamer.model.world_model import WorldModel
from dreamer.training.world_model import world_model_optimizer, world_model_update

NM512_SECONDS_PER_UPDATE = (0.35, 0.46)


def time_updates(cfg: DreamerConfig, obs_dim: int, device: torch.device, repeats: int, warmup: int = 3) -> dict:
    torch.manual_seed(cfg.seed)
    model = WorldModel(obs_dim, cfg).to(device)
    optimizer = world_model_optimizer(model, cfg)
    obs = torch.randn(cfg.batch_size, cfg.sequence_length, obs_dim, device=device)  # [B, T, F]
    returns = torch.randn(cfg.batch_size, cfg.sequence_length, device=device) * 1e-3  # [B, T]
    seconds, cpu_seconds = [], []
    for step in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        world_model_update(model, optimizer, obs, returns, cfg, device, step + 1)  # syncs for the metrics
        if step >= warmup:
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    median, best = statistics.median(seconds), min(seconds)
    return {
        "ms_per_update_median": round(median * 1e3, 1),
        "ms_per_update_best": round(best * 1e3, 1),
        # CPU time of this process (all threads): on a shared machine, less sensitive to other load than wall time.
        "cpu_ms_per_update_median": round(statistics.median(cpu_seconds) * 1e3, 1),
        "sequences_per_s_median": round(cfg.batch_size / median, 1),
        "speedup_vs_nm512_median": [round(ref / median, 2) for ref in NM512_SECONDS_PER_UPDATE],
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--obs-dim", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    cfg = DreamerConfig()
    common = {
        "benchmark": "world_model_update",
        "batch": cfg.batch_size,
        "sequence_length": cfg.sequence_length,
        "obs_dim": args.obs_dim,
        "deterministic": cfg.deterministic_size,
        "stochastic": f"{cfg.stochastic_size}x{cfg.num_categories}",
        "hidden": cfg.hidden_size,
        "bins": cfg.num_bins,
        "torch": torch.__version__,
        "reference_nm512_s_per_update": list(NM512_SECONDS_PER_UPDATE),
    }
    records = []
    threads = torch.get_num_threads()
    for count in args.threads:
        torch.set_num_threads(count)
        timing = time_updates(cfg, args.obs_dim, torch.device("cpu"), args.repeats)
        records.append({**common, "device": f"cpu ({platform.machine()})", "threads": count, **timing})
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        timing = time_updates(cfg, args.obs_dim, torch.device("cuda"), args.repeats * 5)
        records.append({**common, "device": torch.cuda.get_device_name(0), "bf16_autocast": True, **timing})
    for record in records:
        print(json.dumps(record), flush=True)
    return records


if __name__ == "__main__":
    main()
