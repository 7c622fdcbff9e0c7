"""Gymnasium environments over the pipeline's datasets, for model-free baselines (PPO).

`TradingEnv.from_dataset(run_dir / "dataset", "train")` trades a split of the dataset a run wrote with the
backtest's timing, costs and funding; see `dreamer.envs.trading_env` for observations, actions, rewards and
episodes.
"""

from dreamer.envs.trading_env import TradingEnv, TradingEnvError

__all__ = ["TradingEnv", "TradingEnvError"]
