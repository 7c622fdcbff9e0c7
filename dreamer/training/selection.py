"""Model selection on the validation split: keep the best weights seen, stop when they stop improving.

Both trainers score their model every `validate_every` updates (the world model by its val loss, the
policy by the net Sharpe ratio of a val-split backtest) and hand the score to a `ModelSelection`. It keeps
a copy of the weights of the best score so far; after `patience` validations in a row without a better one
it says to stop (patience 0: never; nor before update `min_step`). At the end the trainer loads the kept
weights. The state, best weights included, goes into the trainer's checkpoint, so a resumed run selects
exactly what an uninterrupted one would.

A score that is missing or not finite (a policy that never trades has no Sharpe ratio) counts as the worst
possible, so it is kept only when nothing better was ever seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class ModelSelection:
    patience: int  # validations without improvement before `should_stop` (0: never)
    higher_is_better: bool
    min_step: int = 0  # never stop before this update: a policy still flat early on is not done learning
    best_score: float | None = None
    best_step: int = 0
    last_step: int = 0
    stale: int = 0  # validations since the best one
    validations: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)  # a detached copy of the best weights

    def observe(self, step: int, score: float | None, module: nn.Module) -> bool:
        """Record the score of `module`'s weights after update `step`; True when it is the best so far."""
        self.validations += 1
        self.last_step = step
        if self.validations > 1 and not self._better(score):
            self.stale += 1
            return False
        self.best_score = score if score is not None and math.isfinite(score) else None
        self.best_step, self.stale = step, 0
        self.best_state = {name: value.detach().clone() for name, value in module.state_dict().items()}
        return True

    def _better(self, score: float | None) -> bool:
        if score is None or not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.higher_is_better else score < self.best_score

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale >= self.patience and self.last_step >= self.min_step

    def restore_best(self, module: nn.Module) -> None:
        """Load the best weights into `module` (nothing to do before the first validation)."""
        if self.best_state:
            module.load_state_dict(self.best_state)

    def summary(self) -> dict[str, float]:
        """`selection/*` metrics: the best step and score, validations run, and whether training stopped early."""
        return {
            "selection/best_step": float(self.best_step),
            "selection/best_score": math.nan if self.best_score is None else self.best_score,
            "selection/validations": float(self.validations),
            "selection/stopped_early": float(self.should_stop),
        }

    def to_dict(self) -> dict[str, Any]:
        """For a checkpoint (tensors and plain numbers, loadable with `weights_only=True`)."""
        return {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "last_step": self.last_step,
            "stale": self.stale,
            "validations": self.validations,
            "best_state": self.best_state,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any], like: ModelSelection) -> ModelSelection:
        """The state `to_dict` saved, under the rules (patience, direction, min_step) of `like`."""
        return cls(
            patience=like.patience,
            higher_is_better=like.higher_is_better,
            min_step=like.min_step,
            best_score=saved["best_score"],
            best_step=int(saved["best_step"]),
            last_step=int(saved["last_step"]),
            stale=int(saved["stale"]),
            validations=int(saved["validations"]),
            best_state=dict(saved["best_state"]),
        )
