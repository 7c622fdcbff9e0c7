"""`SyntheticSeries`: the 5-minute bars a synthetic market generated, with the hidden state behind them, and
the kline files they are written to.

Bars from log returns. A market draws the log return `r_t` of every bar t and the std `s_t` of its noise.
Prices start at `initial_price` (the open of bar 0) and compound, `close_t = initial_price · exp(r_0 + … +
r_t)`, with `open_t = close_{t−1}`. The bar's high and low are the extremes of a Brownian bridge that
starts at 0 and ends at r_t with variance s_t² over the bar; for such a bridge

    P(max > m) = exp(−2 m (m − r) / s²)   for m ≥ max(0, r),

so `max = (r + sqrt(r² − 2 s² log U)) / 2` and `min = (r − sqrt(r² − 2 s² log U')) / 2` for uniforms U, U'
in (0, 1] (drawn independently: the joint law of the two extremes is not needed for plausible bars). Both
come from the bar's own draws, never from the next bar's, so the range carries no information about the
future. Volume is lognormal around `BASE_VOLUME` and grows with the bar's own |r_t| / s_t, as real
activity does; turnover is volume times the bar's mean price.

Every random stream (shocks, hidden state, intrabar extremes, activity) is a child of the seed's
`SeedSequence` and is drawn in bar order, so a series is a pure function of (market, seed, start) and the
first n bars of a longer series are the series of n bars.

Files. `write_csv` writes the project's kline CSV (`dreamer.data.files`), gzipped when the name ends in
`.gz`, and next to it a sidecar `<file>.json` that says `"synthetic": true`, the market, its parameters and
the seed: a synthetic file must never be mistaken for market data. `read_series` regenerates the series a
sidecar describes and checks that the file holds exactly its bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dreamer.data.files import FILE_COLUMNS, read_kline_file
from dreamer.data.markets import parse_interval
from dreamer.errors import ConfigError, DreamerError

if TYPE_CHECKING:
    from dreamer.synthetic.markets import SyntheticMarket

BAR_INTERVAL = "5"
"""Every synthetic series has 5-minute bars (Bybit interval code), contiguous, 24/7."""
BAR_MS = 5 * 60_000
INITIAL_PRICE = 100.0
BASE_VOLUME = 1_000.0
"""Median volume of a bar (contracts); only its order of magnitude matters."""
_VOLUME_LOG_STD = 0.5  # spread of the lognormal activity noise


class SyntheticFileError(DreamerError):
    """A synthetic kline file lacks its sidecar or does not hold the bars its sidecar describes."""


@dataclass(frozen=True)
class SyntheticSeries:
    """N contiguous 5-minute bars of a synthetic market. Row t is bar t; `log_returns[t]` is bar t's own
    close-to-close return (bar 0's from `initial_price`), so the return a position decided at the close of t
    earns is `log_returns[t + 1]`."""

    market: SyntheticMarket
    seed: int
    initial_price: float  # open of bar 0; a true parameter (the OU market reverts to its log)
    open_time_ms: np.ndarray  # [N] int64, candle starts BAR_MS apart
    open: np.ndarray  # [N] float64, the previous close
    high: np.ndarray  # [N] float64
    low: np.ndarray  # [N] float64
    close: np.ndarray  # [N] float64
    volume: np.ndarray  # [N] float64, > 0
    turnover: np.ndarray  # [N] float64, volume × mean price of the bar
    log_returns: np.ndarray  # [N] float64, log(close[t] / open[t])
    hidden: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N] state the oracle may know

    @property
    def num_bars(self) -> int:
        return int(self.open_time_ms.shape[0])

    def head(self, num_bars: int) -> SyntheticSeries:
        """The first `num_bars` bars (what the market looked like at the close of bar num_bars − 1)."""
        if not 1 <= num_bars <= self.num_bars:
            raise ConfigError(f"head: num_bars must be in [1, {self.num_bars}], got {num_bars}")
        rows = slice(0, num_bars)
        return SyntheticSeries(
            market=self.market,
            seed=self.seed,
            initial_price=self.initial_price,
            open_time_ms=self.open_time_ms[rows],
            open=self.open[rows],
            high=self.high[rows],
            low=self.low[rows],
            close=self.close[rows],
            volume=self.volume[rows],
            turnover=self.turnover[rows],
            log_returns=self.log_returns[rows],
            hidden={name: values[rows] for name, values in self.hidden.items()},
        )

    def rows_at(self, open_time_ms: np.ndarray) -> np.ndarray:
        """Row of each candle start in `open_time_ms` (e.g. a dataset split's bars, which start after the
        feature warm-up); `ConfigError` if one is not a bar of this series."""
        times = np.asarray(open_time_ms, dtype=np.int64)
        rows = np.searchsorted(self.open_time_ms, times)
        found = rows < self.num_bars
        found[found] = self.open_time_ms[rows[found]] == times[found]
        if not found.all():
            raise ConfigError(f"{int((~found).sum())} of {times.size} candle starts are not bars of this series")
        return rows

    def to_frame(self) -> pd.DataFrame:
        """The bars in the kline file layout (`dreamer.data.files.FILE_COLUMNS`)."""
        columns = (self.open_time_ms, self.open, self.high, self.low, self.close, self.volume, self.turnover)
        return pd.DataFrame(dict(zip(FILE_COLUMNS, columns, strict=True)))


def build_bars(
    market: SyntheticMarket,
    seed: int,
    start_ms: int,
    log_returns: np.ndarray,
    intrabar_vol: np.ndarray,
    intrabar_rng: np.random.Generator,
    volume: np.ndarray,
    hidden: dict[str, np.ndarray],
) -> SyntheticSeries:
    """Prices of the bars with returns `log_returns [N]` and noise std `intrabar_vol [N]` (module docstring)."""
    n = log_returns.shape[0]
    close = INITIAL_PRICE * np.exp(np.cumsum(log_returns))  # [N]
    open_ = np.concatenate([[INITIAL_PRICE], close[:-1]])  # [N]
    uniforms = 1.0 - intrabar_rng.random((n, 2))  # [N, 2] in (0, 1]: log U is finite
    reach = np.sqrt(log_returns[:, None] ** 2 - 2.0 * intrabar_vol[:, None] ** 2 * np.log(uniforms))  # [N, 2]
    # exp() of the bridge's extremes can round a hair inside the open or close; the bar must still bound them.
    high = np.maximum(open_ * np.exp((log_returns + reach[:, 0]) / 2.0), np.maximum(open_, close))
    low = np.minimum(open_ * np.exp((log_returns - reach[:, 1]) / 2.0), np.minimum(open_, close))
    return SyntheticSeries(
        market=market,
        seed=seed,
        initial_price=INITIAL_PRICE,
        open_time_ms=start_ms + BAR_MS * np.arange(n, dtype=np.int64),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        turnover=volume * (open_ + high + low + close) / 4.0,
        log_returns=np.log(close / open_),  # the returns as the prices state them (what a pipeline reads)
        hidden=hidden,
    )


def activity_volume(log_returns: np.ndarray, intrabar_vol: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`[N]` volumes: lognormal around BASE_VOLUME, larger on bars that moved more than their noise std."""
    noise = rng.standard_normal(log_returns.shape[0])  # [N]
    return BASE_VOLUME * np.exp(_VOLUME_LOG_STD * noise) * (1.0 + np.abs(log_returns) / intrabar_vol)


def sidecar_path(path: str | Path) -> Path:
    """`<file>.json`, the description of the synthetic kline file `path`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_csv(series: SyntheticSeries, path: str | Path) -> Path:
    """Write the bars as a kline CSV (gzipped if `path` ends in .gz) and its sidecar; returns the sidecar.

    Floats are written with Python's shortest round-trip repr, so the file reads back to the very same
    float64 prices and volumes (the oracle and a pipeline reading the file see the same returns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series.to_frame().to_csv(path, index=False, compression="infer")
    sidecar = sidecar_path(path)
    sidecar.write_text(json.dumps(describe(series), indent=2) + "\n", encoding="utf-8")
    return sidecar


def describe(series: SyntheticSeries) -> dict[str, Any]:
    """What the sidecar of a synthetic file says: enough to regenerate it, and that it is not market data."""
    return {
        "synthetic": True,
        "notice": "generated by dreamer.synthetic: NOT market data",
        "market": series.market.name,
        "parameters": series.market.parameters,
        "seed": series.seed,
        "num_bars": series.num_bars,
        "start_ms": int(series.open_time_ms[0]),
        "interval": BAR_INTERVAL,
    }


def read_series(path: str | Path) -> SyntheticSeries:
    """The series a synthetic kline file holds, regenerated from its sidecar (hidden state included) after
    checking the file's bars are exactly those of the regenerated series."""
    from dreamer.synthetic.markets import market_from_spec  # the markets build series: import at call time

    path = Path(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise SyntheticFileError(f"{path}: no sidecar {sidecar.name}; is it a synthetic file at all?")
    spec = json.loads(sidecar.read_text(encoding="utf-8"))
    if spec.get("synthetic") is not True:
        raise SyntheticFileError(f"{sidecar}: does not describe a synthetic series")
    market = market_from_spec(spec["market"], **spec["parameters"])
    series = market.generate(int(spec["num_bars"]), int(spec["seed"]), start=int(spec["start_ms"]))
    candles = read_kline_file(path, parse_interval(BAR_INTERVAL))
    expected = series.to_frame()
    matches = len(candles) == series.num_bars and np.array_equal(candles.open_time_ms, series.open_time_ms)
    matches = matches and np.array_equal(candles.values, expected[list(FILE_COLUMNS[1:])].to_numpy())
    if not matches:
        raise SyntheticFileError(f"{path}: its bars are not those of the series its sidecar describes")
    return series
