"""Known-answer synthetic markets: 5-minute bars generated from true parameters, with an oracle that knows
what those parameters imply, to check that the whole pipeline finds an edge where one exists (and only
there). Synthetic series are always labelled so: their kline files carry a `"synthetic": true` sidecar.

    markets  the markets (regime switching, Ornstein-Uhlenbeck, GARCH, random walk and the leaked-volume
             control), `market_from_spec` and `sample_market`
    series   `SyntheticSeries`, building bars from returns, `write_csv` / `read_series`
    oracle   `Oracle`: causal forecasts, the no-trade-band policy and `oracle_metrics`
    scoring  `direction_accuracy` and `vol_forecast_corr` of return forecasts
"""

from dreamer.evaluation.scoring import direction_accuracy, vol_forecast_corr
from dreamer.synthetic.markets import (
    MARKETS,
    PARAMETER_RANGES,
    GarchMarket,
    OrnsteinUhlenbeckMarket,
    RandomWalkMarket,
    RegimeSwitchingMarket,
    SyntheticMarket,
    market_from_spec,
    sample_market,
)
from dreamer.synthetic.oracle import Oracle, oracle_metrics
from dreamer.synthetic.series import SyntheticFileError, SyntheticSeries, read_series, sidecar_path, write_csv

__all__ = [
    "MARKETS",
    "PARAMETER_RANGES",
    "GarchMarket",
    "Oracle",
    "OrnsteinUhlenbeckMarket",
    "RandomWalkMarket",
    "RegimeSwitchingMarket",
    "SyntheticFileError",
    "SyntheticMarket",
    "SyntheticSeries",
    "direction_accuracy",
    "market_from_spec",
    "oracle_metrics",
    "read_series",
    "sample_market",
    "sidecar_path",
    "vol_forecast_corr",
    "write_csv",
]
