"""Configuration of the walk-forward evaluation (`dreamer.research.walk_forward`). No numpy or torch here, so
a config can be read and checked without them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dreamer.errors import require, require_in_range

WalkForwardMode = Literal["rolling", "expanding"]
MAX_WINDOW_DAYS = 36_500.0  # a century: far above any useful window, low enough to turn a typo into an error


@dataclass(frozen=True)
class WalkForwardConfig:
    """K folds of (train, purge, validation, purge, test) laid back from the data's end.

    The test windows are `test_days` long each, consecutive and non-overlapping, the last one ending at the
    last bar. Before each test window lie `val_days` of validation bars and before those `train_days` of
    training bars, each separated from the next by the split's purge (`split.purge_bars`), which comes on top
    of these lengths. `rolling`: every fold trains on its own `train_days`; `expanding`: every fold trains
    on everything from the first bar with complete features (the first fold needs at least `train_days`).
    With `warm_start_from_previous_fold`, a fold's training starts from the agent of the previous fold of
    the same seed instead of from the seed."""

    folds: int = 4
    mode: WalkForwardMode = "rolling"
    train_days: float = 90.0
    val_days: float = 14.0
    test_days: float = 14.0
    warm_start_from_previous_fold: bool = False

    def __post_init__(self) -> None:
        require_in_range(self, "walk_forward", {"folds": (1, 1_000)})
        for key in ("train_days", "val_days", "test_days"):
            days = getattr(self, key)
            require(
                0.0 < days <= MAX_WINDOW_DAYS,
                f"walk_forward.{key} must be in (0, {MAX_WINDOW_DAYS:,.0f}] days, got {days!r}",
            )
