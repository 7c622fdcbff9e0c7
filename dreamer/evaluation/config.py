"""Configuration of the held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from dreamer.errors import require, require_in_range

# The headline numbers of every backtest, by name (the keys of `metrics.compute_metrics`; here, without
# torch, so a config can be checked against them): what `promotion.metric` may name.
BACKTEST_METRICS = (
    "total_return",
    "total_return_ex_funding",
    "gross_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "volatility",
    "turnover",
    "annual_turnover",
    "exposure",
    "mean_abs_position",
    "hit_rate",
    "num_trades",
    "fees_paid",
    "funding_paid",
    "num_bars",
    "years",
)


@dataclass(frozen=True)
class EvaluationConfig:
    bootstrap_samples: int = 1000
    bootstrap_block: int = 288  # bars per block in the block bootstrap of the Sharpe ratio
    confidence: float = 0.95
    # Baselines (`dreamer.evaluation.baselines`). Windows count bars; the defaults are for 5-minute bars.
    # Momentum: the return over a day, in units of its standard deviation at the trailing volatility, goes
    # long or short once it is a whole standard deviation from zero and holds until it is one on the other
    # side: a trend follower that turns every few days (10 trades in the bundled sample's test month under
    # the default split). Without the band, the sign of the 4-hour return (48 bars) traded 602 times there
    # and lost 56 % of the equity, nearly all of it to fees: a straw man, not a baseline.
    momentum_lookback: int = 288
    momentum_band: float = 1.0
    # One day of one-bar returns for the trailing realised volatility (momentum and vol_target): enough bars
    # for a stable estimate, recent enough to follow a volatility regime.
    volatility_window: int = 288
    # Volatility-targeted long: 40 % a year, about BTC's median daily realised volatility (the bundled
    # sample's 5-minute bars: 48 % overall, 30-93 % by the week), so the size shrinks when the market gets
    # wild and is capped at fully long when it is calm; rebalanced only when the wanted size is 0.1 away.
    vol_target: float = 0.4
    vol_target_band: float = 0.1
    # Supervised: a ridge forecast of the next hour's log return (12 bars) from the agent's observations;
    # standardised features over 10^4+ train rows make alpha = 1 a guard against collinear features, not a
    # shrinkage. Its no-trade band is picked on the validation split from these quantiles of |forecast|.
    supervised_horizon: int = 12
    supervised_ridge_alpha: float = 1.0
    supervised_band_quantiles: tuple[float, ...] = (0.0, 0.5, 0.75, 0.9, 0.95, 0.99)
    # Random trading at the agent's turnover, over this many seeds, with at least this many trades (an
    # agent that enters once would otherwise make the baseline a single coin flip).
    random_baseline_seeds: int = 20
    random_min_trades: int = 20
    # The world model's forecast scores, the policy diagnostics, the plots and the tear sheet. A sweep's folds
    # need only the backtests: in the real-data sweep these took 63 s of a fold's 192 s (`sweep` config).
    diagnostics: bool = True

    def __post_init__(self) -> None:
        # Upper bounds far above any useful value: a typo fails here, not as an evaluation that never ends.
        require_in_range(
            self,
            "evaluation",
            {
                "bootstrap_samples": (10, 100_000),
                "bootstrap_block": (1, 1_000_000),
                "momentum_lookback": (1, 1_000_000),
                "momentum_band": (0.0, 100.0),
                "volatility_window": (2, 1_000_000),
                "vol_target_band": (0.0, 1.0),
                "supervised_horizon": (1, 100_000),
                "supervised_ridge_alpha": (0.0, 1e12),
                "random_baseline_seeds": (1, 10_000),
                "random_min_trades": (0, 1_000_000),
            },
        )
        require(0.5 < self.confidence < 1.0, "evaluation.confidence must be in (0.5, 1)")
        require(0.0 < self.vol_target <= 10.0, "evaluation.vol_target must be in (0, 10] (annualised volatility)")
        require(
            len(self.supervised_band_quantiles) > 0 and all(0.0 <= q <= 1.0 for q in self.supervised_band_quantiles),
            "evaluation.supervised_band_quantiles must be a non-empty list of quantiles in [0, 1]",
        )
