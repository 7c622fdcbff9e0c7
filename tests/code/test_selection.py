"""`ModelSelection`: which weights are kept and when training stops, on scripted scores."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dreamer.training.selection import ModelSelection


def scored(selection: ModelSelection, scores: list[float | None], module: nn.Linear) -> list[int]:
    """Feed `scores` at steps 1, 2, …, setting the weight to the step before each; the steps that improved."""
    improved = []
    for step, score in enumerate(scores, start=1):
        with torch.no_grad():
            module.weight.fill_(step)
        if selection.observe(step, score, module):
            improved.append(step)
        if selection.should_stop:
            break
    return improved


def test_keeps_the_lowest_loss_and_stops_after_patience_validations_without_improvement() -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=2, higher_is_better=False)
    improved = scored(selection, [5.0, 4.0, 4.5, 3.0, 3.5, 3.2, 1.0], module)
    assert improved == [1, 2, 4]
    assert selection.should_stop and selection.validations == 6  # the 1.0 at step 7 is never seen
    assert (selection.best_step, selection.best_score) == (4, 3.0)
    selection.restore_best(module)
    assert module.weight.item() == 4.0


def test_higher_is_better_and_patience_zero_never_stops() -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=0, higher_is_better=True)
    assert scored(selection, [1.0, 0.5, 0.4, 0.3, 0.2, 2.0, 0.1], module) == [1, 6]
    assert not selection.should_stop and selection.best_step == 6


def test_missing_scores_are_the_worst_and_kept_only_until_a_real_one() -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=5, higher_is_better=True)
    assert scored(selection, [None, math.nan, -3.0, None, math.inf], module) == [1, 3]
    assert selection.best_score == -3.0 and selection.stale == 2


def test_the_kept_weights_are_a_copy_not_a_view() -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=0, higher_is_better=False)
    scored(selection, [1.0, 2.0], module)
    assert module.weight.item() == 2.0 and selection.best_state["weight"].item() == 1.0


def test_round_trips_through_a_checkpoint(tmp_path) -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=3, higher_is_better=False)
    scored(selection, [2.0, 1.0, 1.5], module)
    torch.save(selection.to_dict(), tmp_path / "selection.pt")
    restored = ModelSelection.from_dict(torch.load(tmp_path / "selection.pt", weights_only=True), selection)
    assert restored.to_dict().keys() == selection.to_dict().keys()
    assert (restored.best_step, restored.best_score, restored.stale, restored.validations) == (2, 1.0, 1, 3)
    assert torch.equal(restored.best_state["weight"], selection.best_state["weight"])
    assert restored.summary() == pytest.approx(selection.summary())


def test_no_early_stop_before_min_step() -> None:
    module, selection = nn.Linear(1, 1), ModelSelection(patience=2, higher_is_better=True, min_step=5)
    assert scored(selection, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], module) == [1]
    assert selection.should_stop and selection.validations == 5  # stale since step 3, stopped at step 5
