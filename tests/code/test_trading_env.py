"""Code tier: `dreamer.envs.TradingEnv` pays what the backtest pays, never trades across a data gap, is
reproducible from its seed and passes Gymnasium's and Stable-Baselines3's environment checkers.

The market: a seeded random walk of 5-minute bars with 10 missing bars in the train split and 10 in the
test split (each segment's first week is feature warm-up) and funding settled every 8 hours, through the
real feature pipeline (`compute_features`, `make_dataset`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dreamer.agent.portfolio import PORTFOLIO_FEATURES
from dreamer.envs import TradingEnv, TradingEnvError
from dreamer.evaluation.backtest import evaluation_window, run_backtest
from dreamer.features.config import SplitConfig
from dreamer.features.dataset import DatasetError, MarketDataset
from dreamer.features.split import make_dataset
from tests.feature_fixtures import synthetic_klines

COST = 0.00065
LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)
# What the checkers say about any honest space of this env: the features and the account's PnL are unbounded.
EXPECTED_CHECKER_WARNINGS = ("minimum value is -infinity", "maximum value is infinity", "not having a spec")


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    return synthetic_klines(20_000, missing=(range(5_000, 5_010), range(16_000, 16_010)), seed=3)


@pytest.fixture(scope="module")
def dataset(features: pd.DataFrame) -> MarketDataset:
    return make_dataset(features, SplitConfig(train_fraction=0.5, val_fraction=0.2), {"interval": "5"})


def gap_rows(dataset: MarketDataset, split: str) -> np.ndarray:
    """Rows of `split` whose next row (also in `split`) lies after a data gap."""
    start, stop = dataset.splits[split]
    rows = np.arange(start, stop - 1)
    return rows[dataset.segment_id[rows + 1] != dataset.segment_id[rows]]


def test_the_market_has_gaps_and_funding_in_train_and_test(dataset: MarketDataset) -> None:
    for split in ("train", "test"):
        window = evaluation_window(dataset, split)
        assert gap_rows(dataset, split).size == 1
        assert np.count_nonzero(window.funding_rates) > 5


def random_actions(env: TradingEnv, count: int, seed: int) -> list[object]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(count)]


@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_traded_once_earns_the_backtests_net_log_return(
    dataset: MarketDataset, action: str, split: str
) -> None:
    env = TradingEnv(dataset, split, action=action, cost_rate=COST, episode_bars=None, hold_through_gaps=True)  # type: ignore[arg-type]
    window = evaluation_window(dataset, split)
    observation, info = env.reset(options={"start": env.first_row})
    assert info["row"] == window.rows[0]
    rows, positions, nets, rewards = [], [], [], []
    truncated = False
    for act in random_actions(env, window.rows.size, seed=7):
        assert not truncated
        observation, reward, terminated, truncated, info = env.step(act)
        assert not terminated
        rows.append(info["row"])
        positions.append(info["position"])
        nets.append(info["net_log_return"])
        rewards.append(reward)
    assert truncated  # every row of the window traded once, across the gap, then the split ends
    np.testing.assert_array_equal(rows, window.rows)
    result = run_backtest(np.array(positions), window.log_returns, COST, funding_rates=window.funding_rates)
    np.testing.assert_allclose(nets, np.log1p(result.net_returns), rtol=0, atol=1e-15)
    assert sum(nets) == pytest.approx(float(np.log(result.equity[-1])), abs=1e-12)
    np.testing.assert_allclose(rewards, 100.0 * np.array(nets), rtol=1e-15)
    assert len(set(positions)) > 3  # the positions really moved
    np.testing.assert_array_equal(observation[: dataset.num_features], dataset.obs[window.rows[-1] + 1])


def test_the_observation_is_the_bars_features_and_the_dreamer_account(dataset: MarketDataset) -> None:
    env = TradingEnv(dataset, "train", cost_rate=COST)
    observation, info = env.reset(options={"start": 100})
    assert info["row"] == 100 and env.observation_space.contains(observation)
    np.testing.assert_array_equal(observation[: dataset.num_features], dataset.obs[100])
    np.testing.assert_array_equal(observation[dataset.num_features :], np.zeros(PORTFOLIO_FEATURES))  # flat
    observation, _, _, _, info = env.step(LEVELS.index(-0.5))
    np.testing.assert_array_equal(observation[: dataset.num_features], dataset.obs[101])
    position, unrealised_bps, drawdown_bps = observation[dataset.num_features :]
    net = info["net_log_return"]
    assert position == -0.5 and info["position"] == -0.5
    # symlog basis points of the position's log PnL and of the equity below its peak (the entry paid costs)
    assert unrealised_bps == pytest.approx(np.sign(net) * np.log1p(abs(net) * 1e4), rel=1e-6)
    assert drawdown_bps == pytest.approx(np.log1p(max(-net, 0.0) * 1e4), rel=1e-6, abs=1e-7)


def test_training_episodes_never_cross_a_gap_or_the_split_end(dataset: MarketDataset) -> None:
    env = TradingEnv(dataset, "train", cost_rate=COST, episode_bars=None)
    [before_gap] = gap_rows(dataset, "train")
    start, stop = dataset.splits["train"]
    # an episode started at the split's first row ends at the last bar before the gap, whose move is not traded
    env.reset(options={"start": start})
    rows = []
    truncated = False
    while not truncated:
        observation, _, _, truncated, info = env.step(2)
        rows.append(info["row"])
    assert rows == list(range(start, before_gap))
    np.testing.assert_array_equal(observation[: dataset.num_features], dataset.obs[before_gap])
    with pytest.raises(TradingEnvError, match="reset"):
        env.step(2)
    # the next one after the gap trades up to the split's last bar
    env.reset(options={"start": before_gap + 1})
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(2)
        steps += 1
    assert info["row"] == stop - 2 and steps == stop - 2 - before_gap
    with pytest.raises(TradingEnvError, match="cannot start"):
        env.reset(options={"start": before_gap})
    with pytest.raises(TradingEnvError, match="cannot start"):
        env.reset(options={"start": stop - 1})


def test_random_episodes_stay_in_one_segment_and_pay_what_the_backtest_pays(dataset: MarketDataset) -> None:
    env = TradingEnv(dataset, "train", action="continuous", cost_rate=COST, episode_bars=300)
    window = evaluation_window(dataset, "train")
    [before_gap] = gap_rows(dataset, "train")
    starts, lengths = [], []
    env.reset(seed=11)
    for episode in range(25):
        _, info = env.reset()
        starts.append(info["row"])
        rows, positions, nets = [], [], []
        truncated = False
        for act in random_actions(env, 300, seed=episode):
            if truncated:
                break
            _, _, _, truncated, info = env.step(act)
            rows.append(info["row"])
            positions.append(info["position"])
            nets.append(info["net_log_return"])
        assert truncated
        assert np.unique(dataset.segment_id[[rows[0], *(np.array(rows) + 1)]]).size == 1  # every bar held in one
        assert rows == list(range(rows[0], rows[0] + len(rows)))
        assert len(rows) == 300 or rows[-1] in (before_gap - 1, window.rows[-1])  # cut at a gap or the end
        lengths.append(len(rows))
        local = np.array(rows) - window.rows[0]
        result = run_backtest(
            np.array(positions), window.log_returns[local], COST, funding_rates=window.funding_rates[local]
        )
        np.testing.assert_allclose(nets, np.log1p(result.net_returns), rtol=0, atol=1e-15)
    assert len(set(starts)) == len(starts) and min(lengths) < 300  # random starts, some cut at a boundary


def test_seeded_resets_are_reproducible(dataset: MarketDataset) -> None:
    def starts(seed: int) -> list[int]:
        env = TradingEnv(dataset, "train")
        first = env.reset(seed=seed)[1]["row"]
        return [first] + [env.reset()[1]["row"] for _ in range(9)]

    assert starts(5) == starts(5)
    assert starts(5) != starts(6)


def test_actions_map_to_positions(dataset: MarketDataset) -> None:
    discrete = TradingEnv(dataset, "test", position_levels=(-1.0, 0.0, 0.25, 1.0))
    discrete.reset(options={"start": discrete.first_row})
    assert discrete.action_space.n == 4  # type: ignore[attr-defined]
    assert discrete.step(np.int64(2))[4]["position"] == 0.25
    with pytest.raises(TradingEnvError, match="not in Discrete"):
        discrete.step(4)
    continuous = TradingEnv(dataset, "test", action="continuous")
    continuous.reset(options={"start": continuous.first_row})
    assert continuous.step(np.array([1.7], dtype=np.float32))[4]["position"] == 1.0  # clipped
    assert continuous.step(np.array([-0.25], dtype=np.float32))[4]["position"] == -0.25
    with pytest.raises(TradingEnvError, match="one finite number"):
        continuous.step(np.array([np.nan], dtype=np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "market"}, "discrete"),
        ({"position_levels": (0.0,)}, "at least two levels"),
        ({"position_levels": (-2.0, 0.0)}, r"in \[-1, 1\]"),
        ({"position_levels": (np.nan, 0.0)}, r"in \[-1, 1\]"),
        ({"cost_rate": -1e-4}, "cost_rate"),
        ({"episode_bars": 0}, "episode_bars"),
        ({"reward_scale": 0.0}, "reward_scale"),
    ],
)
def test_bad_arguments_are_refused(dataset: MarketDataset, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TradingEnvError, match=message):
        TradingEnv(dataset, "train", **kwargs)  # type: ignore[arg-type]


def test_an_unknown_split_is_refused(dataset: MarketDataset) -> None:
    with pytest.raises(DatasetError, match="unknown split 'holdout'"):
        TradingEnv(dataset, "holdout")


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_gymnasium_and_stable_baselines3_checkers_pass(dataset: MarketDataset, action: str) -> None:
    env = TradingEnv(dataset, "train", action=action, episode_bars=64)  # type: ignore[arg-type]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env)
        sb3_check_env(env)
    unexpected = [
        str(w.message) for w in caught if not any(text in str(w.message) for text in EXPECTED_CHECKER_WARNINGS)
    ]
    assert unexpected == []


def test_from_dataset_reads_a_runs_dataset_directory(dataset: MarketDataset, tmp_path: Path) -> None:
    directory = dataset.save(tmp_path / "dataset")
    env = TradingEnv.from_dataset(directory, "val", action="continuous", episode_bars=16)
    observation, info = env.reset(seed=1)
    np.testing.assert_array_equal(observation[: dataset.num_features], dataset.obs[info["row"]])
    assert dataset.splits["val"][0] <= info["row"] < dataset.splits["val"][1] - 1
