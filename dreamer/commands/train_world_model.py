"""`dreamer train-world-model`: train (or resume training) the DreamerV3 world model on a saved dataset."""

from __future__ import annotations

import argparse
from typing import Any

from dreamer.commands.common import add_command, add_config_arg

EXAMPLES = """examples:
  dreamer train-world-model --dataset runs/demo/dataset --config demo --out runs/demo/world_model
  dreamer train-world-model --dataset runs/demo/dataset --config my.yaml --out wm --device cuda --steps 20000

Rerunning the same command after an interruption resumes from the last checkpoint and ends exactly as an
uninterrupted run would.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "train-world-model",
        summary="train the world model (RSSM, symlog/twohot heads) on a saved dataset's train split",
        description="Train the DreamerV3 world model on the train split of a saved MarketDataset (from "
        "`dreamer features --dataset-dir`). Writes OUT/checkpoint.pt (atomically, every --checkpoint-every "
        "updates) and OUT/metrics.jsonl (one line per update); resumes from OUT/checkpoint.pt if present.",
        examples=EXAMPLES,
    )
    parser.add_argument("--dataset", required=True, help="directory of a saved MarketDataset")
    add_config_arg(parser)
    parser.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.jsonl)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the config's dreamer.device)")
    parser.add_argument("--steps", type=int, help="number of updates (default: dreamer.world_model_steps)")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="updates between checkpoints")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dreamer.config import load_config
    from dreamer.features.dataset import MarketDataset
    from dreamer.training import train_world_model

    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if args.steps is not None:
        overrides["world_model_steps"] = args.steps
    cfg = load_config(args.config, {"dreamer": overrides} if overrides else None).dreamer
    dataset = MarketDataset.load(args.dataset)
    every = max(1, cfg.world_model_steps // 20)

    def report(step: int, metrics: dict[str, float]) -> None:
        if step % every == 0 or step == cfg.world_model_steps:
            print(
                f"step {step:>6}/{cfg.world_model_steps}  loss {metrics['loss/total']:.4f}  "
                f"decoder {metrics['loss/decoder']:.4f}  reward {metrics['loss/reward']:.4f}  "
                f"kl {metrics['kl/raw']:.3f}  {metrics['sequences_per_s']:.0f} seq/s",
                flush=True,
            )

    result = train_world_model(
        dataset, cfg, args.out, resume=not args.no_resume, on_metrics=report, checkpoint_every=args.checkpoint_every
    )
    validation = {k: round(v, 4) for k, v in result.final_metrics.items() if k.startswith("val/loss/")}
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    print(f"world model: {result.steps} updates{resumed} in {result.seconds:.1f} s -> {result.checkpoint}")
    if validation:
        print("validation: " + ", ".join(f"{k.removeprefix('val/loss/')} {v}" for k, v in validation.items()))
    print(f"device {result.device}, seed {cfg.seed}; per-update metrics -> {result.metrics_path}")
    return 0
