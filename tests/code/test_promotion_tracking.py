"""Code tier: where MLflow runs go and what gets logged (store resolution, names, curves, cache keys)."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dreamer.orchestration import stage_logs, tracking
from dreamer.orchestration.tracking import FlowTracking, RunLogger, flatten_numeric


def test_default_store_is_an_absolute_sqlite_uri_under_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert uri.startswith("sqlite:////")  # four slashes: an absolute path
    assert tracking.artifact_location(uri) == (tmp_path / "mlflow" / "artifacts").resolve().as_uri()


def test_sqlite_database_path_as_sqlalchemy_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.sqlite_db_path("sqlite:////abs/my%20store/mlflow.db") == Path("/abs/my store/mlflow.db")
    assert tracking.sqlite_db_path("sqlite:///rel/mlflow.db?timeout=5") == tmp_path.resolve() / "rel" / "mlflow.db"
    assert tracking.artifact_location("sqlite:///rel/mlflow.db") == (tmp_path / "rel" / "artifacts").resolve().as_uri()
    for other in ("sqlite:///:memory:", "sqlite://", "http://127.0.0.1:5000", "file:///tmp/mlruns"):
        assert tracking.sqlite_db_path(other) is None


def test_registry_lock_lives_next_to_the_store(tmp_path: Path) -> None:
    from dreamer.orchestration.registry import registry_lock

    lock = registry_lock(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    assert Path(lock.lock_file) == tmp_path.resolve() / "mlflow" / "mlflow.db.registry.lock"
    remote = registry_lock("http://127.0.0.1:5000")  # no shared folder: this machine's runs only
    assert Path(remote.lock_file).parent == Path(tempfile.gettempdir())
    assert remote.lock_file == registry_lock("http://127.0.0.1:5000").lock_file != registry_lock("http://h:1").lock_file


def test_tracking_uri_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    assert tracking.artifact_location("http://127.0.0.1:5000") is None  # the server decides


def test_flatten_numeric_names_and_values() -> None:
    flat = flatten_numeric(
        {"agent": {"sharpe": 1.5, "hit_rate": None, "beats": True, "ci": [0.1, 0.2]}, "long+short": 0.25},
        prefix="eval",
    )
    assert flat == {"eval.agent.sharpe": 1.5, "eval.agent.beats": 1.0, "eval.long_short": 0.25}
    assert math.isnan(flatten_numeric({"x": math.nan})["x"])


def test_run_url_needs_a_known_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    local = FlowTracking("sqlite:////tmp/x.db", "3", "abc")
    monkeypatch.delenv("DREAMER_MLFLOW_UI", raising=False)
    assert local.run_url() is None and local.artifact_url("x") is None and local.runs_table_url() is None
    monkeypatch.setenv("DREAMER_MLFLOW_UI", "http://127.0.0.1:5000/")
    # every link opens the model-training pages, not the GenAI overview the UI starts on
    assert local.run_url() == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert local.artifact_url("tearsheet/t.html") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc/artifactPath/tearsheet/t.html?workflowType=machine_learning"
    )
    assert local.runs_table_url() == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&searchFilter=tags.%60mlflow.parentRunId%60%20IS%20NULL&orderByKey=metrics.%60agent.sharpe%60&orderByAsc=false"
    )
    remote = FlowTracking("https://mlflow.example.com", "3", "abc")
    monkeypatch.delenv("DREAMER_MLFLOW_UI")
    assert remote.run_url("def") == "https://mlflow.example.com/#/experiments/3/runs/def?workflowType=machine_learning"


EVALUATION = {
    "agent": {"sharpe": 1.2, "sharpe_ci": [-0.3, 2.7], "max_drawdown": 0.04, "turnover": 0.01, "total_return": 0.02,
              "funding_paid": 0.001, "hit_rate": 0.5, "degenerate": False},
    "baselines": {"buy_and_hold": {"sharpe": 0.4, "funding_paid": None}, "flat": {"sharpe": 0.0}},
    "comparison": {"buy_and_hold": {"sharpe_diff": 0.8, "sharpe_diff_ci": [-0.5, 2.0], "beats": True,
                                    "significant": False},
                   "flat": {"sharpe_diff": 1.2, "sharpe_diff_ci": [0.1, 2.5], "beats": True, "significant": True}},
    "world_model": {"direction_accuracy": 0.51},
}  # fmt: skip


def test_the_headline_is_flat_scalars_with_interval_bounds_and_paired_differences() -> None:
    flat = flatten_numeric(stage_logs.headline(EVALUATION))
    assert set(flat) == set(flatten_numeric(flat))  # every name valid in MLflow as it is
    expected = {
        "agent.sharpe": 1.2,
        "agent.sharpe_ci_low": -0.3,
        "agent.sharpe_ci_high": 2.7,
        "agent.max_drawdown": 0.04,
        "agent.turnover": 0.01,
        "agent.total_return": 0.02,
        "agent.funding_paid": 0.001,
        "baselines.buy_and_hold.sharpe": 0.4,
        "vs_buy_and_hold.sharpe_diff": 0.8,
        "vs_buy_and_hold.sharpe_diff_ci_low": -0.5,
        "vs_buy_and_hold.sharpe_diff_ci_high": 2.0,
        "vs_buy_and_hold.significant": 0.0,
        "vs_flat.sharpe_diff_ci_low": 0.1,
        "vs_flat.significant": 1.0,
        "world_model.direction_accuracy": 0.51,
    }
    assert expected.items() <= flat.items()
    assert "baselines.buy_and_hold.funding_paid" not in flat  # absent, not zero
    assert "agent.hit_rate" not in flat  # the headline, not every metric (the evaluate stage run has those)

    decision = {"promote": False, "sharpe_diff": {"diff": 0.25, "ci_low": -0.4, "ci_high": 0.9, "confidence": 0.95,
                                                  "significant": False}}  # fmt: skip
    after = flatten_numeric(
        stage_logs.promotion_headline({"decision": decision, "champion": {"metrics": {"sharpe": 1.0}}})
    )
    assert after == {
        "promotion.promoted": 0.0,
        "champion.sharpe": 1.0,
        "vs_champion.sharpe_diff": 0.25,
        "vs_champion.sharpe_diff_ci_low": -0.4,
        "vs_champion.sharpe_diff_ci_high": 0.9,
        "vs_champion.significant": 0.0,
    }
    first = flatten_numeric(stage_logs.promotion_headline({"decision": {"promote": True, "sharpe_diff": None}}))
    assert first == {"promotion.promoted": 1.0}  # no champion: nothing to compare with


def test_the_parent_run_names_the_device_it_resolved() -> None:
    from dreamer.config import load_config
    from dreamer.training import resolve_device

    automatic = stage_logs.parent_params(load_config("tiny"), {"source": "sample"})
    pinned = stage_logs.parent_params(load_config("tiny", {"dreamer": {"device": "cpu"}}), {"source": "sample"})
    assert (
        automatic["dreamer.device"] == str(resolve_device("auto")) and automatic["dreamer.device_requested"] == "auto"
    )
    assert pinned["dreamer.device"] == "cpu" and pinned["dreamer.device_requested"] == "cpu"
    assert automatic["data.source"] == "sample" and automatic["dreamer.seed"] == pinned["dreamer.seed"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    folder = tmp_path_factory.mktemp("mlflow") / "store"
    client = tracking.client(f"sqlite:///{folder / 'mlflow.db'}")  # creates the store's folder
    return client, tracking.ensure_experiment(client, "tests")


def test_experiment_gets_the_explicit_artifact_location(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    assert tracking.ensure_experiment(client, "tests") == experiment_id  # idempotent
    db_folder = Path(client.tracking_uri.removeprefix("sqlite:///")).parent
    assert client.get_experiment(experiment_id).artifact_location == (db_folder / "artifacts").as_uri()


def test_experiments_open_on_the_runs_table_not_the_genai_overview(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    older = client.create_experiment("made-before-the-tag")  # an experiment of an older store
    tracking.ensure_experiment(client, "made-before-the-tag")
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"


def test_parent_and_stage_runs(store: tuple[MlflowClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    params = {"a.b": 1, "levels": (-1, 1), "floor": None}
    parent = tracking.start_flow_run("run", {"symbol": "BTCUSDT", "absent": None}, params, uri=client.tracking_uri)
    run = client.get_run(parent.run_id)
    assert run.data.tags["symbol"] == "BTCUSDT" and "absent" not in run.data.tags
    assert run.data.params == {"a.b": "1", "levels": "[-1, 1]", "floor": "null"}

    with tracking.stage_run(parent, "ingest") as stage:
        stage.metrics({"rows": 10})
    with pytest.raises(RuntimeError), tracking.stage_run(parent, "validate"):
        raise RuntimeError("boom")
    interrupted = client.create_run(parent.experiment_id, tags={"mlflow.parentRunId": parent.run_id})
    tracking.finish_run(parent, failed=True)
    assert client.get_run(interrupted.info.run_id).info.status == "FAILED"  # closed with its parent
    client.delete_run(interrupted.info.run_id)
    children = client.search_runs(
        [parent.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}'"
    )
    statuses = {child.data.tags["dreamer.stage"]: child.info.status for child in children}
    assert statuses == {"ingest": "FINISHED", "validate": "FAILED"}
    assert client.get_run(parent.run_id).info.status == "FAILED"


def test_metrics_logged_with_a_model_id_are_the_logged_model_s_too(store: tuple[MlflowClient, str]) -> None:
    """What the UI's Models view and a registered version show: the logged model's own metrics."""
    client, experiment_id = store
    run = client.create_run(experiment_id)
    model = client.create_logged_model(experiment_id, source_run_id=run.info.run_id)
    logger = RunLogger(client, run.info.run_id)
    logger.metrics({"vs_champion": {"sharpe_diff": 0.25}}, model_id=model.model_id)
    logger.metrics({"agent": {"sharpe": 1.0}})
    assert {m.key: m.value for m in client.get_logged_model(model.model_id).metrics} == {
        "vs_champion.sharpe_diff": 0.25
    }
    assert client.get_run(run.info.run_id).data.metrics == {"vs_champion.sharpe_diff": 0.25, "agent.sharpe": 1.0}


def test_plots_and_the_tear_sheet_go_to_the_parent_run(
    store: tuple[MlflowClient, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, experiment_id = store
    run = client.create_run(experiment_id)
    parent = FlowTracking(client.tracking_uri, experiment_id, run.info.run_id)
    (tmp_path / "equity.png").write_bytes(b"png")
    (tmp_path / "tearsheet.html").write_text("<html></html>")
    evaluation = {"plots": {"equity": str(tmp_path / "equity.png")}, "tearsheet": str(tmp_path / "tearsheet.html")}
    stage_logs.log_parent_plots(parent, evaluation)
    logged = {a.path for folder in ("plots", "tearsheet") for a in client.list_artifacts(run.info.run_id, folder)}
    assert logged == {"plots/equity.png", "tearsheet/tearsheet.html"}
    assert stage_logs.tearsheet_artifact(evaluation) == "tearsheet/tearsheet.html"
    monkeypatch.setenv("DREAMER_MLFLOW_UI", "http://127.0.0.1:5000")
    assert parent.artifact_url("tearsheet/tearsheet.html") == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run.info.run_id}/artifactPath/tearsheet/tearsheet.html"
        "?workflowType=machine_learning"
    )
    assert stage_logs.tearsheet_artifact({"plots": {}}) is None  # an evaluation without one


def test_runs_left_running_by_a_killed_process_are_closed(store: tuple[MlflowClient, str]) -> None:
    """A run killed with -9 leaves its parent and stage runs RUNNING; the next run on the store closes them
    as KILLED, and only them: runs of live processes, of other hosts or without a process tag are kept."""
    import socket
    import subprocess
    import sys

    client, _ = store
    experiment_id = tracking.ensure_experiment(client, "abandoned")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    def parent(pid: int | None, host: str = socket.gethostname()) -> str:
        tags = {} if pid is None else {tracking.PID_TAG: str(pid), tracking.HOST_TAG: host}
        return client.create_run(experiment_id, tags=tags).info.run_id

    killed, alive, elsewhere, untagged = parent(gone.pid), parent(os.getpid()), parent(gone.pid, "other"), parent(None)
    stage = client.create_run(experiment_id, tags={"mlflow.parentRunId": killed}).info.run_id
    finished = client.create_run(experiment_id, tags={"mlflow.parentRunId": killed}).info.run_id
    client.set_terminated(finished, "FINISHED")

    closed = tracking.close_abandoned_runs(client, experiment_id)
    assert sorted(closed) == sorted([killed, stage])
    status = {run_id: client.get_run(run_id).info.status for run_id in (killed, stage, finished, alive)}
    assert status == {killed: "KILLED", stage: "KILLED", finished: "FINISHED", alive: "RUNNING"}
    assert {client.get_run(run_id).info.status for run_id in (elsewhere, untagged)} == {"RUNNING"}
    assert tracking.close_abandoned_runs(client, experiment_id) == []


def test_a_flow_run_records_its_process(store: tuple[MlflowClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    client, _ = store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    parent = tracking.start_flow_run("run", {}, {}, uri=client.tracking_uri)
    tags = client.get_run(parent.run_id).data.tags
    assert (tags[tracking.PID_TAG], tags[tracking.HOST_TAG]) == (str(os.getpid()), socket.gethostname())
    tracking.finish_run(parent, failed=False)


def test_history_is_thinned_but_keeps_the_last_step(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    run = client.create_run(experiment_id)
    logger = RunLogger(client, run.info.run_id)
    records = [{"step": step, "loss": 1.0 / step, "time/ms": 3.0} for step in range(1, 2_502)]
    assert logger.history(records, max_points=1_000) == 835  # every 3rd of 2,501 steps, the last included
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps[:3] == [1, 4, 7] and steps[-1] == 2_501 and len(steps) == 835
    short = client.create_run(experiment_id)
    assert RunLogger(client, short.info.run_id).history(records[:10], max_points=1_000) == 10


def test_features_cache_key_changes_with_the_data_and_the_split(tmp_path: Path) -> None:
    import pandas as pd

    from dreamer.config import load_config
    from dreamer.data import store as kline_store
    from dreamer.data.ingest import ingest_csv
    from dreamer.orchestration.cache import features_cache_key
    from dreamer.paths import SAMPLE_CSV
    from dreamer.pipeline import DataSpec

    csv = tmp_path / "k.csv"
    pd.read_csv(SAMPLE_CSV, nrows=600).to_csv(csv, index=False)
    db = tmp_path / "k.duckdb"
    ingest_csv(db, csv, "linear", "BTCUSDT", "5")
    spec = DataSpec(source="csv", path=str(csv), lookback_days=365)
    cfg = load_config("tiny")
    key = features_cache_key(spec, db, cfg)
    assert key == features_cache_key(spec, db, cfg) and len(key) == 32

    other_split = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, train_fraction=0.6))
    assert features_cache_key(spec, db, other_split) != key

    con = kline_store.connect(db)
    try:
        con.execute("UPDATE klines SET close = close + 1 WHERE open_time = (SELECT max(open_time) FROM klines)")
    finally:
        con.close()
    assert features_cache_key(spec, db, cfg) != key  # one corrected candle is new data


def test_feature_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    import os

    from dreamer.orchestration.cache import touch_and_prune

    entries = [tmp_path / f"key{i}" for i in range(7)]
    for age, entry in enumerate(entries):  # key0 is the newest, key6 the oldest
        entry.mkdir()
        os.utime(entry, (1_000_000 - age, 1_000_000 - age))
    pruned = touch_and_prune(tmp_path, entries[6], keep=5)  # the oldest is used again: it stays
    assert sorted(p.name for p in pruned) == ["key4", "key5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key0", "key1", "key2", "key3", "key6"]


def test_the_prefect_cache_entry_of_a_dataset_is_local_to_its_directory(tmp_path: Path) -> None:
    """Prefect's result cache is shared by every project of the user: the same data in another project's
    runs directory must not hand this run a path into that directory."""
    from dreamer.orchestration.cache import prefect_cache_key

    here, there = tmp_path / "here" / "key", tmp_path / "there" / "key"
    assert prefect_cache_key("key", str(here)) == prefect_cache_key("key", str(here))
    assert prefect_cache_key("key", str(here)) != prefect_cache_key("key", str(there))
    assert prefect_cache_key("key", str(here)) != prefect_cache_key("other", str(here))


def test_a_corrupted_dataset_is_not_reused(tmp_path: Path) -> None:
    import numpy as np

    from dreamer.features.dataset import DATASET_ARRAYS
    from dreamer.orchestration.cache import reusable_dataset
    from tests.model.conftest import market_from_returns

    returns = np.random.default_rng(0).normal(scale=1e-3, size=120)
    market_from_returns(
        features=returns[:, None], next_returns=returns, splits={"train": (0, 80), "val": (85, 100), "test": (105, 120)}
    ).save(tmp_path)
    assert reusable_dataset(tmp_path)
    arrays = tmp_path / DATASET_ARRAYS
    arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])  # a copy or a disk cut short
    assert not reusable_dataset(tmp_path)
    assert not reusable_dataset(tmp_path / "missing")


def test_the_logged_data_spec_carries_no_credentials() -> None:
    """`DataSpec.to_dict()` is what the flow logs as the `data.*` MLflow params."""
    from dreamer.pipeline import DataSpec

    spec = DataSpec(base_url="https://trader:s3cret@api.bybit.com")
    assert spec.base_url == "https://trader:s3cret@api.bybit.com"  # the client still authenticates
    assert spec.to_dict()["base_url"] == "https://***@api.bybit.com"
    assert DataSpec().to_dict()["base_url"] is None
