"""`TradingEnv`: one split of a `MarketDataset` as a Gymnasium environment, for model-free baselines.

Timing and PnL are those of the backtest (`dreamer.evaluation.backtest`): at the close of bar t the agent
sees `obs[t]` and its account, picks a position, holds it to the close of bar t+1 and earns
`dreamer.trading.net_log_return` of the move (`evaluation_window`'s close-to-close log return), paying
`cost_rate · |Δposition|` and `position · funding.next_rate[t]` (the rates settled while it is held). The
account is `dreamer.agent.portfolio.Portfolio`, the same one the Dreamer actor carries, stepped in float64,
so the rewards of a whole split traded once sum to the backtest's net log return of the same positions.

Episodes. `reset()` starts at a row drawn uniformly with the env's seeded generator (`reset(seed=...)`)
from the rows that can be traded; `reset(options={"start": row})` starts at a chosen one. An episode is
truncated (never terminated: the market goes on) after `episode_bars` bars or where no next bar can be
traded: at the split's end and, unless `hold_through_gaps`, at the last bar before a data gap (a change
of `segment_id`), whose move spans missing bars, as the world model's training windows never cross one.
With `hold_through_gaps=True`, `episode_bars=None` and `start` at the split's first row, one episode trades
exactly the rows of `evaluation_window(dataset, split)`, holding through gaps as the backtest does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from dreamer.agent.portfolio import PORTFOLIO_FEATURES, Portfolio
from dreamer.errors import DreamerError
from dreamer.evaluation.backtest import evaluation_window
from dreamer.evaluation.ppo_config import DEFAULT_REWARD_SCALE
from dreamer.features.dataset import MarketDataset
from dreamer.model.config import DreamerConfig

ActionKind = Literal["discrete", "continuous"]

_DEFAULTS = DreamerConfig()


class TradingEnvError(DreamerError):
    """An environment argument is out of range, or the split has nothing to trade."""


class TradingEnv(gym.Env[np.ndarray, Any]):
    """Trade one split of a `MarketDataset` bar by bar (see the module docstring for timing and episodes).

    * Observation (`float32 [F + 3]`): `dataset.obs[t]`, the normalised features of bar t, followed by
      `Portfolio.features()`: the position held, the open position's unrealised log PnL and the drawdown
      below the episode's equity peak, both as symlog basis points. Episodes start flat.
    * Action: `action="discrete"`: `Discrete(len(position_levels))`, the index of a position level (the
      Dreamer config's `position_levels` by default); `"continuous"`: `Box(-1, 1, (1,))`, the position
      itself, clipped to [-1, 1].
    * Reward: `reward_scale ×` the bar's net log return (default × 100, percent: see
      `dreamer.evaluation.ppo_config.DEFAULT_REWARD_SCALE`).
    * `info` of a step: `row` (the dataset row t whose close the position was taken at), `position`, and
      `net_log_return`, the unscaled float64 net log return of the bar. `info` of a reset: `row`.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(
        self,
        dataset: MarketDataset,
        split: str = "train",
        *,
        action: ActionKind = "discrete",
        position_levels: Sequence[float] = _DEFAULTS.position_levels,
        cost_rate: float = _DEFAULTS.cost_rate,
        episode_bars: int | None = 2048,
        reward_scale: float = DEFAULT_REWARD_SCALE,
        hold_through_gaps: bool = False,
    ) -> None:
        """`cost_rate`: fee + slippage per unit of position traded (default: the Dreamer config's, Bybit's
        taker fee plus 1 bp). `episode_bars`: bars per episode at most (None: to the split's or segment's
        end). `hold_through_gaps`: let an episode hold a position across a data gap (evaluation) instead
        of ending before it (training)."""
        if action not in ("discrete", "continuous"):
            raise TradingEnvError(f"action must be 'discrete' or 'continuous', got {action!r}")
        levels = np.asarray(position_levels, dtype=np.float64)
        if action == "discrete" and (levels.ndim != 1 or levels.size < 2 or not (np.abs(levels) <= 1.0).all()):
            raise TradingEnvError(f"position_levels must be at least two levels in [-1, 1], got {position_levels}")
        if not (np.isfinite(cost_rate) and cost_rate >= 0):
            raise TradingEnvError(f"cost_rate must be a finite number >= 0, got {cost_rate}")
        if episode_bars is not None and episode_bars < 1:
            raise TradingEnvError(f"episode_bars must be >= 1 or None, got {episode_bars}")
        if not (np.isfinite(reward_scale) and reward_scale > 0):
            raise TradingEnvError(f"reward_scale must be a finite number > 0, got {reward_scale}")
        dataset.split_slice(split)  # an unknown split name fails here, naming the known ones
        window = evaluation_window(dataset, split)
        self.dataset = dataset
        self.split = split
        self.action_kind: ActionKind = action
        self.position_levels = tuple(float(level) for level in levels)
        self.cost_rate = float(cost_rate)
        self.episode_bars = episode_bars
        self.reward_scale = float(reward_scale)
        self.hold_through_gaps = hold_through_gaps
        self._first_row = int(window.rows[0])
        self._log_returns = torch.from_numpy(window.log_returns)  # [N] float64, over each traded row's bar
        self._funding_rates = torch.from_numpy(window.funding_rates)  # [N] float64
        # tradable[i]: row first_row + i may open or hold a position in an episode.
        rows = window.rows
        self._tradable = (
            np.ones(rows.size, dtype=bool)
            if hold_through_gaps
            else dataset.segment_id[rows + 1] == dataset.segment_id[rows]
        )
        self._starts = np.flatnonzero(self._tradable)  # [S] local indices a random episode may start at
        if self._starts.size == 0:
            raise TradingEnvError(f"split {split!r} has no two consecutive bars in one gap-free segment to trade")

        features = dataset.num_features
        low = np.full(features + PORTFOLIO_FEATURES, -np.inf, dtype=np.float32)
        high = np.full(features + PORTFOLIO_FEATURES, np.inf, dtype=np.float32)
        low[features], high[features] = -1.0, 1.0  # the position
        low[features + 2] = 0.0  # the drawdown
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space: gym.spaces.Space[Any] = (
            gym.spaces.Discrete(len(self.position_levels))
            if action == "discrete"
            else gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        )
        self._index = -1  # local index of the row whose close the next action is taken at; -1: reset needed
        self._bars = 0  # bars traded in this episode
        self._portfolio = _flat_account()

    @classmethod
    def from_dataset(cls, dataset_dir: str | Path, split: str = "train", **kwargs: Any) -> TradingEnv:
        """The env over `split` of the dataset saved in `dataset_dir` (a run's `<run-dir>/dataset`);
        `kwargs` as for the constructor."""
        return cls(MarketDataset.load(dataset_dir), split, **kwargs)

    @property
    def first_row(self) -> int:
        """The split's first dataset row: `reset(options={"start": env.first_row})` trades it from the start."""
        return self._first_row

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start flat at `options["start"]` (a dataset row) or at a random tradable row of the split."""
        super().reset(seed=seed)
        start = (options or {}).get("start")
        if start is None:
            index = int(self._starts[self.np_random.integers(self._starts.size)])
        else:
            index = int(start) - self._first_row
            if not (0 <= index < self._tradable.size and self._tradable[index]):
                raise TradingEnvError(f"row {start} cannot start an episode of split {self.split!r}")
        self._index, self._bars = index, 0
        self._portfolio = _flat_account()
        return self._observation(), {"row": self._first_row + index}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._index < 0:
            raise TradingEnvError("the episode has ended (or never started): call reset()")
        index = self._index
        position = self._position(action)
        bar = slice(index, index + 1)
        self._portfolio, net = self._portfolio.step(
            torch.tensor([position], dtype=torch.float64),
            self._log_returns[bar],
            self.cost_rate,
            self._funding_rates[bar],
        )
        net_log_return = float(net.item())
        self._bars += 1
        following = index + 1
        truncated = (
            following >= self._tradable.size
            or not self._tradable[following]
            or (self.episode_bars is not None and self._bars >= self.episode_bars)
        )
        self._index = following
        observation = self._observation()  # bar t+1's close: the final observation when truncated
        if truncated:
            self._index = -1
        info = {"row": self._first_row + index, "position": position, "net_log_return": net_log_return}
        return observation, self.reward_scale * net_log_return, False, truncated, info

    def _position(self, action: Any) -> float:
        if self.action_kind == "discrete":
            if not self.action_space.contains(action):
                raise TradingEnvError(f"action {action!r} is not in {self.action_space}")
            return self.position_levels[int(action)]
        position = np.asarray(action, dtype=np.float64).reshape(-1)
        if position.size != 1 or not np.isfinite(position[0]):
            raise TradingEnvError(f"a continuous action is one finite number, got {action!r}")
        return float(np.clip(position[0], -1.0, 1.0))

    def _observation(self) -> np.ndarray:
        account = self._portfolio.features()[0].numpy().astype(np.float32)  # [3]
        return np.concatenate([self.dataset.obs[self._first_row + self._index], account])


def _flat_account() -> Portfolio:
    """A flat account of one lane in float64, so its PnL matches the float64 backtest to ~1e-18 a bar."""
    zeros = torch.zeros(1, dtype=torch.float64)
    return Portfolio(zeros, zeros.clone(), zeros.clone())
