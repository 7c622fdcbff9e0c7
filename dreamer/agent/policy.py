"""`TradingPolicy`: a trained agent turned into target positions, bar by bar, with no look-ahead.

At the close of each bar t the policy (1) books the bar's realised return `log(close_t / close_{t−1})` on
the position it has held since t−1 (its own account: position, unrealised PnL, drawdown, exactly as in
imagination), (2) filters the world model's posterior with the bar's features, and (3) takes the actor's
deterministic decision: the held position clipped into the band actor's no-trade band, or the categorical
actor's most likely level. The position returned for bar t is held over bar t+1.

Used by the backtest, `dreamer predict` and the MLflow pyfunc model. State is kept between calls, so a
live caller can feed bars one at a time; `reset()` starts a new flat account from the initial latent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamer.agent.checkpoint import load_checkpoint
from dreamer.agent.imagination import agent_input, agent_input_size
from dreamer.agent.networks import Actor, BandActor, make_actor
from dreamer.agent.portfolio import Portfolio
from dreamer.config import from_mapping
from dreamer.features.dataset import Normaliser
from dreamer.model.config import DreamerConfig
from dreamer.model.rssm import RSSMState
from dreamer.model.world_model import WorldModel
from dreamer.training.device import single_threaded


class TradingPolicy:
    def __init__(
        self,
        world_model: WorldModel,
        actor: Actor | BandActor,
        cfg: DreamerConfig,
        normaliser: Normaliser | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.world_model = world_model.eval().requires_grad_(False)
        self.actor = actor.eval().requires_grad_(False)
        self.cfg = cfg
        self.normaliser = normaliser  # what `obs` must already be normalised with
        self.meta = dict(meta or {})
        self.device = next(world_model.parameters()).device
        self.levels = torch.tensor(cfg.position_levels, device=self.device)  # [L]
        self.reset()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TradingPolicy:
        """From an agent checkpoint file (or the directory holding `checkpoint.pt`)."""
        saved = load_checkpoint(path, device)
        # Agents saved before the band actor existed were all categorical REINFORCE actors.
        cfg = from_mapping(DreamerConfig, {"actor_grad": "reinforce", **saved["config"]})
        world_model = WorldModel(int(saved["obs_dim"]), from_mapping(DreamerConfig, saved["world_model_config"]))
        world_model.load_state_dict(saved["world_model"])
        actor = make_actor(agent_input_size(world_model), cfg)
        actor.load_state_dict(
            {k[len("actor.") :]: v for k, v in saved["actor_critic"].items() if k.startswith("actor.")}
        )
        normaliser = Normaliser.from_dict(saved["normaliser"])
        return cls(world_model.to(device), actor.to(device), cfg, normaliser, saved.get("meta"))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.normaliser.feature_names if self.normaliser is not None else ()

    @property
    def position(self) -> float:
        """The position currently held (the last one returned)."""
        return float(self.portfolio.position.item())

    def reset(self, seed: int | None = None) -> None:
        """Flat account, the world model's learned initial latent, and a fresh seed for latent sampling."""
        self.reset_account()
        self.state: RSSMState | None = None
        self.generator_seed = self.cfg.seed if seed is None else seed
        self.bars_seen = 0

    def reset_account(self) -> None:
        """A new flat account; the latent state is kept."""
        self.portfolio = Portfolio.flat(1, self.device)
        self.last_close: float | None = None
        self.pending = torch.zeros(1, device=self.device)  # the position chosen at the last close

    @torch.no_grad()
    def warm_up(self, obs: np.ndarray) -> None:
        """Filter the latent over `obs [W, F]` (bars before trading starts) without trading."""
        with single_threaded():
            self._warm_up(np.asarray(obs, dtype=np.float32))

    def _warm_up(self, obs: np.ndarray) -> None:
        if self.world_model.action_dim:
            for row in obs:
                self._filter_step(row)
        elif len(obs):
            self._filter(obs)

    @torch.no_grad()
    def target_positions(self, obs: np.ndarray, close: np.ndarray, funding: np.ndarray | None = None) -> np.ndarray:
        """`obs [N, F]` (features normalised like the training data) and `close [N]` of consecutive bars
        -> target positions `[N]`, each decided at its bar's close and held over the next bar.

        `funding [N]`: on a perpetual, the rates settled during each bar (after the previous close, up to
        this one), which the position held over it paid (booked in the account); None: no funding."""
        return self.decide(obs, close, funding)[0].cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def decide(
        self, obs: np.ndarray, close: np.ndarray, funding: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`target_positions` as tensors, with the agent state each decision was taken from:
        (positions `[N]`, agent inputs `x [N, D + S·K + 3]`, the actor's and critic's input)."""
        funding = np.zeros(len(close)) if funding is None else funding
        with single_threaded():
            return self._decide(
                np.asarray(obs, dtype=np.float32), np.asarray(close, dtype=np.float64), np.asarray(funding, np.float64)
            )

    def _decide(self, obs: np.ndarray, close: np.ndarray, funding: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if obs.ndim != 2 or close.shape != (obs.shape[0],) or funding.shape != close.shape:
            raise ValueError(
                f"expected obs [N, F], close [N] and funding [N], got {obs.shape}, {close.shape} and {funding.shape}"
            )
        if len(close) == 0:
            empty = torch.empty(0, device=self.device)
            return empty, torch.empty(0, agent_input_size(self.world_model), device=self.device)
        # The market ignores our orders by default, so the whole window is filtered in one call; with
        # `world_model_uses_action` the latent depends on the previous position and is filtered bar by bar.
        if self.world_model.action_dim:
            return self._trade(None, close, funding, obs)
        return self._trade(self._filter(obs), close, funding)

    @torch.no_grad()
    def filter(self, obs: np.ndarray) -> torch.Tensor:
        """The latent features `[N, D + S·K]` of `obs [N, F]`, filtered on from the current latent (for
        `trade_filtered`; a world model that reads our actions needs `decide`, which filters bar by bar)."""
        if self.world_model.action_dim:
            raise ValueError("a world model with action input is filtered bar by bar: use decide()")
        with single_threaded():
            return self._filter(np.asarray(obs, dtype=np.float32))

    @torch.no_grad()
    def trade_filtered(
        self, features: torch.Tensor, close: np.ndarray, funding: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`decide` on latent features `[N, D + S·K]` already filtered (`filter`): the account and the actor
        only. Model selection re-trades one filtered window with each new actor this way."""
        with single_threaded():
            return self._trade(features, np.asarray(close, dtype=np.float64), np.asarray(funding, np.float64))

    def _trade(
        self, features: torch.Tensor | None, close: np.ndarray, funding: np.ndarray, obs: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The bar-by-bar account and decisions, on `features [N, ·]`, or filtering `obs [N, F]` step by step."""
        inputs = torch.empty(len(close), agent_input_size(self.world_model), device=self.device)
        positions = torch.empty(len(close), device=self.device)
        previous = np.concatenate([[np.nan if self.last_close is None else self.last_close], close[:-1]])
        realised = torch.from_numpy(np.log(close / previous)).float().to(self.device)  # [N], NaN: unknown
        paid = torch.from_numpy(funding).float().to(self.device)  # [N]
        for t in range(len(close)):
            if torch.isfinite(realised[t]):  # book the bar that just closed on the position held over it
                self.portfolio, _ = self.portfolio.step(
                    self.pending, realised[t : t + 1], self.cfg.cost_rate, paid[t : t + 1]
                )
            if features is not None:
                latent = features[t : t + 1]  # [1, D + S·K]
            else:
                assert obs is not None
                latent = self._filter_step(obs[t])
            inputs[t] = agent_input(latent, self.portfolio)[0]
            self.pending = self.actor.act(inputs[t : t + 1], self.portfolio.position, sample=False)[0]  # [1]
            positions[t] = self.pending[0]
        self.last_close = float(close[-1])
        return positions, inputs

    def _filter(self, obs: np.ndarray) -> torch.Tensor:
        """Posterior filtering over `obs [N, F]` from the current latent -> features `[N, D + S·K]`."""
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)[None]  # [1, N, F]
        with self._seeded():
            states = self.world_model.observe(x, state=self.state)  # h [1, N, D], z [1, N, S·K]
        self.state = RSSMState(states.h[:, -1], states.z[:, -1])
        self.bars_seen += len(obs)
        return self.world_model.features(states)[0]

    def _filter_step(self, row: np.ndarray) -> torch.Tensor:
        """One posterior step on `row [F]`, fed the position held before it: features `[1, D + S·K]`."""
        state = self.state if self.state is not None else self.world_model.initial_state(1)
        index = (self.levels - self.pending).abs().argmin()[None]  # [1]
        action = F.one_hot(index, len(self.levels)).float()  # [1, L]
        with self._seeded():
            self.state = self.world_model.observe_step(state, torch.from_numpy(row).to(self.device)[None], action)
        self.bars_seen += 1
        return self.world_model.features(self.state)

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """The posterior's latent samples are random: draw them from a seed keyed by the policy's seed and
        its position in the stream, so a backtest is reproducible and global RNGs are left untouched."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.generator_seed + self.bars_seen)
            yield
