"""The policy's score for model selection: the net Sharpe ratio of a backtest on the validation split.

Trades the val split exactly as the held-out evaluation trades the test split (`dreamer.evaluation.report`):
the latent warmed up on the bars before it, a flat account at its start, the deterministic decisions, costs
and funding from `dreamer/trading.py`. The world model is frozen while the policy trains, so the window is
filtered once and each validation only re-runs the account and the actor over it (`trade_filtered`).
Latent samples come from the policy's own seeded stream: scoring never touches the training run's RNG.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from dreamer.agent.imagination import agent_input_size
from dreamer.agent.networks import Actor, BandActor, make_actor
from dreamer.agent.policy import TradingPolicy
from dreamer.evaluation.backtest import BacktestError, evaluation_window, run_backtest, settled_funding
from dreamer.evaluation.metrics import compute_metrics, periods_per_year
from dreamer.features.dataset import MarketDataset
from dreamer.model.config import DreamerConfig
from dreamer.model.world_model import WorldModel

log = logging.getLogger(__name__)

SELECTION_METRIC = "val/sharpe"  # what model selection maximises


class ValidationBacktest:
    def __init__(self, world_model: WorldModel, dataset: MarketDataset, cfg: DreamerConfig, split: str = "val") -> None:
        self.window = evaluation_window(dataset, split)
        self.cfg = cfg
        self.periods = periods_per_year(str(dataset.meta.get("interval", "5")))
        rows = self.window.rows  # [N]
        self.obs, self.close = dataset.obs[rows], dataset.close[rows]  # [N, F], [N]
        self.settled = settled_funding(dataset, rows)  # [N]
        self.actor = make_actor(agent_input_size(world_model), cfg)
        self.policy = TradingPolicy(world_model, self.actor, cfg)
        first = int(rows[0])
        self.warm_up_obs = dataset.obs[max(0, first - cfg.sequence_length) : first]
        self.features: torch.Tensor | None = None  # [N, D + S·K], filtered once
        if not world_model.action_dim:
            self._warm_up()
            self.features = self.policy.filter(self.obs)

    @classmethod
    def for_dataset(
        cls, world_model: WorldModel, dataset: MarketDataset, cfg: DreamerConfig
    ) -> ValidationBacktest | None:
        """The val-split scorer, or None (with a warning) when the split is too short to trade."""
        try:
            return cls(world_model, dataset, cfg)
        except BacktestError as exc:
            log.warning("no model selection for the policy: %s", exc)
            return None

    def _warm_up(self) -> None:
        self.policy.reset(self.cfg.seed)
        self.policy.warm_up(self.warm_up_obs)

    def score(self, actor: Actor | BandActor) -> dict[str, float]:
        """`val/sharpe` (0 for a policy that never holds a position: no edge), `val/total_return`,
        `val/turnover` and `val/mean_abs_position` of `actor` trading the val split."""
        self.actor.load_state_dict(actor.state_dict())
        if self.features is None:  # a world model that reads our actions: filter along the new decisions
            self._warm_up()
            positions, _ = self.policy.decide(self.obs, self.close, self.settled)
        else:
            self.policy.reset_account()
            positions, _ = self.policy.trade_filtered(self.features, self.close, self.settled)
        held = positions.cpu().numpy().astype(np.float64)
        window = self.window
        result = run_backtest(held, window.log_returns, self.cfg.cost_rate, funding_rates=window.funding_rates)
        metrics = compute_metrics(result, self.periods)
        return {
            SELECTION_METRIC: float(metrics["sharpe"] or 0.0),
            "val/total_return": float(metrics["total_return"] or 0.0),
            "val/turnover": float(metrics["turnover"] or 0.0),
            "val/mean_abs_position": float(metrics["mean_abs_position"] or 0.0),
        }
