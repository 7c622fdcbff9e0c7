"""Model tier: the MLflow pyfunc around the agent loads back into a working, causal policy."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dreamer.config import load_config
from dreamer.orchestration.pyfunc import REQUIREMENTS
from dreamer.paths import SAMPLE_CSV, SAMPLE_FUNDING_CSV
from tests.feature_fixtures import read_funding_csv

BARS = 8_000
FUNDING = read_funding_csv()  # the sample's real BTCUSDT settlements
PARAMS = {"funding_time_ms": FUNDING["funding_time_ms"].tolist(), "funding_rate": FUNDING["funding_rate"].tolist()}
pytestmark = pytest.mark.slow  # a tiny agent trained and logged once per module: ~20 s


@pytest.fixture(scope="module")
def klines() -> pd.DataFrame:
    raw = pd.read_csv(SAMPLE_CSV, nrows=BARS)
    frame = raw[["open", "high", "low", "close", "volume"]].astype(float)
    frame.insert(0, "open_time", pd.to_datetime(raw["start_ms"], unit="ms"))  # naive UTC
    return frame


@pytest.fixture(scope="module")
def agent(klines: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A tiny agent (a few policy updates in an untrained world model) and the dataset it was built on."""
    from dreamer.agent.trainer import train_policy_in
    from dreamer.features.build import compute_features
    from dreamer.features.split import make_dataset
    from dreamer.model.world_model import WorldModel

    cfg = load_config("tiny")
    dreamer_cfg = dataclasses.replace(cfg.dreamer, device="cpu", policy_steps=2)
    meta = {"symbol": "BTCUSDT", "interval": "5", "funding_settlements": len(FUNDING)}
    dataset = make_dataset(compute_features(klines, "5", FUNDING), cfg.split, meta)
    torch.manual_seed(0)
    world_model = WorldModel(dataset.num_features, dreamer_cfg)
    result = train_policy_in(world_model, dataset, dreamer_cfg, tmp_path_factory.mktemp("agent"))
    return result.checkpoint, dataset


@pytest.fixture(scope="module")
def logged(agent: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The agent logged as a pyfunc model in a throwaway sqlite store: (tracking URI, model URI)."""
    from dreamer.orchestration import tracking
    from dreamer.orchestration.pyfunc import log_agent_model

    store = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(client, "pyfunc-test")
    run = client.create_run(experiment_id)
    elsewhere = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)  # nothing may depend on, or be written to, the working directory
        info = log_agent_model(agent[0], run.info.run_id, uri, "5", metadata={"symbol": "BTCUSDT"})
    assert not (elsewhere / "mlruns").exists()
    logged_model = client.get_logged_model(info.model_id)
    assert logged_model.experiment_id == experiment_id and logged_model.source_run_id == run.info.run_id
    assert logged_model.artifact_location.startswith((store / "artifacts").as_uri())
    return uri, info.model_uri


def test_model_directory_is_a_self_contained_pyfunc(logged: tuple[str, str], tmp_path: Path) -> None:
    import mlflow

    uri, model_uri = logged
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path)))
    mlmodel = (local / "MLmodel").read_text()
    assert "python_function" in mlmodel and "pytorch" not in mlmodel
    assert (local / "artifacts" / "checkpoint.pt").exists()
    assert (local / "code" / "dreamer" / "agent" / "policy.py").exists()
    assert (local / "code" / "sql" / "features.sql").exists()
    assert not list((local / "code").rglob("__pycache__")) and not (local / "code" / "dreamer" / "resources").exists()
    requirements = (local / "requirements.txt").read_text().split()
    assert any(line.startswith("torch==") for line in requirements)
    assert any(line.startswith("duckdb==") for line in requirements)
    model = mlflow.models.Model.load(str(local))
    assert model.signature is not None
    assert model.signature.inputs.input_names() == ["open_time", "open", "high", "low", "close", "volume"]
    assert model.signature.outputs.input_names() == ["open_time", "target_position"]
    assert model.signature.params is not None
    assert [param.name for param in model.signature.params.params] == ["funding_time_ms", "funding_rate"]
    assert model.metadata == {"symbol": "BTCUSDT"}


def test_loaded_model_trades_like_the_backtest_policy(
    logged: tuple[str, str], agent: tuple[Path, object], klines: pd.DataFrame
) -> None:
    """Klines in -> the same positions the evaluation gets from the dataset's normalised features."""
    import mlflow

    from dreamer.agent.policy import TradingPolicy
    from dreamer.features.dataset import MarketDataset

    uri, model_uri = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    shuffled = klines.sample(frac=1.0, random_state=0)  # any input order
    out = model.predict(shuffled, params=PARAMS)
    assert list(out.columns) == ["open_time", "target_position"]
    assert len(out) == len(klines)
    assert out["open_time"].is_monotonic_increasing

    checkpoint, dataset = agent
    assert isinstance(dataset, MarketDataset)
    traded = out["target_position"].notna().to_numpy()
    warm_up = load_config("tiny").dreamer.sequence_length  # the agent's own latent warm-up, as in evaluation
    warm_up_rows = len(klines) - len(dataset) + warm_up  # feature warm-up + latent warm-up
    assert int(traded.sum()) == len(klines) - warm_up_rows
    positions = out["target_position"].to_numpy()[traded]
    assert set(np.unique(positions)) <= set(load_config("tiny").dreamer.position_levels)

    policy = TradingPolicy.load(checkpoint, "cpu")
    policy.warm_up(dataset.obs[:warm_up])
    settled = dataset.funding.next_rate[warm_up - 1 : -1]  # what each traded bar's holder paid
    expected = policy.target_positions(dataset.obs[warm_up:], dataset.close[warm_up:], settled)
    np.testing.assert_array_equal(positions, expected)
    assert np.count_nonzero(settled) > 10  # the comparison covers bars whose holder paid funding


def test_a_perpetual_model_refuses_to_trade_without_its_funding(logged: tuple[str, str], klines: pd.DataFrame) -> None:
    import mlflow

    uri, model_uri = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    with pytest.raises(Exception, match="funding_time_ms and funding_rate"):
        model.predict(klines)
    with pytest.raises(Exception, match="differ in length"):
        model.predict(klines, params={"funding_time_ms": PARAMS["funding_time_ms"][:3], "funding_rate": [1e-4]})


def test_positions_never_depend_on_later_bars(logged: tuple[str, str], klines: pd.DataFrame) -> None:
    import mlflow

    uri, model_uri = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    full = model.predict(klines, params=PARAMS)
    cut = model.predict(klines.iloc[: BARS - 300], params=PARAMS)  # later settlements given too: unused
    np.testing.assert_array_equal(cut["target_position"].to_numpy(), full["target_position"].to_numpy()[: BARS - 300])


LOAD_AND_PREDICT = """
import importlib.metadata, io, json, sys, sysconfig
import mlflow, pandas as pd

mlflow.set_tracking_uri(sys.argv[1])
local = mlflow.artifacts.download_artifacts(sys.argv[2])
given = json.load(sys.stdin)
klines = pd.read_json(io.StringIO(given["klines"]), orient="split")
before = set(sys.modules)
mlflow.pyfunc.load_model(local).predict(klines, params=given["params"])
site = sysconfig.get_paths()["purelib"]
owners = importlib.metadata.packages_distributions()
used = set()
for top in {name.split(".")[0] for name in set(sys.modules) - before}:
    if getattr(sys.modules.get(top), "__file__", None) and sys.modules[top].__file__.startswith(site):
        used.update(owners.get(top) or owners.get(top.lstrip("_")) or [top])  # _duckdb: duckdb's extension
print(json.dumps(sorted(used)))
"""


def test_pip_requirements_cover_what_predict_imports(logged: tuple[str, str], klines: pd.DataFrame) -> None:
    """Load and predict in a fresh interpreter: every third-party distribution the model itself imports
    (beyond what MLflow imported to download it) is pinned in its requirements, or installed by one that is."""
    uri, model_uri = logged
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, uri, model_uri],
        input=json.dumps({"klines": klines.iloc[:600].to_json(orient="split", date_unit="ms"), "params": PARAMS}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    used = {_canonical(name) for name in json.loads(result.stdout.strip().splitlines()[-1])}
    assert "torch" in used and "duckdb" in used
    missing = sorted(used - _with_dependencies(REQUIREMENTS))
    assert not missing, f"imported by the model but not in its pip requirements: {missing}"


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _with_dependencies(names: tuple[str, ...]) -> set[str]:
    """`names` and everything they install (their non-extra requirements, transitively)."""
    import importlib.metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_canonical(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_canonical(requirement.name))
    return seen


# --- `dreamer predict`: the registry's champion on the newest stored bars ---------------------------------


@pytest.fixture(scope="module")
def klines_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the first BARS candles of the sample."""
    from dreamer.data.ingest import ingest_csv

    folder = tmp_path_factory.mktemp("db")
    csv = folder / "klines.csv"
    pd.read_csv(SAMPLE_CSV, nrows=BARS).to_csv(csv, index=False)
    db = folder / "dreamer.duckdb"
    ingest_csv(db, csv, "linear", "BTCUSDT", "5", funding_path=SAMPLE_FUNDING_CSV)
    return db


def test_predict_prints_the_champion_position_for_the_latest_bar(
    logged: tuple[str, str],
    klines_db: Path,
    klines: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    from dreamer.cli import main
    from dreamer.features.build import LONGEST_WINDOW
    from dreamer.orchestration import registry

    uri, model_uri = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri, uri)
    name = registry.registered_model_name("linear", "BTCUSDT", "5")
    run_id = client.get_logged_model(model_uri.split("/")[-1]).source_run_id
    assert run_id is not None
    version = registry.register_version(client, name, model_uri, run_id)
    client.set_registered_model_alias(name, registry.CHAMPION, str(version.version))

    context = 500
    assert main(["predict", "--symbol", "btcusdt", "--interval", "5", "--db", str(klines_db), "--json",
                 "--context-bars", str(context)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["model"] == "dreamer-linear-btcusdt-5" and result["version"] == str(version.version)
    last_bar = klines["open_time"].iloc[-1].tz_localize("UTC")
    assert pd.Timestamp(result["bar_open_time"]) == last_bar
    assert result["bars_read"] == LONGEST_WINDOW + load_config("tiny").dreamer.sequence_length + context

    mlflow.set_tracking_uri(uri)
    window = klines.iloc[-result["bars_read"] :]
    expected = mlflow.pyfunc.load_model(model_uri).predict(window, params=PARAMS)["target_position"].iloc[-1]
    assert result["target_position"] == expected
    assert "warning: the latest stored bar closed" in captured.err  # the sample ends months ago

    assert main(["predict", "--symbol", "BTCUSDT", "--interval", "5", "--db", str(klines_db)]) == 0
    sentence = capsys.readouterr().out
    assert f"target position {expected:+.2f}" in sentence and "dreamer-linear-btcusdt-5" in sentence


def test_predict_without_a_champion_says_what_to_do(
    tmp_path: Path, klines_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dreamer.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["predict", "--symbol", "ETHUSDT", "--interval", "15", "--db", str(klines_db)]) == 1
    error = capsys.readouterr().err
    assert "no alias 'champion' of model dreamer-linear-ethusdt-15" in error
    assert "prefect deployment run dreamer/daily" in error
