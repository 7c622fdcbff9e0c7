"""Model tier: the PPO baseline learns a market whose next move a feature gives away, trades a real sample
without crashing, reproducibly and without touching the global generators; the README's example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.config import load_config
from dreamer.evaluation.backtest import evaluation_window, run_backtest
from dreamer.evaluation.ppo import ppo_positions, train_ppo
from dreamer.evaluation.ppo_config import PPOConfig
from dreamer.features.build import compute_features
from dreamer.features.dataset import MarketDataset
from dreamer.features.split import make_dataset
from tests.feature_fixtures import read_funding_csv, sample_klines
from tests.model.conftest import market_from_returns

pytestmark = pytest.mark.slow  # PPO trains for a few seconds per test
README = Path(__file__).resolve().parents[2] / "README.md"
LOW_COST = 1e-4


def told_market(bars: int = 4_000, seed: int = 0) -> MarketDataset:
    """Row t's first feature is the sign of the move over bar t+1 (the second is noise): an oracle trades it
    perfectly, and so should PPO, in a few thousand steps."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], bars)
    next_returns = sign * np.abs(rng.normal(0.0, 1e-3, bars))
    features = np.stack([sign, rng.standard_normal(bars)], axis=1)
    return market_from_returns(
        features, next_returns, {"train": (0, 3_000), "val": (3_000, 3_400), "test": (3_400, bars)}
    )


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_ppo_learns_a_market_whose_next_move_a_feature_tells(action: str) -> None:
    market = told_market()
    cfg = PPOConfig(total_timesteps=4_096, n_steps=512, episode_bars=256, action=action, device="cpu")  # type: ignore[arg-type]
    policy = train_ppo(market, cfg, seed=0, cost_rate=LOW_COST)
    window = evaluation_window(market, "test")
    positions = ppo_positions(policy, market, "test")
    assert positions.shape == window.rows.shape

    def net_log_return(held: np.ndarray) -> float:
        result = run_backtest(held, window.log_returns, LOW_COST, funding_rates=window.funding_rates)
        return float(np.log(result.equity[-1]))

    oracle = net_log_return(np.sign(window.log_returns))
    assert oracle > 0.3
    assert net_log_return(positions) > 0.5 * oracle


@pytest.fixture(scope="module")
def sample_dataset() -> MarketDataset:
    """The first 8,000 bars of the bundled real BTCUSDT sample with its real funding, split as `tiny` splits."""
    klines = sample_klines(8_000)
    meta = {"symbol": "BTCUSDT", "interval": "5"}
    return make_dataset(compute_features(klines, "5", read_funding_csv()), load_config("tiny").split, meta)


def test_ppo_trades_a_real_sample_reproducibly_and_leaves_the_global_generators_alone(
    sample_dataset: MarketDataset,
) -> None:
    cfg = PPOConfig(total_timesteps=512, n_steps=256, batch_size=64, episode_bars=128, action="continuous")
    cost_rate = load_config("tiny").dreamer.cost_rate
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    runs = [
        ppo_positions(train_ppo(sample_dataset, cfg, seed=3, cost_rate=cost_rate), sample_dataset, "val")
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    window = evaluation_window(sample_dataset, "val")
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == window.rows.shape and np.isfinite(runs[0]).all() and np.abs(runs[0]).max() <= 1.0
    result = run_backtest(runs[0], window.log_returns, cost_rate, funding_rates=window.funding_rates)
    assert np.isfinite(result.equity).all()


def test_the_readme_example_runs(
    sample_dataset: MarketDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    section = README.read_text(encoding="utf-8").split("## Gymnasium environment", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    sample_dataset.save(tmp_path / "runs" / "demo" / "dataset")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert len(printed) >= 2 and all(np.isfinite(float(value)) for value in printed[-2:])
