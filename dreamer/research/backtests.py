"""Backtests kept bar by bar on disk, and combined into one account.

`save_backtests` writes the backtests of one evaluation window (the agent's and every baseline's
`BacktestResult`, with the window's open times) to one `.npz`; `load_backtests` reads them back exactly.

`concatenate` chains windows that follow one another (each window's last bar, whose close ends it, is the
next window's first traded bar) into one account: its per-bar returns, positions and trades are the
windows' own, in order, and each window compounds on the equity the previous one ended with. Every window's
backtest starts flat, so a position held across a boundary pays to be entered again and was never charged
an exit: the chained account is exactly the sequence of the windows' backtests, not one continuous backtest.

`average` is the account that splits its equity equally between backtests of the same bars (e.g. the
agents of several seeds) and rebalances every bar: its per-bar return is their mean (the rebalancing
trades themselves are not charged).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamer.errors import DreamerError
from dreamer.evaluation.backtest import BacktestResult
from dreamer.features.dataset import atomic_write_bytes

BACKTESTS_FILE = "backtests.npz"  # what `dreamer.pipeline.stage_evaluate` writes beside metrics.json
RESULT_FIELDS = tuple(field.name for field in dataclasses.fields(BacktestResult))
_PER_BAR = ("positions", "log_returns", "position_changes", "net_returns", "gross_returns")


class BacktestsError(DreamerError):
    """Saved backtests are missing or inconsistent, or windows that do not line up were combined."""


@dataclass(frozen=True)
class Backtests:
    """The backtests of several series over the same N bars."""

    open_time_ms: np.ndarray  # [N + 1] open times of the N traded bars and of the bar whose close ends them
    results: dict[str, BacktestResult]  # series name (agent, a baseline) -> its backtest over the N bars

    def __post_init__(self) -> None:
        bars = len(self.open_time_ms) - 1
        if bars < 1 or not self.results:
            raise BacktestsError("backtests need at least one series over at least one bar")
        for name, result in self.results.items():
            if result.num_bars != bars:
                raise BacktestsError(f"backtest {name!r} has {result.num_bars} bars, the window {bars}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.results)


def save_backtests(path: str | Path, results: Mapping[str, BacktestResult], open_time_ms: np.ndarray) -> Path:
    """Write `results` (name -> backtest over the N bars of `open_time_ms [N + 1]`) to `path` atomically."""
    backtests = Backtests(np.asarray(open_time_ms, dtype=np.int64), dict(results))
    arrays: dict[str, Any] = {"open_time_ms": backtests.open_time_ms, "names": np.array(backtests.names, dtype=np.str_)}
    for name, result in backtests.results.items():
        arrays |= {f"{name}.{field}": getattr(result, field) for field in RESULT_FIELDS}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_backtests(path: str | Path) -> Backtests:
    """The backtests `save_backtests` wrote to `path`, in the order they were saved."""
    path = Path(path)
    if not path.is_file():
        raise BacktestsError(f"no saved backtests at {path}")
    with np.load(path) as arrays:
        results = {
            str(name): BacktestResult(**{field: arrays[f"{name}.{field}"] for field in RESULT_FIELDS})
            for name in arrays["names"]
        }
        return Backtests(arrays["open_time_ms"], results)


def concatenate(windows: Sequence[Backtests]) -> Backtests:
    """One account over consecutive windows, in the given (time) order: see the module docstring."""
    _check_same_series(windows)
    for previous, following in itertools.pairwise(windows):
        if previous.open_time_ms[-1] != following.open_time_ms[0]:
            raise BacktestsError(
                f"windows do not follow one another: one ends at the bar opening at {previous.open_time_ms[-1]} ms, "
                f"the next starts at {following.open_time_ms[0]} ms"
            )
    open_time_ms = np.concatenate([windows[0].open_time_ms[:1], *(window.open_time_ms[1:] for window in windows)])
    results = {}
    for name in windows[0].names:
        rates = [_bar_rates(window.results[name]) for window in windows]
        results[name] = _compound({key: np.concatenate([part[key] for part in rates]) for key in rates[0]})
    return Backtests(open_time_ms, results)


def average(accounts: Sequence[Backtests]) -> Backtests:
    """The equal-weight account over backtests of the same bars: see the module docstring."""
    _check_same_series(accounts)
    first = accounts[0]
    for account in accounts[1:]:
        if not np.array_equal(account.open_time_ms, first.open_time_ms):
            raise BacktestsError("only backtests of the same bars can be averaged")
    results = {}
    for name in first.names:
        if any(not np.array_equal(a.results[name].log_returns, first.results[name].log_returns) for a in accounts):
            raise BacktestsError(f"the {name!r} backtests to average trade different market returns")
        rates = [_bar_rates(account.results[name]) for account in accounts]
        mean = {key: np.mean([part[key] for part in rates], axis=0) for key in rates[0]}
        results[name] = _compound(mean | {"log_returns": first.results[name].log_returns})
    return Backtests(first.open_time_ms, results)


def _check_same_series(parts: Sequence[Backtests]) -> None:
    if not parts:
        raise BacktestsError("nothing to combine")
    for part in parts[1:]:
        if part.names != parts[0].names:
            raise BacktestsError(f"backtests of different series: {parts[0].names} and {part.names}")


def _bar_rates(result: BacktestResult) -> dict[str, np.ndarray]:
    """What a backtest did on each bar, independent of the equity it started the bar with."""
    start = result.equity[:-1]  # [N] equity at each bar's start (> 0: growth is floored)
    return {
        **{key: getattr(result, key) for key in _PER_BAR},
        "ex_funding_returns": result.equity_ex_funding[1:] / result.equity_ex_funding[:-1] - 1.0,
        "fee_share": result.fees / start,  # costs as a share of the equity they were paid from
        "funding_share": result.funding / start,
    }


def _compound(rates: Mapping[str, np.ndarray]) -> BacktestResult:
    """The backtest whose bars did `rates`, from an initial equity of 1 (as `run_backtest` compounds)."""
    equity = _growth(rates["net_returns"])
    return BacktestResult(
        **{key: rates[key] for key in _PER_BAR},
        fees=rates["fee_share"] * equity[:-1],
        funding=rates["funding_share"] * equity[:-1],
        equity=equity,
        gross_equity=_growth(rates["gross_returns"]),
        equity_ex_funding=_growth(rates["ex_funding_returns"]),
    )


def _growth(returns: np.ndarray) -> np.ndarray:
    return np.concatenate([[1.0], np.cumprod(1.0 + returns)])
