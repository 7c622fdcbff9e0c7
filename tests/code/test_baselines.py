"""Reference strategies."""

from __future__ import annotations

import numpy as np

from dreamer.evaluation.baselines import buy_and_hold, flat, momentum, random_trading


def test_constant_baselines():
    assert (buy_and_hold(4) == 1).all() and (flat(4) == 0).all()


def test_momentum_uses_only_the_past():
    close = np.array([100.0, 101, 102, 101, 100, 99, 100, 102])
    rows = np.arange(2, 8)
    positions = momentum(close, rows, lookback=2)
    # sign(close[t] / close[t-2] - 1) for t = 2..7
    assert positions.tolist() == [1, 0, -1, -1, 0, 1]
    assert momentum(close, np.arange(0, 3), lookback=2).tolist() == [0, 0, 1]  # no history yet: flat
    changed = close.copy()
    changed[6:] = 1.0  # the future cannot move a decision at row 5
    assert momentum(changed, rows, 2)[:4].tolist() == positions[:4].tolist()


def test_random_trading_matches_trade_count_and_levels():
    levels = (-1.0, -0.5, 0.0, 0.5, 1.0)
    rng = np.random.default_rng(0)
    positions = random_trading(1000, 37, levels, rng)
    changes = np.diff(np.concatenate([[0.0], positions])) != 0
    assert changes.sum() == 37
    assert set(np.unique(positions)) <= set(levels)
    assert (random_trading(50, 0, levels, rng) == 0).all()
    assert np.diff(np.concatenate([[0.0], random_trading(5, 10, levels, rng)])).all()  # capped at every bar
