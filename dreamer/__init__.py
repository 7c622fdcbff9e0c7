"""dreamer-trading: DreamerV3-style world-model agents for crypto perpetuals.

The library behind the `dreamer` CLI and the Prefect flow `dreamer`: data ingestion (`dreamer.data`),
validation and features (`dreamer.features`), the world model (`dreamer.model`), training
(`dreamer.training`), the actor-critic (`dreamer.agent`), evaluation (`dreamer.evaluation`, with a PPO
baseline on the Gymnasium environment of `dreamer.envs`) and MLflow tracking and promotion
(`dreamer.orchestration`).
"""

__version__ = "0.1.0"
