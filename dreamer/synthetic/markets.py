"""Synthetic markets with known answers: each has true parameters, generates 5-minute bars from them, and
knows the forecasts and the best-known policy that those parameters imply (its oracle).

Per-bar log returns r_t (natural units; parameters in basis points, 1 bp = 1e-4, where natural), with
ε_t i.i.d. standard normal:

    regime              r_t = μ·s_t + σ·ε_t; the hidden regime s_t ∈ {+1, −1} flips with probability
                        q = 1 / mean_regime_bars at each bar (regimes last 1/q bars on average).
                        Oracle: the forward (Bayes) filter. With x_t = E[s_t | r_≤t] = 2·P(up | r_≤t) − 1,
                        predicting gives E[s_{t+1} | r_≤t] = (1 − 2q)·x_t and observing r_{t+1} adds the log
                        likelihood ratio log N(r; μ, σ²)/N(r; −μ, σ²) = 2μr/σ² to the log-odds of "up":
                            x_{t+1} = tanh(atanh((1 − 2q)·x_t) + μ·r_{t+1}/σ²),   x_{−1} = 0.
                        Then m_t = μ·(1 − 2q)·x_t and Var(r_{t+1} | r_≤t) = σ² + μ²·(1 − ((1 − 2q)·x_t)²).
    ou                  log price = log(initial_price) + y_t, y_t = (1 − κ)·y_{t−1} + σ·ε_t, y_{−1} = 0, so
                        r_t = −κ·y_{t−1} + σ·ε_t. Oracle: y_t = log(close_t / initial_price) is read from the
                        price (the mean is a true parameter): m_t = −κ·y_t, std σ.
    garch               r_t = σ_t·ε_t, σ²_t = ω + α·r²_{t−1} + β·σ²_{t−1}, σ²_0 = V = long_run_vol², with
                        ω = V·(1 − α − β) so that V is the unconditional variance (needs α + β < 1).
                        Oracle: no direction (m_t = 0, flat); std σ_{t+1}, computed from the returns by the
                        same recursion (σ_{t+1} is known at the close of t).
    random_walk         r_t = σ·ε_t: nothing to find. Oracle: m_t = 0, std σ, flat.
    random_walk_leaked  *A CONTROL, NOT A MARKET*: the returns of random_walk, but each bar's volume is
                        BASE_VOLUME·exp(LEAK_GAIN·ε_{t+1}), a monotone code of the NEXT bar's return. This
                        look-ahead is deliberate: a pipeline that reads volume features must find a profit
                        here, and if it does not, it cannot learn what is in its features. Oracle: decodes
                        m_t = σ·log(volume_t / BASE_VOLUME) / LEAK_GAIN = r_{t+1} exactly, std 0.

Every oracle forecast at bar t uses bars ≤ t and the true parameters only (see `dreamer.synthetic.oracle`
for the policy, which is the same no-trade band everywhere). `PARAMETER_RANGES` and `sample_market` draw
markets from the ranges the benchmark's acceptance criteria are stated for.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from dreamer.data.errors import InvalidMarketError
from dreamer.data.markets import parse_time_ms
from dreamer.errors import ConfigError, require
from dreamer.synthetic.oracle import Oracle, oracle_from_forecasts
from dreamer.synthetic.series import BAR_MS, BASE_VOLUME, SyntheticSeries, activity_volume, build_bars

BPS = 1e-4
LEAK_GAIN = 0.5
"""Log-volume per standard deviation of the next return in the leaked control (volume spans e^±1.5 at 3σ)."""


class SimulatedPath(NamedTuple):
    log_returns: np.ndarray  # [N] r_t
    intrabar_vol: np.ndarray  # [N] std of bar t's noise (scales its high-low range)
    hidden: dict[str, np.ndarray]  # name -> [N] hidden state behind the bars
    volume: np.ndarray | None  # [N], or None for the ordinary activity volume


@dataclass(frozen=True)
class SyntheticMarket(ABC):
    """A market with known parameters (the fields of the frozen subclasses): its bars and its oracle."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The name `market_from_spec` knows it by."""

    @property
    def parameters(self) -> dict[str, Any]:
        """Keyword arguments that rebuild it: `market_from_spec(market.name, **market.parameters) == market`."""
        fixed = _SPECS[self.name][1]
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name not in fixed}

    def generate(self, num_bars: int, seed: int, start: str | int = "2025-01-01") -> SyntheticSeries:
        """`num_bars` contiguous 5-minute bars from candle start `start` (a date, ISO time or epoch ms on a
        5-minute boundary), a pure function of (market, num_bars, seed, start)."""
        require(_is_integer(num_bars) and num_bars >= 2, f"num_bars must be an integer >= 2, got {num_bars!r}")
        require(_is_integer(seed) and seed >= 0, f"seed must be an integer >= 0, got {seed!r}")
        try:
            start_ms = parse_time_ms(start, "start")
        except InvalidMarketError as exc:
            raise ConfigError(str(exc)) from exc
        require(start_ms % BAR_MS == 0, f"start {start!r} is not on a 5-minute boundary")
        shocks, states, intrabar, activity = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        path = self._simulate(int(num_bars), shocks, states)
        volume = activity_volume(path.log_returns, path.intrabar_vol, activity) if path.volume is None else path.volume
        return build_bars(self, int(seed), start_ms, path.log_returns, path.intrabar_vol, intrabar, volume, path.hidden)

    def oracle(self, series: SyntheticSeries, cost_rate: float, fit_bars: slice | int) -> Oracle:
        """Forecasts and band policy for every bar of `series`, the band tuned on `fit_bars` only (an int n
        means the first n bars) with cost `cost_rate` per unit traded."""
        require(series.market == self, f"series of {series.market} given to the oracle of {self}")
        expected_return, expected_vol = self.forecasts(series)
        return oracle_from_forecasts(series, expected_return, expected_vol, cost_rate, fit_bars)

    @abstractmethod
    def forecasts(self, series: SyntheticSeries) -> tuple[np.ndarray, np.ndarray]:
        """`[N]` E[r_{t+1} | bars ≤ t] and `[N]` std(r_{t+1} | bars ≤ t) from the true parameters."""

    @abstractmethod
    def _simulate(self, num_bars: int, shocks: np.random.Generator, states: np.random.Generator) -> SimulatedPath:
        """Returns and hidden state: ε from `shocks`, any other randomness of the state from `states`, each
        drawn in bar order (so the first n bars do not depend on `num_bars`)."""


@dataclass(frozen=True)
class RegimeSwitchingMarket(SyntheticMarket):
    """A drift of ±drift_bps per bar that flips every mean_regime_bars bars on average (module docstring)."""

    drift_bps: float = 1.0
    mean_regime_bars: float = 600.0
    noise_bps: float = 12.0

    def __post_init__(self) -> None:
        _check("drift_bps", self.drift_bps, lambda v: v > 0, "> 0")
        _check("mean_regime_bars", self.mean_regime_bars, lambda v: v >= 2, ">= 2 (a switch at most every other bar)")
        _check("noise_bps", self.noise_bps, lambda v: v > 0, "> 0")

    @property
    def name(self) -> str:
        return "regime"

    @property
    def switch_probability(self) -> float:
        return 1.0 / self.mean_regime_bars

    def posterior_up(self, log_returns: np.ndarray) -> np.ndarray:
        """`[N]` P(s_t = +1 | r_0 … r_t), the forward filter of the module docstring from the prior ½.

        A loop over Python floats (the recursion is nonlinear): about 20 ms for 60,000 bars."""
        drift, noise = self.drift_bps * BPS, self.noise_bps * BPS
        persistence = 1.0 - 2.0 * self.switch_probability  # E[s_{t+1} | s_t] = persistence · s_t
        evidence = drift / noise**2
        expected_sign = np.empty(len(log_returns))  # [N] x_t
        x = 0.0
        for t, r in enumerate(np.asarray(log_returns, dtype=np.float64).tolist()):
            # |persistence · x| <= 1 − 2q < 1, so atanh stays finite even when x has rounded to ±1.
            x = math.tanh(math.atanh(persistence * x) + evidence * r)
            expected_sign[t] = x
        return (1.0 + expected_sign) / 2.0

    def forecasts(self, series: SyntheticSeries) -> tuple[np.ndarray, np.ndarray]:
        drift, noise = self.drift_bps * BPS, self.noise_bps * BPS
        next_sign = (1.0 - 2.0 * self.switch_probability) * (2.0 * self.posterior_up(series.log_returns) - 1.0)
        return drift * next_sign, np.sqrt(noise**2 + drift**2 * (1.0 - next_sign**2))

    def _simulate(self, num_bars: int, shocks: np.random.Generator, states: np.random.Generator) -> SimulatedPath:
        draws = states.random(num_bars)  # [N]: draws[0] picks the first regime, draws[t] whether bar t switched
        switches = np.cumsum(draws[1:] < self.switch_probability)  # [N − 1]
        first = 1.0 if draws[0] < 0.5 else -1.0
        regime = first * np.concatenate([[1.0], np.where(switches % 2 == 0, 1.0, -1.0)])  # [N] s_t
        noise = self.noise_bps * BPS
        log_returns = self.drift_bps * BPS * regime + noise * shocks.standard_normal(num_bars)
        return SimulatedPath(log_returns, np.full(num_bars, noise), {"regime": regime}, None)


@dataclass(frozen=True)
class OrnsteinUhlenbeckMarket(SyntheticMarket):
    """A log price reverting to log(initial_price) at rate kappa per bar (module docstring)."""

    kappa: float = 0.01
    noise_bps: float = 12.0

    def __post_init__(self) -> None:
        _check("kappa", self.kappa, lambda v: 0 < v <= 1, "in (0, 1]")
        _check("noise_bps", self.noise_bps, lambda v: v > 0, "> 0")

    @property
    def name(self) -> str:
        return "ou"

    def forecasts(self, series: SyntheticSeries) -> tuple[np.ndarray, np.ndarray]:
        deviation = np.log(series.close / series.initial_price)  # [N] y_t
        return -self.kappa * deviation, np.full(series.num_bars, self.noise_bps * BPS)

    def _simulate(self, num_bars: int, shocks: np.random.Generator, states: np.random.Generator) -> SimulatedPath:
        noise = self.noise_bps * BPS
        deviation = _linear_recursion(1.0 - self.kappa, noise * shocks.standard_normal(num_bars), 0.0)  # [N] y_t
        log_returns = np.diff(deviation, prepend=0.0)  # y_{−1} = 0: bar 0 opens at initial_price
        return SimulatedPath(log_returns, np.full(num_bars, noise), {"deviation": deviation}, None)


@dataclass(frozen=True)
class GarchMarket(SyntheticMarket):
    """GARCH(1, 1) returns with unconditional std long_run_vol_bps and no drift (module docstring)."""

    alpha: float = 0.08
    beta: float = 0.9
    long_run_vol_bps: float = 12.0

    def __post_init__(self) -> None:
        _check("alpha", self.alpha, lambda v: v >= 0, ">= 0")
        _check("beta", self.beta, lambda v: v >= 0, ">= 0")
        require(self.alpha + self.beta < 1, f"alpha + beta must be < 1 (stationary), got {self.alpha + self.beta}")
        _check("long_run_vol_bps", self.long_run_vol_bps, lambda v: v > 0, "> 0")

    @property
    def name(self) -> str:
        return "garch"

    @property
    def long_run_variance(self) -> float:
        return (self.long_run_vol_bps * BPS) ** 2

    @property
    def omega(self) -> float:
        """ω = V·(1 − α − β), natural units squared: the constant that makes V the unconditional variance."""
        return self.long_run_variance * (1.0 - self.alpha - self.beta)

    def variance_forecast(self, log_returns: np.ndarray) -> np.ndarray:
        """`[N]` σ²_{t+1} = ω + α·r²_t + β·σ²_t, from σ²_0 = V: known at the close of t."""
        returns = np.asarray(log_returns, dtype=np.float64)
        return _linear_recursion(self.beta, self.omega + self.alpha * returns**2, self.long_run_variance)

    def forecasts(self, series: SyntheticSeries) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(series.num_bars), np.sqrt(self.variance_forecast(series.log_returns))

    def _simulate(self, num_bars: int, shocks: np.random.Generator, states: np.random.Generator) -> SimulatedPath:
        eps = shocks.standard_normal(num_bars)  # [N]
        # σ²_t = ω + (α·ε²_{t−1} + β)·σ²_{t−1}: linear in σ² once the shocks are drawn.
        later = _linear_recursion(
            self.alpha * eps[:-1] ** 2 + self.beta, np.full(num_bars - 1, self.omega), self.long_run_variance
        )
        sigma = np.sqrt(np.concatenate([[self.long_run_variance], later]))  # [N] σ_t
        return SimulatedPath(sigma * eps, sigma, {"sigma": sigma}, None)


@dataclass(frozen=True)
class RandomWalkMarket(SyntheticMarket):
    """I.i.d. Gaussian returns. With `leak_next_return` it is the look-ahead CONTROL of the module docstring:
    each bar's volume encodes the next bar's return, which no real market offers."""

    noise_bps: float = 12.0
    leak_next_return: bool = False

    def __post_init__(self) -> None:
        _check("noise_bps", self.noise_bps, lambda v: v > 0, "> 0")
        require(
            isinstance(self.leak_next_return, bool), f"leak_next_return must be a bool, got {self.leak_next_return!r}"
        )

    @property
    def name(self) -> str:
        return "random_walk_leaked" if self.leak_next_return else "random_walk"

    def forecasts(self, series: SyntheticSeries) -> tuple[np.ndarray, np.ndarray]:
        noise = self.noise_bps * BPS
        if not self.leak_next_return:
            return np.zeros(series.num_bars), np.full(series.num_bars, noise)
        decoded = noise * np.log(series.volume / BASE_VOLUME) / LEAK_GAIN  # [N] r_{t+1}, read off bar t
        return decoded, np.zeros(series.num_bars)

    def _simulate(self, num_bars: int, shocks: np.random.Generator, states: np.random.Generator) -> SimulatedPath:
        noise = self.noise_bps * BPS
        # The leaked control draws one shock more: the last bar's volume encodes a return past the series.
        eps = shocks.standard_normal(num_bars + 1 if self.leak_next_return else num_bars)
        log_returns, intrabar_vol = noise * eps[:num_bars], np.full(num_bars, noise)
        if not self.leak_next_return:
            return SimulatedPath(log_returns, intrabar_vol, {}, None)
        volume = BASE_VOLUME * np.exp(LEAK_GAIN * eps[1:])  # [N] bar t's volume is a code of ε_{t+1}
        return SimulatedPath(log_returns, intrabar_vol, {"next_return": noise * eps[1:]}, volume)


_SPECS: dict[str, tuple[type[SyntheticMarket], dict[str, Any]]] = {
    "regime": (RegimeSwitchingMarket, {}),
    "ou": (OrnsteinUhlenbeckMarket, {}),
    "garch": (GarchMarket, {}),
    "random_walk": (RandomWalkMarket, {"leak_next_return": False}),
    "random_walk_leaked": (RandomWalkMarket, {"leak_next_return": True}),
}
MARKETS: tuple[str, ...] = tuple(_SPECS)
"""The names `market_from_spec` and `sample_market` accept."""

PARAMETER_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "regime": {"drift_bps": (0.8, 1.5), "mean_regime_bars": (300.0, 1_000.0), "noise_bps": (10.0, 16.0)},
    "ou": {"kappa": (1 / 200, 1 / 50), "noise_bps": (10.0, 16.0)},
    "garch": {"persistence": (0.95, 0.99), "alpha": (0.03, 0.08), "long_run_vol_bps": (10.0, 16.0)},
    "random_walk": {"noise_bps": (10.0, 16.0)},
    "random_walk_leaked": {"noise_bps": (10.0, 16.0)},
}
"""Ranges `sample_market` draws from, uniformly except `kappa` (uniform in log: reversion half-lives
spread evenly); a GARCH market gets beta = persistence − alpha, so α + β = persistence."""
_LOG_UNIFORM = frozenset({"kappa"})


def market_from_spec(name: str, **parameters: Any) -> SyntheticMarket:
    """The market called `name` (one of MARKETS) with `parameters` (its fields; defaults for the rest)."""
    if name not in _SPECS:
        raise ConfigError(f"unknown synthetic market {name!r}; known: {', '.join(MARKETS)}")
    cls, fixed = _SPECS[name]
    allowed = [item.name for item in fields(cls) if item.name not in fixed]
    unknown = sorted(set(parameters) - set(allowed))
    require(not unknown, f"market {name!r} has no parameter(s) {unknown}; its parameters: {', '.join(allowed)}")
    return cls(**parameters, **fixed)


def sample_market(name: str, rng: np.random.Generator | int) -> SyntheticMarket:
    """A market `name` with parameters drawn from PARAMETER_RANGES by `rng` (or a seed)."""
    if name not in PARAMETER_RANGES:
        raise ConfigError(f"unknown synthetic market {name!r}; known: {', '.join(MARKETS)}")
    generator = np.random.default_rng(rng)
    draws: dict[str, float] = {}
    for key, (low, high) in PARAMETER_RANGES[name].items():
        if key in _LOG_UNIFORM:
            draws[key] = math.exp(generator.uniform(math.log(low), math.log(high)))
        else:
            draws[key] = generator.uniform(low, high)
    if "persistence" in draws:
        draws["beta"] = draws.pop("persistence") - draws["alpha"]
    return market_from_spec(name, **draws)


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(name: str, value: object, condition: Callable[[float], bool], expected: str) -> None:
    """`ConfigError` unless `value` is a finite real number (not a bool) satisfying `condition`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not condition(float(value)):
        raise ConfigError(f"{name} must be a number {expected}, got {value!r}")


def _linear_recursion(coefficient: float | np.ndarray, inputs: np.ndarray, initial: float) -> np.ndarray:
    """`[N]` x_t = a_t·x_{t−1} + u_t for t = 0 … N − 1 from x_{−1} = `initial` (a scalar `coefficient` is a
    for every t). A loop over Python floats: about 10 ms for 60,000 bars, with no dependency beyond numpy."""
    coefficients = np.broadcast_to(np.asarray(coefficient, dtype=np.float64), inputs.shape).tolist()
    out = np.empty(inputs.shape[0])
    x = initial
    for t, (a, u) in enumerate(zip(coefficients, inputs.tolist(), strict=True)):
        x = a * x + u
        out[t] = x
    return out
