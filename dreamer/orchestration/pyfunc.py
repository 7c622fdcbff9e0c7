"""The trained agent as an MLflow pyfunc model: a window of klines in, target positions out.

Input: a DataFrame of consecutive klines of the model's market, `open_time` (candle start, UTC) and
`open, high, low, close, volume`, any order. The model computes the features with the very same
DuckDB SQL as training (`dreamer.features.build.compute_features`), drops each segment's feature warm-up,
normalises with the training split's statistics stored in the checkpoint, filters the world model's
latent over the first `sequence_length` usable bars (of the agent's own config, stored in its checkpoint:
the warm-up `dreamer.pipeline.stage_evaluate` gives it too) without trading, then runs the deterministic
policy from a flat account over the rest, so the model reproduces the evaluation's positions.

On a perpetual the model also needs the contract's funding settlements (its features and its account read
them), as the params `funding_time_ms` (settlement times, UTC epoch ms) and `funding_rate` (fraction per
settlement, positive: longs pay), from two days before the first kline on: `model.predict(klines,
params={"funding_time_ms": [...], "funding_rate": [...]})`. A model trained with funding refuses a call
without it rather than reading zeros; `latest_position` passes the stored settlements.

Output: one row per input bar, oldest first: `open_time` and `target_position` in [-1, 1], the position
to hold over the next bar, decided at the bar's close (NaN for warm-up bars). The last row is what a
trader acts on next.

The model directory is self-contained: the agent checkpoint (world model + actor state_dicts, config,
normaliser) as an artifact, the `dreamer` package and `sql/` as code paths (the feature definitions the
agent was trained with travel with it), and pinned pip requirements. Logged with `mlflow.pyfunc`, not
`mlflow.pytorch` (whose MLflow 3 default, a pt2 export, cannot hold a stateful recurrent policy).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from dreamer.paths import PROJECT_ROOT, SQL_DIR

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo
    from mlflow.pyfunc import PyFuncModel

    from dreamer.agent.policy import TradingPolicy

AGENT_ARTIFACT = "agent"
INPUT_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
OUTPUT_COLUMN = "target_position"
FUNDING_TIMES_PARAM, FUNDING_RATES_PARAM = "funding_time_ms", "funding_rate"
DEFAULT_CONTEXT_BARS = 1_000  # bars traded from a flat account before the latest one, in `latest_position`
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "duckdb", "pyarrow", "pyyaml", "cloudpickle")
"""Distributions the model imports at load and predict time (pinned to the versions installed here)."""
_NOT_CODE = ("__pycache__", "*.pyc", "resources")


class AgentModel(PythonModel):
    """See the module docstring. State is reset on every `predict` call: each call is one fresh window."""

    def load_context(self, context: Any) -> None:
        from dreamer.agent.policy import TradingPolicy

        config = dict(context.model_config or {})
        self.interval = str(config["interval"])
        self.policy = TradingPolicy.load(context.artifacts[AGENT_ARTIFACT], "cpu")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return target_positions(self.policy, model_input, self.interval, funding_from_params(params))


def funding_from_params(params: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """The settlements passed as predict params (module docstring), None when none were passed."""
    times = list((params or {}).get(FUNDING_TIMES_PARAM) or [])
    rates = list((params or {}).get(FUNDING_RATES_PARAM) or [])
    if len(times) != len(rates):
        raise ValueError(
            f"params {FUNDING_TIMES_PARAM} ({len(times)}) and {FUNDING_RATES_PARAM} ({len(rates)}) differ in length"
        )
    if not times:
        return None
    return pd.DataFrame({"funding_time_ms": np.asarray(times, np.int64), "funding_rate": np.asarray(rates, np.float64)})


def trained_with_funding(policy: TradingPolicy) -> bool:
    """Whether the agent learned on a market that settled funding (its features and account need it)."""
    return int(policy.meta.get("funding_settlements", 0) or 0) > 0


def warm_up_bars(policy: TradingPolicy) -> int:
    """Bars of latent warm-up before trading: the agent's own `sequence_length`, from its checkpoint, as in
    `dreamer.pipeline.stage_evaluate` (and `policy.reset()` draws latents from the agent's seed, as there)."""
    return int(policy.cfg.sequence_length)


def target_positions(
    policy: TradingPolicy, klines: pd.DataFrame, interval: str, funding: pd.DataFrame | None = None
) -> pd.DataFrame:
    """`open_time, target_position` for every bar of `klines`, with the contract's `funding` settlements
    (`funding_time_ms, funding_rate`; None: no funding), see the module docstring."""
    from dreamer.features.build import compute_features

    if funding is None and trained_with_funding(policy):
        raise ValueError(
            "this agent trades a perpetual and learned with its funding: pass the settlements as params "
            f"{FUNDING_TIMES_PARAM} and {FUNDING_RATES_PARAM}, from two days before the first kline on"
        )
    features = compute_features(klines, interval, funding)  # oldest first, one row per bar
    names = list(policy.feature_names)
    usable = ~features["warmup"].to_numpy(dtype=bool)
    if policy.normaliser is None:
        raise ValueError("the agent checkpoint has no normaliser; it cannot read raw features")
    obs = policy.normaliser.apply(features.loc[usable, names].to_numpy(dtype=np.float64))  # [U, F]
    close = features.loc[usable, "close"].to_numpy(dtype=np.float64)  # [U]
    settled_sum = features.loc[usable, "funding_settled_sum"].to_numpy(dtype=np.float64)  # [U]
    settled = np.diff(settled_sum, prepend=settled_sum[:1])  # [U] paid over each bar since the previous row
    warm = min(warm_up_bars(policy), max(len(obs) - 1, 0))
    positions = np.full(len(features), np.nan)
    if len(obs):
        policy.reset()
        policy.warm_up(obs[:warm])
        traded = np.flatnonzero(usable)[warm:]
        positions[traded] = policy.target_positions(obs[warm:], close[warm:], settled[warm:])
    open_time = pd.to_datetime(features["open_time"], utc=True).dt.tz_localize(None)
    return pd.DataFrame({"open_time": open_time.to_numpy(), OUTPUT_COLUMN: positions})


def signature() -> ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    prices = [ColSpec("double", name) for name in INPUT_COLUMNS[1:]]
    return ModelSignature(
        inputs=Schema([ColSpec("datetime", "open_time"), *prices]),
        outputs=Schema([ColSpec("datetime", "open_time"), ColSpec("double", OUTPUT_COLUMN)]),
        params=ParamSchema(
            [ParamSpec(FUNDING_TIMES_PARAM, "long", [], (-1,)), ParamSpec(FUNDING_RATES_PARAM, "double", [], (-1,))]
        ),
    )


def pip_requirements() -> list[str]:
    """`name==version` of every distribution the model needs, as installed in this environment."""
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_agent_model(
    agent_checkpoint: str | Path,
    run_id: str,
    tracking_uri: str,
    interval: str,
    metadata: Mapping[str, Any] | None = None,
    name: str = AGENT_ARTIFACT,
) -> ModelInfo:
    """Log the agent at `agent_checkpoint` as a pyfunc model in run `run_id`, given by id (callers in any
    thread or process log into a run they hold only the id of)."""
    from mlflow.models import Model

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    # MLflow 3 files the logged model under the *active* experiment, not the run's: without this it lands
    # in experiment 0, whose artifacts go to ./mlruns of whatever directory the process runs in.
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id)
    checkpoint = Path(agent_checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoint.pt"
    with tempfile.TemporaryDirectory(prefix="dreamer-code-") as code_dir, warnings.catch_warnings():
        # No input example: callers check the logged model by loading it and trading real bars instead.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        # The package without caches and bundled data: code and SQL only.
        package = shutil.copytree(
            PROJECT_ROOT / "dreamer", Path(code_dir) / "dreamer", ignore=shutil.ignore_patterns(*_NOT_CODE)
        )
        return Model.log(
            artifact_path=None,  # MLflow 3 names logged models with `name`
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(Path(__file__).with_name("agent_model.py")),  # models from code: no pickle
            artifacts={AGENT_ARTIFACT: str(checkpoint)},
            code_paths=[str(package), str(SQL_DIR)],
            signature=signature(),
            pip_requirements=pip_requirements(),
            model_config={"interval": str(interval)},
            metadata=dict(metadata or {}),
        )


def recent_klines(
    db_path: str | Path, category: str, symbol: str, interval: str, bars: int, now_ms: int | None = None
) -> pd.DataFrame:
    """The newest `bars` stored klines of a series whose candle has closed by `now_ms` (default: now),
    oldest first, in the model's input format (naive UTC `open_time`)."""
    import time

    from dreamer.data import store
    from dreamer.data.markets import parse_interval

    step = parse_interval(interval)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    con = store.connect(db_path, read_only=True)
    try:
        last = store.last_open_time(con, category, symbol, interval)
        if last is None:
            return pd.DataFrame(columns=list(INPUT_COLUMNS))
        newest_closed = min(last, step.shift_one(step.floor_one(now_ms), -1))
        frame = store.read_klines(
            con, category, symbol, interval, start=step.shift_one(newest_closed, 1 - bars), end=newest_closed
        )
    finally:
        con.close()
    frame = frame.loc[:, list(INPUT_COLUMNS)]
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True).dt.tz_localize(None)
    return frame.reset_index(drop=True)


def recent_funding(db_path: str | Path, category: str, symbol: str, klines: pd.DataFrame) -> pd.DataFrame | None:
    """The stored settlements the features of `klines` read (`dreamer.features.build.read_funding_for`)."""
    from dreamer.data import store
    from dreamer.features.build import read_funding_for

    con = store.connect(db_path, read_only=True)
    try:
        return read_funding_for(con, category, symbol, klines)
    finally:
        con.close()


def latest_position(
    model: PyFuncModel,
    db_path: str | Path,
    category: str,
    symbol: str,
    interval: str,
    context_bars: int = DEFAULT_CONTEXT_BARS,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Trade the newest closed bars stored in `db_path` with the loaded pyfunc `model`: the target position
    for the latest one, with the bars it was computed from."""
    from dreamer.errors import DreamerError
    from dreamer.features.build import LONGEST_WINDOW

    warm_up = warm_up_bars(model.unwrap_python_model().policy)
    klines = recent_klines(db_path, category, symbol, interval, LONGEST_WINDOW + warm_up + context_bars, now_ms)
    if klines.empty:
        raise DreamerError(f"no closed {category}/{symbol}/{interval} klines in {db_path}; ingest them first")
    funding = recent_funding(db_path, category, symbol, klines)
    if funding is None and trained_with_funding(model.unwrap_python_model().policy):
        raise DreamerError(
            f"no funding settlements of {category}/{symbol} in {db_path}, and this model learned with funding: "
            f"ingest them first (`dreamer ingest --category {category} --symbol {symbol}` fetches both)"
        )
    params = None
    if funding is not None:
        params = {
            FUNDING_TIMES_PARAM: funding["funding_time_ms"].tolist(),
            FUNDING_RATES_PARAM: funding["funding_rate"].tolist(),
        }
    out = cast(pd.DataFrame, model.predict(klines, params=params))  # what `AgentModel.predict` returns
    traded = out.dropna(subset=[OUTPUT_COLUMN])
    if traded.empty:
        raise DreamerError(
            f"the {len(klines)} newest klines in {db_path} are too few (or too gappy) for a decision: the model "
            f"needs {LONGEST_WINDOW} bars of feature warm-up and {warm_up} of latent warm-up after every gap"
        )
    last = traded.iloc[-1]
    if last["open_time"] != klines["open_time"].iloc[-1]:
        raise DreamerError(
            f"the latest stored bar {klines['open_time'].iloc[-1]} UTC is still in the warm-up that follows a gap "
            f"in the data; the last decision possible is for {last['open_time']} UTC (ingest the missing bars)"
        )
    position = float(last[OUTPUT_COLUMN])
    if not -1.0 <= position <= 1.0:
        raise DreamerError(f"the model returned target position {position}, outside [-1, 1]")
    bar_open = pd.Timestamp(last["open_time"]).tz_localize("UTC")
    return {
        "target_position": position,
        "bar_open_time": bar_open.isoformat(),
        "bar_open_time_ms": int(bar_open.value // 1_000_000),
        "bars_read": len(klines),
        "bars_traded": len(traded),
    }


def agent_checkpoint_in(model_dir: str | Path) -> Path:
    """The agent checkpoint file inside a downloaded pyfunc model directory."""
    matches = sorted((Path(model_dir) / "artifacts").glob("*.pt"))
    if len(matches) != 1:
        raise FileNotFoundError(f"{model_dir} holds {len(matches)} agent checkpoints under artifacts/, expected 1")
    return matches[0]
