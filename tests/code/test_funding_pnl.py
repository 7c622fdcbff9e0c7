"""Code tier: funding in the features and in the one PnL function, on hand-computed examples.

Timing (dreamer/trading.py): a position decided at the close of bar t is held to the close of bar t+1 and
pays `position × rate` for every settlement in (close_t, close_{t+1}]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dreamer.evaluation.backtest import run_backtest
from dreamer.evaluation.metrics import compute_metrics
from dreamer.features.build import FEATURE_COLUMNS, compute_features
from dreamer.features.dataset import BarFunding
from dreamer.trading import net_log_return
from tests.feature_fixtures import synthetic_funding, synthetic_klines

HOUR_MS = 3_600_000
FIRST_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC, the first synthetic bar's open


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(400, missing=(range(190, 200),))  # 50 minutes missing, around 16:00


def rate_at(funding: pd.DataFrame, hours: float) -> float:
    """The rate settled at 2026-01-01 00:00 UTC + `hours`."""
    [rate] = funding.loc[funding["funding_time_ms"] == FIRST_MS + int(hours * HOUR_MS), "funding_rate"]
    return float(rate)


def bar(features: pd.DataFrame, hour: int, minute: int) -> pd.Series:
    """The row of the bar opening at 2026-01-01 hour:minute UTC."""
    return features.loc[features["open_time_ms"] == FIRST_MS + hour * HOUR_MS + minute * 60_000].iloc[0]


def symlog_bps(rate: float) -> float:
    return float(np.sign(rate) * np.log1p(abs(rate) * 1e4))


def test_the_settlement_at_a_close_is_known_at_that_close(features: pd.DataFrame, funding: pd.DataFrame) -> None:
    before, at = bar(features, 7, 50), bar(features, 7, 55)  # closes 07:55 and 08:00
    assert before["funding_last"] == pytest.approx(symlog_bps(rate_at(funding, 0)), rel=1e-12)
    assert at["funding_last"] == pytest.approx(symlog_bps(rate_at(funding, 8)), rel=1e-12)
    assert at["funding_rate_known"] == pytest.approx(rate_at(funding, 8), rel=1e-12)
    day = [rate_at(funding, -8), rate_at(funding, 0), rate_at(funding, 8)]
    assert at["funding_mean_3"] == pytest.approx(symlog_bps(float(np.mean(day))), rel=1e-12)
    # the share of the 8-hour interval still to run before the next settlement
    assert before["funding_countdown"] == pytest.approx(5 / 480, rel=1e-12)
    assert at["funding_countdown"] == pytest.approx(1.0)


def test_a_position_pays_the_settlements_inside_the_bar_it_holds(features: pd.DataFrame, funding: pd.DataFrame) -> None:
    rows = features.reset_index(drop=True)
    bars = BarFunding.from_settled(
        rows["funding_rate_known"].to_numpy(), rows["funding_settled_sum"].to_numpy(), rows["funding_settled_count"]
    )
    t = int(rows.index[rows["open_time_ms"] == FIRST_MS + 7 * HOUR_MS + 50 * 60_000][0])  # the 07:50 bar
    # decided at 07:55, held over the 07:55 bar to 08:00: pays the 08:00 settlement; the next one does not
    assert bars.next_rate[t] == pytest.approx(rate_at(funding, 8), rel=1e-12) and bars.next_settlements[t] == 1
    assert bars.next_rate[t + 1] == 0.0 and bars.next_settlements[t + 1] == 0
    assert bars.next_rate[t - 1] == 0.0
    # bars 15:50 .. 16:35 are missing: the position decided at the close of 15:45 (15:50) is held through the
    # gap to the close of the 16:40 bar and pays the 16:00 settlement that fell inside it
    last_before_gap = int(rows.index[rows["open_time_ms"] == FIRST_MS + 15 * HOUR_MS + 45 * 60_000][0])
    assert rows["open_time_ms"][last_before_gap + 1] == FIRST_MS + 16 * HOUR_MS + 40 * 60_000
    assert bars.next_rate[last_before_gap] == pytest.approx(rate_at(funding, 16), rel=1e-12)
    # 08:00, 16:00, 00:00 and 08:00 the next day (00:00 on the first day settled at the first bar's open)
    assert bars.next_settlements.sum() == 4
    assert np.isnan(bars.next_rate[-1])


def test_later_settlements_never_change_earlier_features(
    klines: pd.DataFrame, funding: pd.DataFrame, features: pd.DataFrame
) -> None:
    t = 95  # the 07:55 bar, whose close is the 08:00 settlement
    close_ms = FIRST_MS + (t + 1) * 300_000
    changed = funding.copy()
    later = changed["funding_time_ms"] > close_ms
    changed.loc[later, "funding_rate"] *= -40.0
    recomputed = compute_features(klines, "5", changed)
    columns = ["warmup", *FEATURE_COLUMNS, "funding_rate_known"]
    pd.testing.assert_frame_equal(recomputed[columns].iloc[: t + 1], features[columns].iloc[: t + 1])
    assert recomputed["funding_last"].iloc[t + 96] != features["funding_last"].iloc[t + 96]  # 16:00's rate


def test_a_contract_without_funding_reads_zeros(klines: pd.DataFrame) -> None:
    spot = compute_features(klines, "5")
    names = ["funding_last", "funding_mean_3", "funding_countdown", "funding_rate_known", "funding_settled_sum"]
    assert (spot[names].to_numpy() == 0).all()


def test_a_perpetual_is_warm_up_until_three_settlements_are_known() -> None:
    klines = synthetic_klines(3000)
    late = synthetic_funding(klines)
    late = late[late["funding_time_ms"] >= FIRST_MS + 176 * HOUR_MS].reset_index(drop=True)  # from Jan 8, 08:00
    features = compute_features(klines, "5", late)
    first = int(np.flatnonzero(~features["warmup"].to_numpy())[0])
    # settlements at 08:00, 16:00 and 00:00: the bar closing at 00:00 (Jan 8, 23:55) is the first complete one,
    # long after the LONGEST_WINDOW bars of the price windows
    assert features["open_time_ms"][first] == FIRST_MS + 191 * HOUR_MS + 55 * 60_000


def test_funding_in_the_one_pnl_function_by_hand() -> None:
    positions = np.array([1.0, 1.0, -0.5])
    returns = np.array([0.01, 0.0, -0.02])
    rates = np.array([0.0, 1e-4, 3e-4])  # settlements inside the second and third held bars
    cost = 0.001
    growth = np.array(
        [
            1 + 1.0 * np.expm1(0.01) - cost * 1.0,
            1 + 1.0 * (0.0 - 1e-4),  # a long pays a positive rate
            1 + -0.5 * (np.expm1(-0.02) - 3e-4) - cost * 1.5,  # a short receives it
        ]
    )
    result = run_backtest(positions, returns, cost, funding_rates=rates)
    np.testing.assert_allclose(result.equity, np.concatenate([[1.0], np.cumprod(growth)]), rtol=1e-15)
    np.testing.assert_allclose(result.funding, [0.0, 1e-4 * growth[0], -1.5e-4 * growth[:2].prod()], rtol=1e-12)
    np.testing.assert_allclose(
        net_log_return(np.array([1.0]), np.array([-0.5]), np.array([-0.02]), cost, np.array([3e-4])),
        [np.log(growth[2])],
        rtol=1e-12,
    )
    metrics = compute_metrics(result, 105_120)
    assert metrics["funding_paid"] == pytest.approx(result.funding.sum(), rel=1e-15)
    unfunded = run_backtest(positions, returns, cost)
    assert metrics["total_return_ex_funding"] == pytest.approx(unfunded.equity[-1] - 1, rel=1e-15)
    # this path's short received more than its long paid
    assert metrics["funding_paid"] < 0 and metrics["total_return"] > metrics["total_return_ex_funding"]


def test_bad_funding_rates_are_refused() -> None:
    with pytest.raises(Exception, match="funding_rates"):
        run_backtest(np.ones(3), np.zeros(3), 0.0, funding_rates=np.array([0.0, np.nan, 0.0]))
    with pytest.raises(Exception, match="funding_rates"):
        run_backtest(np.ones(3), np.zeros(3), 0.0, funding_rates=np.zeros(2))
