"""Training the actor-critic purely in imagination, inside a frozen, trained world model.

Each update: sample `B` real training sequences, filter them with the world model's posterior to get
`B·T` start states, pick `imagination_starts` of them, imagine `imagination_horizon` steps with the actor
(charging a perpetual's funding at the rate known at each start, `dreamer.agent.imagination.known_funding`),
and take one actor-critic step (`ActorCritic.update`). The imagined accounts ("lanes") are carried from
one update to the next: each lane is a long-running account that keeps its position, unrealised PnL and
drawdown while being dropped into a fresh market state, so the actor sees accounts of every age, not
only freshly opened flat ones.

Why the world model is frozen rather than trained alternately: the data are a fixed history of a market
that ignores our orders, so a better policy would not give the world model different data to learn from;
it is trained to convergence first (`dreamer.training`) and the policy then learns in the finished model.

Everything is seeded; the checkpoint (written atomically every `checkpoint_every` updates and at the end)
carries the random generators' states and the last update's metrics, so an interrupted run resumed from it
finishes exactly like an uninterrupted one, final metrics included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamer.agent.actor_critic import ActorCritic
from dreamer.agent.checkpoint import AGENT_CHECKPOINT, AgentCheckpointError, load_checkpoint, save_checkpoint
from dreamer.agent.imagination import known_funding
from dreamer.agent.portfolio import Portfolio
from dreamer.agent.validation import SELECTION_METRIC, ValidationBacktest
from dreamer.features.dataset import MarketDataset
from dreamer.features.sampler import SequenceSampler
from dreamer.model.config import DreamerConfig
from dreamer.model.world_model import WorldModel
from dreamer.training import load_world_model, resolve_device
from dreamer.training.checkpoint import restore_rng_state, rng_state
from dreamer.training.selection import ModelSelection
from dreamer.training.world_model import truncate_metrics

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# Fields that may differ between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {
    "policy_steps",
    "device",
    "policy_validate_every",
    "early_stopping_patience",
    "early_stopping_warmup",
}

MetricsCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class PolicyTrainingResult:
    checkpoint: Path  # the self-contained agent checkpoint
    metrics_path: Path  # one JSON object per update
    steps: int
    final_metrics: dict[str, float]
    seconds: float


def train_policy(
    world_model_checkpoint: str | Path,
    dataset: MarketDataset | str | Path,
    cfg: DreamerConfig,
    out_dir: str | Path,
    *,
    init_from: str | Path | None = None,
    on_metrics: MetricsCallback | None = None,
    checkpoint_every: int = 250,
) -> PolicyTrainingResult:
    """Train the actor-critic in the world model saved at `world_model_checkpoint`; write the agent
    checkpoint and `metrics.jsonl` under `out_dir`. Resumes from `out_dir/checkpoint.pt` if present; a
    fresh start takes the actor-critic of the agent checkpoint `init_from` when given (warm start)."""
    data = dataset if isinstance(dataset, MarketDataset) else MarketDataset.load(dataset)
    world_model, _, _ = load_world_model(world_model_checkpoint, device=resolve_device(cfg.device))
    return train_policy_in(
        world_model, data, cfg, out_dir, init_from=init_from, on_metrics=on_metrics, checkpoint_every=checkpoint_every
    )


def train_policy_in(
    world_model: WorldModel,
    dataset: MarketDataset,
    cfg: DreamerConfig,
    out_dir: str | Path,
    *,
    init_from: str | Path | None = None,
    on_metrics: MetricsCallback | None = None,
    checkpoint_every: int = 250,
) -> PolicyTrainingResult:
    """`train_policy` with a live world model (its weights are not changed). With
    `cfg.policy_validate_every` the policy is scored by a backtest on the val split and the best
    actor-critic is kept (`dreamer.training.selection`)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path, metrics_path = out_dir / AGENT_CHECKPOINT, out_dir / METRICS_FILE
    device = next(world_model.parameters()).device
    world_model = world_model.eval().requires_grad_(False)
    _check_compatible(world_model, dataset, cfg)

    torch.manual_seed(cfg.seed)
    agent = ActorCritic(world_model, cfg).to(device)
    sampler = SequenceSampler(dataset, "train", cfg.sequence_length, cfg.batch_size, seed=cfg.seed, device=device)
    num_starts = min(cfg.imagination_starts, cfg.batch_size * cfg.sequence_length)
    horizon = cfg.imagination_horizon
    known_rate = torch.tensor(dataset.funding.known_rate, dtype=torch.float32, device=device)  # [R]
    next_settlements = torch.tensor(dataset.funding.next_settlements, dtype=torch.float32, device=device)  # [R]
    lanes = dataclasses.replace(Portfolio.flat(num_starts, device), position=random_positions(num_starts, cfg, device))
    step = 0
    metrics: dict[str, float] = {}  # the last update's, reported as the final metrics
    min_step = cfg.early_stopping_min_steps(cfg.policy_steps)
    selection = ModelSelection(cfg.early_stopping_patience, higher_is_better=True, min_step=min_step)
    validate_every = cfg.policy_validate_every
    scorer = ValidationBacktest.for_dataset(world_model, dataset, cfg) if validate_every else None

    if checkpoint_path.exists():
        step, lanes, metrics, selection = _resume(checkpoint_path, agent, sampler, world_model, cfg, device, selection)
        log.info("resuming policy training from step %d of %d", step, cfg.policy_steps)
    elif init_from is not None:
        load_initial_actor_critic(agent, init_from, device)
        log.info("actor-critic warm-started from %s", init_from)
    truncate_metrics(metrics_path, step)  # a crash before the first checkpoint left lines to redo

    with metrics_path.open("a", encoding="utf-8") as metrics_file:
        if scorer is not None and init_from is not None and step == 0:  # the warm start's own actor competes too
            initial = scorer.score(agent.actor)
            selection.observe(0, initial[SELECTION_METRIC], agent)
            metrics_file.write(json.dumps({"step": 0, **initial}) + "\n")
        while step < cfg.policy_steps and not selection.should_stop:
            windows = sampler.sample_starts()  # [B]
            obs, _ = sampler.gather(windows)  # [B, T, F]
            with torch.no_grad():
                posterior = world_model.observe(obs).flatten()  # h [B·T, D], z [B·T, S·K]
            pick = torch.randperm(posterior.h.shape[0], device=device)[:num_starts]
            start = type(posterior)(posterior.h[pick], posterior.z[pick])
            funding = known_funding(known_rate, next_settlements, sampler.window_rows(windows)[pick], horizon)
            tick = time.perf_counter()
            trajectory, metrics = agent.update(world_model, start, lanes, funding)
            lanes = trajectory.final_portfolio
            step += 1
            metrics["time/update_ms"] = (time.perf_counter() - tick) * 1e3
            if scorer is not None and (step % validate_every == 0 or step == cfg.policy_steps):
                metrics |= scorer.score(agent.actor)
                selection.observe(step, metrics[SELECTION_METRIC], agent)
            metrics_file.write(json.dumps({"step": step, **metrics}) + "\n")
            if on_metrics is not None:
                on_metrics(step, metrics)
            if step % checkpoint_every == 0 or step == cfg.policy_steps or selection.should_stop:
                metrics_file.flush()
                _save(checkpoint_path, agent, world_model, dataset, cfg, step, lanes, sampler, metrics, selection)
            if step % 100 == 0:
                log.info(
                    "policy step %d/%d: imagined return %.3f bp, turnover %.3f a bar",
                    step,
                    cfg.policy_steps,
                    metrics["imagined/return"],
                    metrics["imagined/turnover"],
                )
    if scorer is not None and selection.validations:
        if selection.should_stop:
            log.info("policy: val Sharpe not improved in %d validations, stopped at step %d", selection.stale, step)
        selection.restore_best(agent)
        metrics = {**metrics, **scorer.score(agent.actor), **selection.summary()}
        _save(checkpoint_path, agent, world_model, dataset, cfg, step, lanes, sampler, metrics, selection)
    elif not checkpoint_path.exists():  # policy_steps == 0: still a usable (untrained) agent
        _save(checkpoint_path, agent, world_model, dataset, cfg, step, lanes, sampler, metrics, selection)
    return PolicyTrainingResult(checkpoint_path, metrics_path, step, metrics, time.perf_counter() - started)


def load_initial_actor_critic(agent: ActorCritic, path: str | Path, device: torch.device) -> None:
    """Initialise `agent`'s actor, critic, slow critic and return normaliser from the agent checkpoint at
    `path` (e.g. the champion's); the optimiser starts fresh. The networks must have the same shapes."""
    saved = load_checkpoint(path, device)
    try:
        agent.load_state_dict(saved["actor_critic"])
    except RuntimeError as exc:  # missing keys or other shapes
        raise AgentCheckpointError(f"cannot warm-start the actor-critic from {path}: {exc}") from exc


def random_positions(size: int, cfg: DreamerConfig, device: torch.device) -> torch.Tensor:
    """`[size]` positions the lanes start from: uniform on [−1, 1] for the band actor, uniform over the
    levels for the categorical one, so the critic sees accounts of every size from the first update."""
    if cfg.actor_grad == "dynamics":
        return torch.rand(size, device=device) * 2.0 - 1.0
    levels = torch.tensor(cfg.position_levels, device=device)
    return levels[torch.randint(len(levels), (size,), device=device)]


def _check_compatible(world_model: WorldModel, dataset: MarketDataset, cfg: DreamerConfig) -> None:
    if world_model.obs_dim != dataset.num_features:
        raise AgentCheckpointError(
            f"the world model reads {world_model.obs_dim} features but the dataset has {dataset.num_features}"
        )
    if world_model.action_dim not in (0, len(cfg.position_levels)):
        raise AgentCheckpointError("the world model's action size does not match dreamer.position_levels")


def _save(
    path: Path,
    agent: ActorCritic,
    world_model: WorldModel,
    dataset: MarketDataset,
    cfg: DreamerConfig,
    step: int,
    lanes: Portfolio,
    sampler: SequenceSampler,
    metrics: dict[str, float],
    selection: ModelSelection,
) -> None:
    save_checkpoint(
        path,
        {
            "config": dataclasses.asdict(cfg),
            "world_model_config": dataclasses.asdict(world_model.cfg),
            "obs_dim": world_model.obs_dim,
            "feature_names": list(dataset.feature_names),
            "normaliser": dataset.normaliser.to_dict(),
            "meta": {key: value for key, value in dataset.meta.items() if isinstance(value, str | int | float)},
            "world_model": world_model.state_dict(),
            "actor_critic": agent.state_dict(),
            "optimizer": agent.optimizer.state_dict(),
            "step": step,
            "lanes": lanes.to_dict(),
            "rng": rng_state(sampler.generator),
            "metrics": dict(metrics),  # a rerun with no update left to do reports these
            "selection": selection.to_dict(),
        },
    )


def _resume(
    path: Path,
    agent: ActorCritic,
    sampler: SequenceSampler,
    world_model: WorldModel,
    cfg: DreamerConfig,
    device: torch.device,
    selection: ModelSelection,
) -> tuple[int, Portfolio, dict[str, float], ModelSelection]:
    """Restore `agent` and `sampler` from the checkpoint at `path`; its step, lanes, last metrics and
    model selection."""
    saved = load_checkpoint(path, device)
    current = dataclasses.asdict(cfg)
    changed = sorted(k for k, v in saved["config"].items() if current.get(k) != v and k not in _RESUMABLE_CHANGES)
    if changed:
        raise AgentCheckpointError(
            f"{path} was trained with a different config ({', '.join(changed)} differ); "
            "use another output directory or delete it to start over"
        )
    if any(not torch.equal(saved["world_model"][k], v) for k, v in world_model.state_dict().items()):
        raise AgentCheckpointError(f"{path} was trained in a different world model; use another output directory")
    agent.load_state_dict(saved["actor_critic"])
    agent.optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rng"], sampler.generator)
    # Checkpoints written before the metrics were saved with them have none to report.
    metrics = {key: float(value) for key, value in saved.get("metrics", {}).items()}
    if "selection" in saved:  # nor had those written before model selection existed
        selection = ModelSelection.from_dict(saved["selection"], selection)
    return int(saved["step"]), Portfolio.from_dict(saved["lanes"], device), metrics, selection
