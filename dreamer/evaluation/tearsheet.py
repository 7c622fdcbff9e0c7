"""One self-contained HTML tear sheet of an evaluation: `tearsheet.html`, written by `stage_evaluate`.

Sections: the market, window, costs and funding; equity and drawdown of the agent and of every baseline in
`Evaluation.results` (linear % scales, whatever baselines the evaluation ran); the agent's monthly returns,
rolling Sharpe ratio, worst drawdown periods, exposure and position, and its trades; gross return, fees,
funding and net return of every strategy; the baselines' headline metrics with the paired block-bootstrap
comparison of the report. The headline numbers are the report's (`metrics.compute_metrics`, the same as
metrics.json); what the report does not hold is computed here by small pure functions (`monthly_returns`,
`drawdown_periods`, `trade_list`, `rolling_sharpe`). Plots are PNGs embedded as base64 data URIs and the
styles are inline: the file references nothing outside itself, so it opens offline, from an MLflow
artifact or attached to a mail.

Times are bar open times in UTC. `equity[k]` is the equity after the close of bar `open_time_ms[k]`, and a
trade listed at a bar fills at that bar's close (`dreamer.evaluation.backtest`).

Why not quantstats (considered as an optional extra, not adopted): its tear sheet describes one return
series against one benchmark, with daily-return statistics annualised over 252 trading days, while ours
are 24/7 bars of any interval compared with several baselines and a paired block bootstrap. It knows
nothing of positions, trades, fees or funding, which are half of this sheet, so those sections would
stay ours; its numbers (Sharpe, drawdown) would be computed a second way and disagree with metrics.json;
its HTML template links an external favicon and site; and it brings seaborn, scipy and yfinance into the
install. matplotlib and jinja2, already dependencies, cover the rest.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from dreamer.errors import ConfigError
from dreamer.evaluation.backtest import BacktestResult
from dreamer.evaluation.metrics import MINUTES_PER_YEAR, drawdown_curve, sharpe_ratio
from dreamer.features.dataset import MarketDataset, atomic_write_text

if TYPE_CHECKING:  # report.py imports torch; the pure functions here do not need it
    from dreamer.evaluation.report import Evaluation

TEARSHEET_FILE = "tearsheet.html"
MAX_TRADES_LISTED = 500
"""The trade list shows at most this many trades (the first ones); the sheet says when it cut the list."""
TOP_DRAWDOWNS = 5
MIN_ROLLING_BARS = 30
"""The default rolling-Sharpe window is one day of bars, but never fewer than this (hourly or daily bars)."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
AGENT = "agent"
_ROLLING_CHUNK_ELEMENTS = 1 << 22  # bound the rolling Sharpe's temporaries (~32 MB) on long windows


# --- pure computations ---------------------------------------------------------------------------


def bars_per_day(periods: float) -> float:
    """Bars a day of a market with `periods` bars a year (`metrics.periods_per_year`, a 24/7 year)."""
    return periods * 24 * 60 / MINUTES_PER_YEAR


def default_rolling_window(periods: float) -> int:
    """One day of bars (288 on 5-minute bars), at least `MIN_ROLLING_BARS`."""
    return max(MIN_ROLLING_BARS, round(bars_per_day(periods)))


def rolling_sharpe(net_returns: np.ndarray, window: int, periods: float) -> np.ndarray:
    """`[N]`: the annualised Sharpe ratio (`metrics.sharpe_ratio`) of the `window` bars ending at each bar;
    NaN before the first full window."""
    if window < 2:
        raise ConfigError(f"a rolling Sharpe ratio needs a window of at least 2 bars, got {window}")
    returns = np.asarray(net_returns, dtype=np.float64)
    out = np.full(returns.shape, np.nan)
    if returns.size < window:
        return out
    windows = sliding_window_view(returns, window)  # [N - window + 1, window], a view, no copy
    chunk = max(1, _ROLLING_CHUNK_ELEMENTS // window)
    for first in range(0, len(windows), chunk):
        part = windows[first : first + chunk]
        out[window - 1 + first : window - 1 + first + len(part)] = sharpe_ratio(part, periods)
    return out


def monthly_returns(bar_open_ms: np.ndarray, net_returns: np.ndarray) -> pd.DataFrame:
    """Compounded net return of every calendar month (UTC) and year: one row per year, columns `MONTHS` and
    "Year"; NaN for a month without bars. `net_returns [N]` are simple per-bar returns, `bar_open_ms [N]` the
    open times of the bars they were earned over. A year's value compounds only the months of the window."""
    times = pd.to_datetime(np.asarray(bar_open_ms, dtype=np.int64), unit="ms", utc=True)
    growth = pd.Series(1.0 + np.asarray(net_returns, dtype=np.float64), index=times)
    by_month = growth.groupby([times.year, times.month]).prod() - 1.0
    table = by_month.unstack().reindex(columns=range(1, 13))
    table.columns = pd.Index(MONTHS)
    table["Year"] = growth.groupby(times.year).prod() - 1.0
    table.index.name = "year"
    return table


@dataclass(frozen=True)
class DrawdownPeriod:
    """One fall below a running peak of an equity curve, by index into the curve."""

    start: int  # the peak the fall started from
    trough: int  # the lowest point before the recovery
    recovery: int | None  # the first point back at the peak; None: not recovered by the end
    depth: float  # 1 - equity[trough] / equity[start], a positive fraction

    def end(self, curve_length: int) -> int:
        """The recovery, or the last point of a curve of `curve_length` points when there was none."""
        return self.recovery if self.recovery is not None else curve_length - 1

    def bars(self, curve_length: int) -> int:
        """Bars from the peak to the recovery, or to the end of the curve."""
        return self.end(curve_length) - self.start


def drawdown_periods(equity: np.ndarray, top: int = TOP_DRAWDOWNS) -> list[DrawdownPeriod]:
    """The `top` deepest drawdown periods of `equity [N + 1]`, deepest first (ties in time order)."""
    underwater = drawdown_curve(np.asarray(equity, dtype=np.float64)) > 0  # [N + 1]; equity[0] is a peak
    edges = np.diff(np.concatenate([[0], underwater.astype(np.int8), [0]]))
    firsts = np.flatnonzero(edges == 1)  # first point below the peak
    stops = np.flatnonzero(edges == -1)  # one past the last point below it: the recovery, or the end
    periods = []
    for first, stop in zip(firsts, stops, strict=True):
        peak = int(first) - 1
        trough = int(first + np.argmin(equity[first:stop]))
        periods.append(
            DrawdownPeriod(
                start=peak,
                trough=trough,
                recovery=int(stop) if stop < len(equity) else None,
                depth=float(1.0 - equity[trough] / equity[peak]),
            )
        )
    periods.sort(key=lambda period: period.depth, reverse=True)
    return periods[:top]


def trade_list(
    open_time_ms: np.ndarray, positions: np.ndarray, fees: np.ndarray, initial_position: float = 0.0
) -> pd.DataFrame:
    """Every change of position: `time` (UTC open time of the bar at whose close it fills), `from_position`,
    `to_position` and `fee` (what it cost, in units of the starting equity, as `BacktestResult.fees`).
    `open_time_ms` holds at least the `N` decision bars of `positions [N]` and `fees [N]`."""
    positions = np.asarray(positions, dtype=np.float64)
    previous = np.concatenate([[initial_position], positions[:-1]])
    traded = np.flatnonzero(positions != previous)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(np.asarray(open_time_ms, dtype=np.int64)[traded], unit="ms", utc=True),
            "from_position": previous[traded],
            "to_position": positions[traded],
            "fee": np.asarray(fees, dtype=np.float64)[traded],
        }
    )


# --- the sheet -------------------------------------------------------------------------------------


def write_tearsheet(
    evaluation: Evaluation,
    dataset: MarketDataset,
    path: Path,
    *,
    config_name: str | None = None,
    rolling_window: int | None = None,
) -> Path:
    """Render the sheet of `evaluation` on `dataset` (see `render_tearsheet`) to `path`, atomically."""
    atomic_write_text(
        path, render_tearsheet(evaluation, dataset, config_name=config_name, rolling_window=rolling_window)
    )
    return path


def render_tearsheet(
    evaluation: Evaluation,
    dataset: MarketDataset,
    *,
    config_name: str | None = None,
    rolling_window: int | None = None,
) -> str:
    """The tear sheet as one HTML document. `rolling_window`: bars of the rolling Sharpe ratio (default
    `default_rolling_window`)."""
    from dreamer.evaluation.report import POSITION_GRID  # here: report.py imports torch

    report, results, window = evaluation.report, evaluation.results, evaluation.window
    info = report["window"]
    periods = float(info["periods_per_year"])
    rolling = rolling_window or default_rolling_window(periods)
    agent = results[AGENT]
    times = window.open_time_ms  # [N + 1]
    metrics = {AGENT: report[AGENT], **report["baselines"]}  # the tables' rows: agent first

    trades = trade_list(times, agent.positions, agent.fees)
    drawdowns = drawdown_periods(agent.equity)
    monthly = monthly_returns(times[1:], agent.net_returns)
    settlements = int(dataset.funding.next_settlements[window.rows].sum())
    context = {
        "title": _title(dataset.meta),
        "facts": _facts(dataset.meta, info, settlements, config_name),
        "agent": report[AGENT],
        "position_grid": POSITION_GRID,
        "strategies": list(metrics),
        "metrics": metrics,
        "comparison": report.get("comparison", {}),
        "turnover_per_day": {
            name: None if values.get("turnover") is None else float(values["turnover"]) * bars_per_day(periods)
            for name, values in metrics.items()
        },
        "seed_notes": [
            f"{name}: the curves show its first seed, the tables the mean over {int(values['seeds'])} seeds."
            for name, values in report["baselines"].items()
            if (values.get("seeds") or 1) > 1
        ],
        "equity_plot": _equity_plot(times, results),
        "rolling_plot": _rolling_plot(times, agent, rolling, periods, report[AGENT].get("sharpe")),
        "rolling_window": rolling,
        "rolling_window_days": rolling / bars_per_day(periods),
        "position_plot": _position_plot(times, dataset.close[np.append(window.rows, window.rows[-1] + 1)], agent),
        "costs_plot": _costs_plot(times, agent),
        "monthly": [
            (int(year), [None if math.isnan(v) else float(v) for v in row])
            for year, row in zip(monthly.index, monthly.to_numpy(), strict=True)
        ],
        "month_names": [*MONTHS, "Year"],
        "drawdowns": [
            {
                "start": _when(times[p.start]),
                "trough": _when(times[p.trough]),
                "recovery": None if p.recovery is None else _when(times[p.recovery]),
                "depth": p.depth,
                "bars": p.bars(len(agent.equity)),
                "duration": _duration(int(times[p.end(len(times))]) - int(times[p.start])),
            }
            for p in drawdowns
        ],
        "trades": [
            {"time": t.strftime("%Y-%m-%d %H:%M"), "from": f, "to": to, "fee": fee}
            for t, f, to, fee in trades.head(MAX_TRADES_LISTED).itertuples(index=False)
        ],
        "num_trades": len(trades),
    }
    return _environment().get_template("tearsheet.html.j2").render(**context)


def _title(meta: Mapping[str, Any]) -> str:
    market = "/".join(str(meta[key]) for key in ("category", "symbol", "interval") if meta.get(key) is not None)
    return f"Tear sheet: {market}" if market else "Tear sheet"


def _facts(
    meta: Mapping[str, Any], info: Mapping[str, Any], settlements: int, config_name: str | None
) -> list[tuple[str, str]]:
    market = " · ".join(f"{key} {meta[key]}" for key in ("category", "symbol", "interval") if meta.get(key) is not None)
    cost = float(info["cost_rate"])
    facts = [
        ("market", market or "unknown"),
        ("source", str(meta.get("source", "unknown"))),
        (
            f"{info['split']} window",
            f"{_when_iso(info['start'])} → {_when_iso(info['end'])} (UTC bar open times)",
        ),
        ("bars", f"{int(info['bars']):,} traded ({float(info['periods_per_year']):,.0f} a year)"),
        ("costs", f"{cost * 100:.4g} % of every |Δposition| ({cost * 1e4:.3g} bp: fee + slippage)"),
        (
            "funding",
            f"yes: {settlements:,} settlements in the window" if settlements else "none in the window",
        ),
        ("bootstrap", f"{info['bootstrap_samples']} samples, blocks of {info['bootstrap_block']} bars"),
    ]
    if config_name:
        facts.append(("config", config_name))
    return facts


# --- plots (matplotlib's object API: no pyplot state, no display) --------------------------------


def _dates(open_time_ms: np.ndarray) -> np.ndarray:
    return np.asarray(open_time_ms, dtype=np.int64).astype("datetime64[ms]")


def _figure(rows: int, height: float, **grid: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, height), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False, **grid)[:, 0]
    for ax in axes:
        _date_axis(ax)
        ax.grid(alpha=0.3)
    return figure, axes


def _date_axis(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})  # no version stamp, no URL
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _equity_plot(times: np.ndarray, results: Mapping[str, BacktestResult]) -> str:
    figure, (equity_ax, drawdown_ax) = _figure(2, 7.0, height_ratios=[2, 1])
    dates = _dates(times)
    baselines = [name for name in results if name != AGENT]
    colours = {name: f"C{i % 10}" for i, name in enumerate(baselines)} | {AGENT: "black"}  # same in both panels
    for name in [*baselines, AGENT]:  # the agent last: drawn on top
        curve = results[name].equity
        style = {"color": colours[name], "linewidth": 1.8 if name == AGENT else 1.0, "label": name}
        equity_ax.plot(dates, 100.0 * (curve - 1.0), **style)
        drawdown_ax.plot(dates, -100.0 * drawdown_curve(curve), **style)
    equity_ax.set_ylabel("net return (%)")
    equity_ax.set_title("equity after costs and funding (start = 0 %)")
    equity_ax.legend(loc="upper left", fontsize=8, ncols=min(len(results), 6))
    drawdown_ax.set_ylabel("drawdown (%)")
    return _data_uri(figure)


def _rolling_plot(
    times: np.ndarray, agent: BacktestResult, window: int, periods: float, full_sharpe: float | None
) -> str:
    figure, (ax,) = _figure(1, 3.2)
    ax.plot(_dates(times[1:]), rolling_sharpe(agent.net_returns, window, periods), color="black", linewidth=0.9)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    if full_sharpe is not None:
        ax.axhline(full_sharpe, color="tab:blue", linestyle="--", linewidth=1.0, label="whole window")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_ylabel("Sharpe (annualised)")
    ax.set_title(f"agent: rolling Sharpe ratio over {window} bars")
    return _data_uri(figure)


def _position_plot(times: np.ndarray, close: np.ndarray, agent: BacktestResult) -> str:
    figure, (price_ax, position_ax) = _figure(2, 5.0, height_ratios=[2, 1])
    dates = _dates(times)
    price_ax.plot(dates, close, color="black", linewidth=0.8)
    price_ax.set_ylabel("close")
    price_ax.set_title("price and the agent's position (held over the next bar)")
    position_ax.step(dates[:-1], agent.positions, where="post", color="tab:blue", linewidth=0.8)
    position_ax.axhline(0.0, color="grey", linewidth=0.8)
    position_ax.set_ylabel("position")  # autoscaled: a policy of small positions is not drawn as a flat line
    return _data_uri(figure)


def _costs_plot(times: np.ndarray, agent: BacktestResult) -> str:
    figure, (ax,) = _figure(1, 3.5)
    dates = _dates(times)
    for curve, label, colour in (
        (agent.gross_equity, "gross (no costs, no funding)", "tab:green"),
        (agent.equity_ex_funding, "after costs", "tab:orange"),
        (agent.equity, "after costs and funding (net)", "black"),
    ):
        ax.plot(dates, 100.0 * (curve - 1.0), label=label, color=colour, linewidth=1.0)
    ax.set_ylabel("return (%)")
    ax.set_title("agent: what costs and funding took")
    ax.legend(loc="best", fontsize=8)
    return _data_uri(figure)


# --- formatting -----------------------------------------------------------------------------------


def _when(open_time_ms: int | np.integer) -> str:
    return pd.Timestamp(int(open_time_ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def _when_iso(text: str) -> str:
    return pd.Timestamp(text).tz_convert("UTC").strftime("%Y-%m-%d %H:%M")


def _duration(milliseconds: int) -> str:
    days, minutes = divmod(milliseconds // 60_000, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"


def _number(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{float(value):,.{digits}f}"


def _percent(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):,.{digits}f} %"


def _bp(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{1e4 * float(value):,.{digits}f} bp"


def _sign_class(value: Any) -> str:
    if value is None or float(value) == 0.0:
        return ""
    return "pos" if float(value) > 0 else "neg"


def _environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("dreamer.evaluation", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters |= {"number": _number, "percent": _percent, "bp": _bp, "sign_class": _sign_class}
    return environment
